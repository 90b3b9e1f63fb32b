"""Before/after figures for a compressed model: file size, accuracy, ROC-AUC and images/s on held-out images.

Every variant is measured on the same validation split (the split ``fakescope train`` uses for these folders),
with images decoded and preprocessed once, so images/s is the model's own speed, not the JPEG codec's.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from fakescope.data.cache import default_cache_dir
from fakescope.data.dataset import ImageDataset, collate_skip
from fakescope.data.discovery import Sample, discover_samples
from fakescope.data.preprocess import Preprocess
from fakescope.data.splits import limit_per_class, split_folders
from fakescope.evaluation.metrics import compute_metrics
from fakescope.inference.detector import Detector
from fakescope.progress import track

COLUMNS = ("variant", "size_mb", "gzip_mb", "accuracy", "roc_auc", "images_per_s")
HEADERS = {"variant": "variant", "size_mb": "MB", "gzip_mb": "gzip MB", "accuracy": "acc", "roc_auc": "AUC",
           "images_per_s": "img/s", "sparsity": "zeros"}


@dataclass
class EvalSet:
    """Preprocessed held-out images: uint8 arrays (N, H, W, C) and labels (N,)."""

    arrays: np.ndarray
    labels: np.ndarray


@dataclass
class CompressionResult:
    """The written model and one row of figures per variant (``before`` first)."""

    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)


def split_data(data: Sequence[str | Path], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """(train, validation) samples of labelled folders, split as ``fakescope train`` splits them."""
    return split_folders([discover_samples(d) for d in data], val_fraction, seed)


def subsample(samples: list[Sample], n: int | None, seed: int = 0) -> list[Sample]:
    """At most ``n`` samples, half of each class (all when ``n`` is None)."""
    return samples if n is None or n >= len(samples) else limit_per_class(samples, max(1, n // 2), seed)


def prepare_eval_set(samples: list[Sample], pre: Preprocess, workers: int = 0, cache: bool = True) -> EvalSet:
    """Decode and preprocess ``samples`` once (through the on-disk array cache); unreadable files are dropped."""
    ds = ImageDataset(samples, pre, None, default_cache_dir() if cache else None)
    arrays, labels = [], []
    loader = DataLoader(ds, batch_size=32, num_workers=workers, collate_fn=collate_skip)
    for batch in track(loader, len(loader), "preparing images"):
        if batch is not None:
            arrays.append(batch[0].numpy())
            labels.append(batch[1].numpy())
    if not arrays:
        raise ValueError("no readable images to evaluate on")
    return EvalSet(np.concatenate(arrays), np.concatenate(labels))


def timed_predict(detector: Detector, arrays: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, float]:
    """(fake probabilities, images/s) of ``detector`` on preprocessed arrays, after one warm-up batch."""
    detector.predict_arrays(arrays[:batch_size])
    start = time.perf_counter()
    probs = np.concatenate([detector.predict_arrays(arrays[i:i + batch_size]) for i in range(0, len(arrays), batch_size)])
    return probs, len(arrays) / (time.perf_counter() - start)


def file_sizes(path: str | Path) -> tuple[float, float]:
    """(size, gzip-compressed size) in MB: pruned zeros do not shrink a dense file, but they do compress."""
    data = Path(path).read_bytes()
    return len(data) / 1e6, len(zlib.compress(data, 6)) / 1e6


def measure(variant: str, detector: Detector, evalset: EvalSet, path: str | Path | None,
            batch_size: int = 32, **extra: Any) -> dict[str, Any]:
    """One table row: sizes of the model file at ``path``, accuracy and ROC-AUC at the detector's threshold,
    images/s of the model on preprocessed arrays."""
    probs, speed = timed_predict(detector, evalset.arrays, batch_size)
    metrics = compute_metrics(evalset.labels, probs, detector.threshold)
    size, gz = file_sizes(path) if path is not None else (None, None)
    return {"variant": variant, "size_mb": size, "gzip_mb": gz, "accuracy": metrics["accuracy"],
            "roc_auc": metrics["roc_auc"], "images_per_s": speed, "n": metrics["n"], **extra}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 10 else f"{value:.3f}"
    return str(value)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(COLUMNS) + (["sparsity"] if any("sparsity" in r for r in rows) else [])


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (for docs/benchmarks/compression.md)."""
    cols = _columns(rows)
    lines = ["| " + " | ".join(HEADERS[c] for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def rich_table(rows: list[dict[str, Any]]):
    """The rows as a Rich table (for the CLI)."""
    from rich.table import Table

    cols = _columns(rows)
    table = Table(*(HEADERS[c] for c in cols))
    table.columns[0].no_wrap = True
    for r in rows:
        table.add_row(*(_fmt(r.get(c)) for c in cols))
    return table
