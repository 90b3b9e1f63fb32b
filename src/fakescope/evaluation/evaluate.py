"""Score a labelled folder with a Detector, through the same streaming pipeline ``scan`` uses."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fakescope.data.discovery import Sample, discover_samples
from fakescope.evaluation.metrics import compute_metrics
from fakescope.inference.detector import Detector
from fakescope.inference.scan import ScanResult, scan


def score_samples(detector: Detector, samples: list[Sample], batch_size: int = 32, workers: int | None = None,
                  on_result=None, transform=None) -> tuple[list[int], list[float], list[ScanResult]]:
    """(labels, fake probabilities, failed results) for labelled samples, in the samples' order (scan yields its
    own); unreadable files are left out of the first two. ``transform`` perturbs each image."""
    prob: dict[str, float] = {}
    failed = []
    for r in scan([s.path for s in samples], detector, batch_size, workers, on_result=on_result, transform=transform):
        if r.error is not None:
            failed.append(r)
        else:
            prob[r.path] = r.fake_probability
    scored = [s for s in samples if str(s.path) in prob]
    return [s.label for s in scored], [prob[str(s.path)] for s in scored], failed


def evaluate_detector(detector: Detector, data: str | Path, threshold: float | None = None, batch_size: int = 32,
                      workers: int | None = None, on_result=None) -> dict[str, Any]:
    """Metrics of ``detector`` on the labelled images below ``data`` (unreadable files counted, not scored)."""
    labels, probs, failed = score_samples(detector, discover_samples(data), batch_size, workers, on_result)
    metrics = compute_metrics(labels, probs, detector.threshold if threshold is None else threshold)
    metrics["n_errors"] = len(failed)
    metrics["errors"] = [f"{r.path}: {r.error}" for r in failed]
    return metrics
