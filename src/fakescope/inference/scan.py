"""Streaming scan: files and folders in, one result per file out.

Decoding and preprocessing run in DataLoader worker processes, inference runs in batches, and results are
yielded as they are ready, so memory stays bounded however many files are scanned. A file that cannot be read
becomes a result with an ``error`` and never stops the scan.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from fakescope.data.discovery import iter_image_files
from fakescope.forensics.io import ImageLoadError, load_image
from fakescope.inference.detector import Detector

log = logging.getLogger(__name__)


@dataclass
class ScanResult:
    """One scanned file. On error, ``fake_probability`` and ``label`` are None and ``error`` says why."""

    path: str
    fake_probability: float | None
    label: str | None
    model: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prepared:
    """A file after decoding and preprocessing (in a worker): the array, or the reason it failed."""

    index: int
    path: str
    array: Any
    error: str | None


def prepare_file(index: int, path: str | Path, preparer: Any, transform: Callable | None = None) -> Prepared:
    """Decode ``path``, apply ``transform`` (e.g. a robustness perturbation) and ``preparer.to_array``."""
    try:
        img = load_image(path)
        if transform is not None:
            img = transform(img)
        return Prepared(index, str(path), preparer.to_array(img), None)
    except ImageLoadError as err:
        return Prepared(index, str(path), None, err.reason)
    except Exception as err:  # noqa: BLE001  one odd file must not end a scan of millions
        return Prepared(index, str(path), None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


class _FileStream(IterableDataset):
    """Each worker prepares every k-th file of the (lazily listed) input, k = number of workers."""

    def __init__(self, paths: Iterable[str | Path], preparer: Any, transform: Callable | None = None):
        self.paths = paths
        self.preparer = preparer
        self.transform = transform

    def __iter__(self) -> Iterator[Prepared]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        if info:
            torch.set_num_threads(1)
        for i, path in enumerate(self.paths):
            if i % nw == wid:
                yield prepare_file(i, path, self.preparer, self.transform)


def _identity(item: Prepared) -> Prepared:
    return item


def iter_prepared(paths: list[Path] | Iterable[Path], preparer: Any, workers: int,
                  transform: Callable | None = None) -> Iterator[Prepared]:
    """Prepared files, decoded in ``workers`` processes (0: in this process)."""
    stream = _FileStream(paths, preparer, transform)
    if workers <= 0:
        yield from stream
        return
    loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=_identity, prefetch_factor=8)
    yield from loader


def score_prepared(
    items: Iterable[Prepared],
    detector: Detector,
    batch_size: int = 32,
    threshold: float | None = None,
) -> Iterator[tuple[Prepared, ScanResult]]:
    """Batch prepared arrays through the detector; errors pass straight through."""
    batch: list[Prepared] = []

    def flush() -> Iterator[tuple[Prepared, ScanResult]]:
        probs = detector.predict_batch([b.array for b in batch])
        for item, p in zip(batch, probs):
            yield item, ScanResult(item.path, float(p), detector.label(float(p), threshold), detector.name)
        batch.clear()

    for item in items:
        if item.error is not None:
            yield item, ScanResult(item.path, None, None, detector.name, item.error)
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def auto_workers(n_files: int | None) -> int:
    """Worker processes for decoding: none for a handful of files (start-up costs more than it saves)."""
    import os

    if n_files is not None and n_files < 16:
        return 0
    return max(1, min(4, (os.cpu_count() or 1)))


def scan(
    paths: Iterable[str | Path],
    detector: Detector,
    batch_size: int = 32,
    workers: int | None = None,
    threshold: float | None = None,
    skip: set[str] | None = None,
    on_result: Callable[[ScanResult], None] | None = None,
    transform: Callable | None = None,
) -> Iterator[ScanResult]:
    """Score every image below ``paths``; yields one :class:`ScanResult` per file, in completion order.

    ``skip``: paths (as strings) already scored, e.g. by an interrupted run being resumed.
    ``transform``: a picklable image -> image function applied after decoding (robustness sweeps).
    """
    files = (p for p in iter_image_files(paths) if not skip or str(p) not in skip)
    if workers is None:
        files = list(files)
        workers = auto_workers(len(files))
    prepared = iter_prepared(files, detector.preparer, workers, transform)
    for _, result in score_prepared(prepared, detector, batch_size, threshold):
        if on_result:
            on_result(result)
        yield result
