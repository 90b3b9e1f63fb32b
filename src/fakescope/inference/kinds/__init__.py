"""Detector kinds: how a checkpoint becomes a :class:`~fakescope.inference.detector.Detector`.

A kind is added in one module of this package with one decorator, as a detector architecture is added in
``fakescope/models/`` with ``register_detector``::

    @register_kind("patch")
    class PatchDetector(SingleDetector):
        @classmethod
        def from_checkpoint(cls, path, name, device="auto"): ...

A checkpoint names its kind in its metadata (``info["kind"]``, ``"model"`` when absent); a kind may also claim a
file suffix (``.onnx``). ``Detector.load`` asks :func:`kind_of` and :func:`get_kind` and nothing else.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from fakescope.inference.detector import Detector

D = TypeVar("D", bound="type[Detector]")

#: The kind of a checkpoint whose metadata names none: one registered architecture, one set of weights.
SINGLE = "model"

_KINDS: dict[str, type[Detector]] = {}
_SUFFIXES: dict[str, str] = {}


def register_kind(name: str, *, suffix: str | None = None) -> Callable[[D], D]:
    """Class decorator registering a Detector subclass (with a ``from_checkpoint(path, name, device)``
    classmethod) as kind ``name``; ``suffix``: files with this suffix are of this kind whatever they contain."""

    def wrap(cls: D) -> D:
        if name in _KINDS:
            raise ValueError(f"detector kind {name!r} is already registered")
        _KINDS[name] = cls
        cls.kind = name
        if suffix is not None:
            _SUFFIXES[suffix] = name
        return cls

    return wrap


def _ensure_loaded() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def list_kinds() -> list[str]:
    _ensure_loaded()
    return sorted(_KINDS)


def get_kind(name: str) -> type[Detector]:
    """The Detector class of kind ``name``; KeyError naming the known kinds otherwise. A kind defined in a module
    of its own name (``onnx`` in ``kinds/onnx.py``) is found by importing that module alone, so looking up a kind
    that needs no PyTorch imports none."""
    module = f"{__name__}.{name.replace('-', '_')}"
    if name not in _KINDS and importlib.util.find_spec(module) is not None:
        importlib.import_module(module)
    if name not in _KINDS:
        _ensure_loaded()
    try:
        return _KINDS[name]
    except KeyError:
        raise KeyError(f"unknown detector kind {name!r}; known: {', '.join(sorted(_KINDS))}") from None


def kind_of(path: str | Path) -> str:
    """The kind of the file at ``path``: by suffix when a kind claims it, else from the checkpoint's metadata."""
    _ensure_loaded()
    path = Path(path)
    if path.suffix in _SUFFIXES:
        return _SUFFIXES[path.suffix]
    from fakescope.checkpoint import read_meta

    return read_meta(path).info.get("kind", SINGLE)
