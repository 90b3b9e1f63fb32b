"""Fitting an ensemble (``fakescope ensemble``): score the members on the validation split of the data, fit the
combiner there (weights from accuracy, the stacker) and report members and ensemble on the same images.

Weights and the stacker are fitted on the validation split of the data (``split_folders``, seed 0), never on the
data the ensemble is evaluated on; the metrics reported for them are out-of-fold (k-fold within that split).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.data.discovery import Sample, discover_samples
from fakescope.data.splits import split_folders
from fakescope.ensemble.combine import Combiner
from fakescope.evaluation.metrics import compute_metrics
from fakescope.inference.detector import Detector
from fakescope.inference.kinds.ensemble import EnsembleDetector
from fakescope.progress import track

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- fitting
@dataclass
class MemberScores:
    """Members' outputs on labelled samples (unreadable files dropped)."""

    probs: np.ndarray
    feats: np.ndarray | None
    labels: np.ndarray
    paths: list[str] = field(default_factory=list)


def score_members(ensemble: EnsembleDetector, samples: Sequence[Sample], batch_size: int = 32,
                  workers: int | None = None, transform: Any = None) -> MemberScores:
    """Decode each sample once (in worker processes) and run every member on it."""
    from fakescope.inference.scan import auto_workers, iter_prepared

    label_of = {str(s.path): s.label for s in samples}
    workers = auto_workers(len(samples)) if workers is None else workers
    probs, feats, paths = [], [], []
    prepared = iter_prepared([s.path for s in samples], ensemble.preparer, workers, transform)
    for batch in track(_batches(prepared, batch_size), -(-len(samples) // batch_size), "scoring members"):
        ok = [b for b in batch if b.error is None]
        for b in batch:
            if b.error is not None:
                log.warning("skipping %s: %s", b.path, b.error)
        if ok:
            p, f = ensemble.member_matrix([b.array for b in ok])
            probs.append(p)
            feats.append(f)
            paths += [b.path for b in ok]
    if not paths:
        raise ValueError("no readable images to score")
    f_all = np.concatenate(feats) if feats[0] is not None else None
    return MemberScores(np.concatenate(probs), f_all, np.array([label_of[p] for p in paths]), paths)


def _batches(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def out_of_fold(combiner: Combiner, scores: MemberScores, folds: int = 5, seed: int = 0) -> tuple[np.ndarray, str]:
    """Ensemble probabilities for every sample from a combiner fitted without it; and how they were made."""
    if combiner.method in ("mean", "majority") or (combiner.method == "weighted" and combiner.weights is not None):
        return combiner.predict(scores.probs, scores.feats), "nothing fitted: scored on the whole split"
    from sklearn.model_selection import StratifiedKFold

    k = min(folds, int(np.bincount(scores.labels, minlength=2).min()))
    if k < 2:
        raise ValueError("fitting an ensemble needs at least 2 validation images of each class")
    out = np.empty(len(scores.labels))
    feats = scores.feats if scores.feats is not None else np.zeros((len(scores.labels), 0))
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(scores.probs, scores.labels):
        fitted = combiner.fitted(scores.probs[train], feats[train], scores.labels[train], seed)
        out[test] = fitted.predict(scores.probs[test], feats[test])
    return out, f"{k}-fold out-of-fold within the split"


@dataclass
class EnsembleFit:
    detector: EnsembleDetector
    report: dict[str, Any]


def validation_samples(data: Sequence[str | Path], val_fraction: float = 0.2, seed: int = 0) -> list[Sample]:
    """The validation split of each folder, as ``fakescope train`` makes it (``split_folders``)."""
    return split_folders([discover_samples(d) for d in data], val_fraction, seed)[1]


def fit_ensemble(members: Sequence[str], method: str, data: Sequence[str | Path], *,
                 weights: Sequence[float] | None = None, features: bool = False, n_components: int = 16,
                 val_fraction: float = 0.2, seed: int = 0, batch_size: int = 32, workers: int | None = None,
                 device: str = "auto") -> EnsembleFit:
    """Load the members, score the validation split of ``data``, fit the combiner there and report metrics.

    Members and ensemble are reported on the same validation images; the ensemble's figures are out-of-fold
    whenever something (weights, stacker) is fitted, so no image scores a combiner that saw it.
    """
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    if weights is not None and (len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0):
        raise ValueError(f"weights need {len(members)} non-negative values, not all zero")
    if weights is not None and method != "weighted":
        raise ValueError("weights apply to the weighted method only")
    if features and method != "stacking":
        raise ValueError("penultimate features apply to the stacking method only")
    dets = [Detector.load(m, device=device) for m in members]
    thresholds = [d.threshold for d in dets]
    combiner = Combiner(method, thresholds, None if weights is None else np.asarray(weights, np.float64),
                        features=features, n_components=n_components)
    samples = validation_samples(data, val_fraction, seed)
    scores = score_members(EnsembleDetector(dets, combiner, device=device), samples, batch_size, workers)
    oof, how = out_of_fold(combiner, scores, seed=seed)
    fitted = combiner.fitted(scores.probs, scores.feats, scores.labels, seed) if method in ("weighted", "stacking") \
        else combiner
    report = {
        "data": [str(d) for d in data], "split": {"val_fraction": val_fraction, "seed": seed, "n": len(scores.labels)},
        "evaluation": how,
        "members": [{"model": d.name, **compute_metrics(scores.labels, scores.probs[:, i], d.threshold)}
                    for i, d in enumerate(dets)],
        "ensemble": {"model": f"ensemble ({method})", **compute_metrics(scores.labels, oof, 0.5)},
    }
    name = f"ensemble-{method}"
    info = {"data": report["data"], "metrics": {"validation": report["ensemble"], "evaluation": how}}
    return EnsembleFit(EnsembleDetector(dets, fitted, name, device, info), report)
