"""Binary detection metrics, with fake as the positive class; scikit-learn does the arithmetic."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)


def equal_error_rate(y_true: Sequence[int], scores: Sequence[float]) -> tuple[float, float]:
    """(EER, threshold at the EER): where the false-positive and false-negative rates cross."""
    fpr, tpr, thresholds = roc_curve(y_true, scores)
    fnr = 1.0 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2.0), float(min(thresholds[i], 1.0))


def threshold_at_fpr(y_true: Sequence[int], p_fake: Sequence[float], max_fpr: float,
                     groups: Sequence[Any] | None = None) -> float:
    """The lowest threshold at which at most ``max_fpr`` of the real samples (label 0) score as fake.

    With ``groups`` (one key per sample, e.g. the dataset it comes from) the bound holds within every group that
    has reals: the highest of the groups' thresholds, so no one kind of photo pays for the easy ones.
    """
    if groups is not None:
        y, p, g = np.asarray(y_true), np.asarray(p_fake, dtype=np.float64), np.asarray(groups)
        keys = [k for k in dict.fromkeys(g.tolist()) if ((g == k) & (y == 0)).any()]
        if not keys:
            raise ValueError("choosing a threshold by false-positive rate needs real samples")
        return max(threshold_at_fpr(y[g == k], p[g == k], max_fpr) for k in keys)
    if not 0.0 <= max_fpr < 1.0:
        raise ValueError(f"max_fpr must be in [0, 1), got {max_fpr}")
    reals = np.sort(np.asarray(p_fake, dtype=np.float64)[np.asarray(y_true) == 0])
    if reals.size == 0:
        raise ValueError("choosing a threshold by false-positive rate needs real samples")
    allowed = int(np.floor(max_fpr * reals.size))  # reals that may score at or above the threshold
    highest_kept_below = reals[reals.size - 1 - allowed]
    return float(min(1.0, np.nextafter(highest_kept_below, np.inf)))


#: Parts of the reals in :func:`held_out_fpr` (and so the fewest reals it can use).
HELD_OUT_FOLDS = 5


def held_out_fpr(y_true: Sequence[int], p_fake: Sequence[float], max_fpr: float,
                 groups: Sequence[Any] | None = None, folds: int = HELD_OUT_FOLDS, seed: int = 0) -> dict[str, Any]:
    """The false-positive rate of :func:`threshold_at_fpr` on reals it was *not* chosen on (cross-fitted).

    A threshold picked to flag at most ``max_fpr`` of some reals flags about that many of them by construction, so
    that rate says little about new photos of the same kinds. Here the reals are split into ``folds`` parts
    (stratified by ``groups`` when every group has that many reals); each part is scored against the threshold
    chosen on the other parts, and the rate is counted over all parts: the false-alarm rate to expect on unseen
    reals, for a threshold chosen from ``(folds - 1) / folds`` as many of them. Returns ``{"fpr", "n_real", "per_group"}``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    y, p = np.asarray(y_true), np.asarray(p_fake, dtype=np.float64)
    g = np.asarray(groups) if groups is not None else np.zeros(len(y), dtype=int)
    p, g = p[y == 0], g[y == 0]
    if p.size < folds:
        raise ValueError(f"a {folds}-fold false-positive estimate needs at least {folds} real samples, got {p.size}")
    flagged = np.zeros(p.size, dtype=bool)
    stratify = min(np.unique(g, return_counts=True)[1]) >= folds
    splits = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    for fit, held in splits.split(p.reshape(-1, 1), g):
        t = threshold_at_fpr(np.zeros(fit.size, dtype=int), p[fit], max_fpr, g[fit] if groups is not None else None)
        flagged[held] = p[held] >= t
    per_group = {k: float(flagged[g == k].mean()) for k in dict.fromkeys(g.tolist())} if groups is not None else {}
    return {"fpr": float(flagged.mean()), "n_real": int(p.size), "per_group": per_group}


