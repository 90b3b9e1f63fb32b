"""Progress of long loops in library code, shown by whoever called it (the CLI's Rich bars), silent by default.

Library code wraps a loop as ``for batch in track(loader, len(loader), "calibrate"):``; nothing is printed unless a
caller installed a tracker with :func:`reporting` (``fakescope.cli._util.progress_bars`` does). A tracker has the
signature of :data:`fakescope.engine.loops.Track`: ``(iterable, total, description) -> iterable``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Optional, TypeVar

T = TypeVar("T")
Tracker = Callable[[Iterable, Optional[int], str], Iterable]

_tracker: ContextVar[Optional[Tracker]] = ContextVar("fakescope_tracker", default=None)


def track(iterable: Iterable[T], total: Optional[int] = None, description: str = "working") -> Iterable[T]:
    """``iterable`` itself, or wrapped by the installed tracker (a progress bar) when there is one."""
    tracker = _tracker.get()
    return iterable if tracker is None else tracker(iterable, total, description)


@contextmanager
def reporting(tracker: Optional[Tracker]) -> Iterator[None]:
    """Within this block, :func:`track` loops report to ``tracker`` (None: to nobody)."""
    token = _tracker.set(tracker)
    try:
        yield
    finally:
        _tracker.reset(token)
