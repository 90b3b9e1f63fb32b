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
    """(labels, fake probabilities, failed results) for labelled samples; ``transform`` perturbs each image."""
    label_of = {str(s.path): s.label for s in samples}
    labels, probs, failed = [], [], []
    for r in scan([s.path for s in samples], detector, batch_size, workers, on_result=on_result, transform=transform):
        if r.error is not None:
            failed.append(r)
        else:
            labels.append(label_of[r.path])
            probs.append(r.fake_probability)
    return labels, probs, failed


def evaluate_detector(detector: Detector, data: str | Path, threshold: float | None = None, batch_size: int = 32,
                      workers: int | None = None, on_result=None) -> dict[str, Any]:
    """Metrics of ``detector`` on the labelled images below ``data`` (unreadable files counted, not scored)."""
    labels, probs, failed = score_samples(detector, discover_samples(data), batch_size, workers, on_result)
    metrics = compute_metrics(labels, probs, detector.threshold if threshold is None else threshold)
    metrics["n_errors"] = len(failed)
    metrics["errors"] = [f"{r.path}: {r.error}" for r in failed]
    return metrics