def expected_calibration_error(y_true: Sequence[int], p_fake: Sequence[float], n_bins: int = 15) -> float:
    """ECE over equal-width bins of the predicted class's confidence."""
    y = np.asarray(y_true)
    p = np.asarray(p_fake, dtype=np.float64)
    pred = (p >= 0.5).astype(int)
    conf = np.where(pred == 1, p, 1.0 - p)
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi) if lo > 0.5 else (conf >= lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def ece_noise_floor(p_fake: Sequence[float], n_bins: int = 15, draws: int = 200, seed: int = 0) -> float:
    """The median ECE a *perfectly calibrated* model with these scores would show on this many images.

    Labels are drawn from the scores themselves (``y ~ Bernoulli(p)``), so every difference between confidence and
    accuracy is sampling noise. An ECE near this floor cannot be told apart from perfect calibration on a set of
    this size; on a few hundred images it is a few hundredths.
    """
    p = np.asarray(p_fake, dtype=np.float64)
    if p.size == 0:
        raise ValueError("no scores to draw labels from")
    rng = np.random.default_rng(seed)
    eces = [expected_calibration_error((rng.random(p.size) < p).astype(int), p, n_bins) for _ in range(draws)]
    return float(np.median(eces))


def tpr_at_fpr(y_true: Sequence[int], p_fake: Sequence[float], fpr: float = 0.05) -> float:
    """Share of fakes caught at the threshold that flags ``fpr`` of the reals (the ROC curve, interpolated)."""
    f, t, _ = roc_curve(np.asarray(y_true, dtype=int), np.asarray(p_fake, dtype=np.float64))
    return float(np.interp(fpr, f, t))


Metric = Callable[[np.ndarray, np.ndarray], float]


def _bootstrap(y: np.ndarray, scores: list[np.ndarray], metric: Metric, draws: int, seed: int) -> np.ndarray:
    """``metric`` of each score vector on the same resamples of the images (stratified: both classes every time)."""
    rng = np.random.default_rng(seed)
    real, fake = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    out = np.empty((draws, len(scores)))
    for i in range(draws):
        idx = np.concatenate([rng.choice(real, real.size), rng.choice(fake, fake.size)])
        out[i] = [metric(y[idx], s[idx]) for s in scores]
    return out


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap draws."""
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def roc_auc_interval(y_true: Sequence[int], p_fake: Sequence[float], draws: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval for ROC-AUC (images resampled within each class)."""
    y = np.asarray(y_true, dtype=int)
    return _interval(_bootstrap(y, [np.asarray(p_fake, dtype=np.float64)], roc_auc_score, draws, seed)[:, 0], level)


def paired_difference(y_true: Sequence[int], p_a: Sequence[float], p_b: Sequence[float],
                      metric: Metric = roc_auc_score, draws: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict[str, float]:
    """``metric`` (default ROC-AUC) of detector A minus detector B on the same images, paired bootstrap interval.

    Pairing (both detectors scored on each resample) removes the images' own difficulty from the comparison, so it
    is much tighter than comparing two separate intervals. An interval that contains 0 is no evidence either way.
    """
    y = np.asarray(y_true, dtype=int)
    a, b = np.asarray(p_a, dtype=np.float64), np.asarray(p_b, dtype=np.float64)
    low, high = _interval(np.diff(_bootstrap(y, [b, a], metric, draws, seed), axis=1)[:, 0], level)
    return {"difference": float(metric(y, a) - metric(y, b)), "low": low, "high": high}


def mean_difference(a: Sequence[float], b: Sequence[float], draws: int = 2000, seed: int = 0,
                    level: float = 0.95) -> dict[str, float]:
    """Mean of ``a - b`` over paired items (e.g. per-image localisation scores of two models), with a percentile
    bootstrap interval over the items."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no paired values")
    rng = np.random.default_rng(seed)
    low, high = _interval(d[rng.integers(0, d.size, (draws, d.size))].mean(axis=1), level)
    return {"difference": float(d.mean()), "low": low, "high": high}


def compute_metrics(y_true: Sequence[int], p_fake: Sequence[float], threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, ROC-AUC, AP, EER, ECE and the confusion matrix ``[[tn, fp], [fn, tp]]``.

    Rank metrics (ROC-AUC, AP, EER) are None when only one class is present; recall and F1 when there is no fake
    (a real-only folder), precision when nothing is flagged: undefined, not 0.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(p_fake, dtype=np.float64)
    if y.size == 0:
        raise ValueError("no scored samples to evaluate")
    pred = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    eer, eer_thr = equal_error_rate(y, p) if both else (None, None)
    cm = confusion_matrix(y, pred, labels=[0, 1])
    per_class = [float(cm[c, c] / cm[c].sum()) if cm[c].sum() else None for c in (0, 1)]
    return {
        "n": int(y.size),
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred)) if pred.any() else None,
        "recall": float(recall_score(y, pred)) if y.any() else None,
        "f1": float(f1_score(y, pred)) if y.any() else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "average_precision": float(average_precision_score(y, p)) if both else None,
        "eer": eer,
        "eer_threshold": eer_thr,
        "accuracy_at_eer_threshold": float(accuracy_score(y, (p >= eer_thr).astype(int))) if both else None,
        "ece": expected_calibration_error(y, p),
        "accuracy_real": per_class[0],
        "accuracy_fake": per_class[1],
        "confusion_matrix": cm.tolist(),
    }


#: Fewer familiar images than this make no ROC-AUC on the familiar part.
MIN_FAMILIAR = 10


def familiarity_metrics(y_true: Sequence[int], p_fake: Sequence[float], familiarity: Sequence[float | None],
                        threshold: float) -> dict[str, Any]:
    """How a detector that describes its training images (:mod:`fakescope.familiarity`) meets these: the share it
    calls unfamiliar (below ``FAMILIAR_CUT``), the shares of reals and of fakes it labels ``uncertain`` (unfamiliar
    and undecided), and ROC-AUC on the familiar part, to set beside ROC-AUC on all (None with one class or fewer
    than :data:`MIN_FAMILIAR` familiar images). Every value is None for a detector without that description."""
    from fakescope.familiarity import decide, familiar

    keys = ("unfamiliar", "uncertain_real", "uncertain_fake", "roc_auc_familiar")
    f = np.asarray([np.nan if v is None else v for v in familiarity], dtype=np.float64)
    if f.size == 0 or np.isnan(f).all():
        return dict.fromkeys(keys)
    y, p = np.asarray(y_true, dtype=int), np.asarray(p_fake, dtype=np.float64)
    known = familiar(f)
    uncertain = np.asarray([decide(pi, None if np.isnan(fi) else fi, threshold) == "uncertain" for pi, fi in zip(p, f)])
    rankable = known.sum() >= MIN_FAMILIAR and len(np.unique(y[known])) == 2
    return {
        "unfamiliar": float((~known).mean()),
        "uncertain_real": float(uncertain[y == 0].mean()) if (y == 0).any() else None,
        "uncertain_fake": float(uncertain[y == 1].mean()) if (y == 1).any() else None,
        "roc_auc_familiar": float(roc_auc_score(y[known], p[known])) if rankable else None,
    }
