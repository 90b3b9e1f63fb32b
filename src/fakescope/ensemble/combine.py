"""Combining members' outputs into an ensemble's fake probability: mean, majority, weighted vote, stacking.

``stacking``: members' probabilities (and, with ``features``, their penultimate activations) -> StandardScaler ->
PCA -> RBF SVC with Platt-scaled probabilities (``CalibratedClassifierCV(SVC(), method="sigmoid",
ensemble=False)``, the replacement scikit-learn gives for the deprecated ``SVC(probability=True)``), fitted with
scikit-learn and stored as explicit float64 arrays evaluated with NumPy (no pickle, no scikit-learn to load).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

METHODS = ("mean", "majority", "weighted", "stacking")


# ---------------------------------------------------------------------------------------------- the stacker
@dataclass
class Stacker:
    """StandardScaler -> PCA -> RBF SVC -> Platt sigmoid, as explicit arrays evaluated with NumPy."""

    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray
    support_vectors: np.ndarray
    dual_coef: np.ndarray  # (n_sv,), sign convention of SVC.dual_coef_ (positive decision -> class 1)
    intercept: np.ndarray  # (1,)
    gamma: np.ndarray  # (1,)
    platt_a: np.ndarray  # (1,) P(fake) = 1 / (1 + exp(a * decision + b))
    platt_b: np.ndarray  # (1,)

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - self.scaler_mean) / self.scaler_scale
        return (z - self.pca_mean) @ self.pca_components.T

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """``SVC.decision_function`` on the scaled, projected inputs (RBF kernel against the support vectors)."""
        z = self.transform(x)
        sq = (z * z).sum(1)[:, None] + (self.support_vectors ** 2).sum(1)[None, :] - 2.0 * z @ self.support_vectors.T
        kernel = np.exp(-self.gamma[0] * np.maximum(sq, 0.0))
        return kernel @ self.dual_coef + self.intercept[0]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """P(fake), as ``CalibratedClassifierCV(SVC(), method="sigmoid").predict_proba(...)[:, 1]``."""
        return expit(-(self.platt_a[0] * self.decision_function(x) + self.platt_b[0]))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Stacker:
        return cls(**{k: np.asarray(arrays[k], dtype=np.float64) for k in cls.__dataclass_fields__})

    @classmethod
    def from_sklearn(cls, scaler: Any, pca: Any, calibrated: Any) -> Stacker:
        """From fitted estimators; ``calibrated``: ``CalibratedClassifierCV(SVC(kernel="rbf"), ensemble=False)``."""
        (inner,) = calibrated.calibrated_classifiers_
        svc, (platt,) = inner.estimator, inner.calibrators
        if list(svc.classes_) != [0, 1] or svc.kernel != "rbf" or calibrated.method != "sigmoid":
            raise ValueError("stacker needs a binary (0/1) RBF SVC with sigmoid calibration")
        if getattr(pca, "whiten", False):
            raise ValueError("whitened PCA is not supported")
        return cls(scaler.mean_, scaler.scale_, pca.mean_, pca.components_, svc.support_vectors_,
                   svc.dual_coef_[0], svc.intercept_, np.array([float(svc.gamma)]),
                   np.array([float(platt.a_)]), np.array([float(platt.b_)]))


def fit_stacker(x: np.ndarray, y: np.ndarray, n_components: int = 16, seed: int = 0) -> tuple[Stacker, tuple]:
    """Fit the scaler, PCA and sigmoid-calibrated SVC with scikit-learn; returns the explicit stacker and the
    fitted estimators.

    The SVC's probabilities come from ``CalibratedClassifierCV(SVC(), method="sigmoid", ensemble=False)``: Platt
    scaling on cross-validated decision values, which scikit-learn recommends in place of ``SVC(probability=True)``
    (deprecated in 1.9), and which is a closed form to re-evaluate.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    pca = PCA(n_components=max(1, min(n_components, z.shape[1], z.shape[0] - 1)), random_state=seed).fit(z)
    zp = pca.transform(z)
    variance = float(zp.var())
    gamma = 1.0 / (zp.shape[1] * variance) if variance > 0 else 1.0  # scikit-learn's gamma="scale", made explicit
    folds = max(2, min(5, int(np.bincount(y, minlength=2).min())))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    calibrated = CalibratedClassifierCV(SVC(kernel="rbf", C=1.0, gamma=gamma), method="sigmoid", cv=cv,
                                        ensemble=False).fit(zp, y)
    return Stacker.from_sklearn(scaler, pca, calibrated), (scaler, pca, calibrated)


# ---------------------------------------------------------------------------------------------- combining
def accuracy_weights(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Log-odds of each member's accuracy (Nitzan & Paroush 1982); chance or worse gets weight 0."""
    acc = ((probs >= thresholds) == labels[:, None].astype(bool)).mean(0)
    acc = np.clip(acc, 1e-3, 1 - 1e-3)
    return np.maximum(np.log(acc / (1 - acc)), 0.0)


@dataclass
class Combiner:
    """Turns the members' outputs into the ensemble's fake probability."""

    method: str
    thresholds: np.ndarray
    weights: np.ndarray | None = None
    stacker: Stacker | None = None
    features: bool = False
    n_components: int = 16

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown ensemble method {self.method!r}; use one of {', '.join(METHODS)}")
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)

    def _vote(self, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
        weights = weights if weights.sum() > 0 else np.ones_like(weights)
        w = weights / weights.sum()
        score = (probs >= self.thresholds).astype(np.float64) @ w
        return np.where(np.isclose(score, 0.5), probs @ w, score)  # tie: the weighted mean probability decides

    def predict(self, probs: np.ndarray, feats: np.ndarray | None = None) -> np.ndarray:
        if self.method == "mean":
            return probs.mean(1)
        if self.method == "majority":
            return self._vote(probs, np.ones(probs.shape[1]))
        if self.method == "weighted":
            return self._vote(probs, self.weights)
        if self.stacker is None:
            raise RuntimeError("stacking ensemble has no fitted stacker")
        return self.stacker.predict_proba(stack_inputs(probs, feats, self.features))

    def fitted(self, probs: np.ndarray, feats: np.ndarray | None, labels: np.ndarray, seed: int = 0) -> Combiner:
        """A copy fitted on these outputs (weights from accuracy unless given; the stacker)."""
        weights, stacker = self.weights, None
        if self.method == "weighted" and weights is None:
            weights = accuracy_weights(probs, labels, self.thresholds)
        if self.method == "stacking":
            stacker, _ = fit_stacker(stack_inputs(probs, feats, self.features), labels, self.n_components, seed)
        return Combiner(self.method, self.thresholds, weights, stacker, self.features, self.n_components)


def stack_inputs(probs: np.ndarray, feats: np.ndarray | None, features: bool) -> np.ndarray:
    if not features:
        return probs
    if feats is None:
        raise ValueError("stacking on features needs the members' penultimate features")
    return np.concatenate([probs, feats], axis=1)
