"""Score a labelled folder with a Detector, through the same streaming pipeline ``scan`` uses."""
from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.data.discovery import Sample, discover_samples
from fakescope.evaluation.metrics import (
    HELD_OUT_FOLDS,
    compute_metrics,
    familiarity_metrics,
    held_out_fpr,
    threshold_at_fpr,
)
from fakescope.inference.detector import Detector
from fakescope.inference.scan import ScanResult, scan


def scored_results(detector: Detector, samples: list[Sample], batch_size: int = 32, workers: int | None = None,
                   on_result=None, transform=None, copy_move: bool = True) -> tuple[list[Sample], list[ScanResult], list[ScanResult]]:
    """(the samples scored, their results in the same order, failed results) for labelled samples (scan yields in
    its own order); ``transform`` perturbs each image; ``copy_move=False`` scores without the detector's copy-move
    check."""
    done: dict[str, ScanResult] = {}
    failed = []
    for r in scan([s.path for s in samples], detector, batch_size, workers, on_result=on_result, transform=transform,
                  copy_move=copy_move):
        if r.error is not None:
            failed.append(r)
        else:
            done[r.path] = r
    scored = [s for s in samples if str(s.path) in done]
    return scored, [done[str(s.path)] for s in scored], failed


def score_samples(detector: Detector, samples: list[Sample], batch_size: int = 32, workers: int | None = None,
                  on_result=None, transform=None, copy_move: bool = True) -> tuple[list[int], list[float], list[ScanResult]]:
    """(labels, fake probabilities, failed results) for labelled samples, in the samples' order; unreadable files
    are left out of the first two (:func:`scored_results`)."""
    scored, results, failed = scored_results(detector, samples, batch_size, workers, on_result, transform, copy_move)
    return [s.label for s in scored], [r.fake_probability for r in results], failed


def evaluate_detector(detector: Detector, data: str | Path | list[Sample], threshold: float | None = None,
                      batch_size: int = 32, workers: int | None = None, on_result=None,
                      copy_move: bool = True) -> dict[str, Any]:
    """Metrics of ``detector`` on the labelled images below ``data`` (or on these samples, already listed;
    unreadable files counted, not scored), and how familiar it finds them (:func:`familiarity_metrics`);
    ``copy_move=False``: of the model alone, at its own threshold, for a detector that checks for copy-moves."""
    samples = data if isinstance(data, list) else discover_samples(data)
    scored, results, failed = scored_results(detector, samples, batch_size, workers, on_result, copy_move=copy_move)
    labels, probs = [s.label for s in scored], [r.fake_probability for r in results]
    threshold = detector.decision_threshold(copy_move) if threshold is None else threshold
    metrics = compute_metrics(labels, probs, threshold)
    metrics.update(familiarity_metrics(labels, probs, [r.familiarity for r in results], threshold))
    metrics["n_errors"] = len(failed)
    metrics["errors"] = [f"{r.path}: {r.error}" for r in failed]
    return metrics


#: Below this many reals a chosen threshold is rough: at 5% of fewer than 100, one photo is a fifth of the allowance.
FEW_REALS = 100


def threshold_for_reals(detector: Detector, paths: list[str | Path], max_fpr: float = 0.05, batch_size: int = 32,
                        workers: int | None = None, on_result=None) -> dict[str, Any]:
    """A decision threshold chosen on images the user knows are real (their own camera, archive or platform).

    The shipped threshold flags at most 5% of the reals of the kinds of photo the detector trained on; on a kind it
    never saw it can flag far more (docs/benchmarks/held-out.md). Scores every image below ``paths`` and
    returns :func:`threshold_from_reals` of their scores; unreadable files are listed, not scored.
    """
    probs, errors = [], []
    for r in scan(paths, detector, batch_size, workers, on_result=on_result):
        if r.error is not None:
            errors.append(f"{r.path}: {r.error}")
        else:
            probs.append(r.fake_probability)
    if not probs:
        raise ValueError(f"no readable images below {', '.join(map(str, paths))}")
    return threshold_from_reals(probs, detector.name, detector.threshold, max_fpr) | {
        "n_errors": len(errors), "errors": errors}


#: Decimal places a threshold chosen on the user's reals is given to (more only where a score lies closer above it).
THRESHOLD_PLACES = 4


def typeable_threshold(threshold: float, scores: np.ndarray) -> float:
    """``threshold`` rounded up to :data:`THRESHOLD_PLACES` decimals, or to as many more as keep it at or below the
    lowest score it flags: the number as printed, passed back to ``--threshold``, flags exactly the same scores (a
    threshold printed rounded to the nearest could pass below a real it claims not to flag)."""
    flagged = scores[scores >= threshold]
    ceiling = float(flagged.min()) if flagged.size else 1.0
    for places in range(THRESHOLD_PLACES, 18):
        value = float(Decimal(threshold).quantize(Decimal(1).scaleb(-places), rounding=ROUND_CEILING))
        if value <= ceiling:
            return value
    return threshold


def threshold_from_reals(probs: list[float], model: str, model_threshold: float, max_fpr: float = 0.05) -> dict[str, Any]:
    """The lowest threshold that flags at most ``max_fpr`` of these real images' fake probabilities (rounded up to
    a number that flags the very same ones: :func:`typeable_threshold`), the share the model's own threshold flags, and, with at least 5 images, the cross-fitted share a threshold chosen this way
    flags on *other* photos of the same kind (:func:`~fakescope.evaluation.metrics.held_out_fpr`). ``warning`` is
    set under :data:`FEW_REALS` images."""
    if not probs:
        raise ValueError("no real images to choose a threshold on")
    labels, scores = [0] * len(probs), np.asarray(probs)
    threshold = typeable_threshold(threshold_at_fpr(labels, probs, max_fpr), scores)
    warning = None if len(probs) >= FEW_REALS else (
        f"a threshold from {len(probs)} reals is rough; a few hundred of the kind you will scan make it reliable")
    return {"model": model, "n": len(probs), "max_fpr": max_fpr, "threshold": threshold,
            "flagged_at_threshold": float(np.mean(scores >= threshold)), "model_threshold": model_threshold,
            "flagged_at_model_threshold": float(np.mean(scores >= model_threshold)),
            "held_out_fpr": held_out_fpr(labels, probs, max_fpr)["fpr"] if len(probs) >= HELD_OUT_FOLDS else None,
            "warning": warning}
