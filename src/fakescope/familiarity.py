"""Familiarity: how much an image looks like the images a detector was trained on, from its pooled features.

A detector's score is calibrated only on the kinds of image it saw. A checkpoint therefore stores a small
description of its training features (:class:`FeatureModel`): a PCA projection, the per-class means and one shared
covariance in that space (a class-conditional Gaussian with tied covariance, as in Lee et al., NeurIPS 2018, "A
Simple Unified Framework for Detecting Out-of-Distribution Samples"). An image's distance is its Mahalanobis
distance to the nearer class mean; its familiarity is the share of the validation images that lie at least as far
(a conformal p-value): 95% of validation images score above :data:`FAMILIAR_CUT` by construction, and an image far
from everything seen scores near 0. Numbers only (NumPy), so it runs beside ONNX Runtime without PyTorch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Below this familiarity an image is called unfamiliar: 5% of the detector's validation images are.
FAMILIAR_CUT = 0.05
#: An unfamiliar image's score counts as decisive only outside this band; inside it the label is "uncertain".
UNDECIDED = (0.1, 0.9)
#: Components kept by the PCA and quantiles kept of the validation distances.
COMPONENTS, QUANTILES = 32, 201


@dataclass
class FeatureModel:
    center: np.ndarray  # (D,) mean of the training features
    components: np.ndarray  # (k, D) PCA directions
    class_means: np.ndarray  # (C, k) in PCA space
    precision: np.ndarray  # (k, k) inverse of the shared (shrunk) covariance
    reference: np.ndarray  # (Q,) sorted quantiles of the validation images' distances

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``features`` (N, D) to the nearer class mean, shape (N,)."""
        z = (np.asarray(features, np.float64) - self.center) @ self.components.T
        diffs = z[:, None, :] - self.class_means[None]
        d2 = np.einsum("ncj,jk,nck->nc", diffs, self.precision, diffs)
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))

    def familiarity(self, features: np.ndarray) -> np.ndarray:
        """Share of validation images at least as far from the training features as each image, in [0, 1]."""
        d = self.distance(features)
        ref = self.reference
        levels = np.linspace(0.0, 1.0, len(ref))  # ref[i] is the levels[i] quantile of the validation distances
        return np.clip(1.0 - np.interp(d, ref, levels, left=0.0, right=1.0), 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {k: np.round(getattr(self, k), 6).tolist() for k in
                ("center", "components", "class_means", "precision", "reference")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureModel:
        return cls(**{k: np.asarray(d[k], np.float64) for k in
                      ("center", "components", "class_means", "precision", "reference")})


def fit_feature_model(train: np.ndarray, labels: np.ndarray, val: np.ndarray,
                      components: int = COMPONENTS) -> FeatureModel:
    """Describe training features ``train`` (N, D) with class ``labels``; ``val`` (M, D) sets the reference."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    train, labels = np.asarray(train, np.float64), np.asarray(labels)
    pca = PCA(n_components=min(components, train.shape[1], len(train) - 1), random_state=0).fit(train)
    z = pca.transform(train)
    classes = np.unique(labels)
    means = np.stack([z[labels == c].mean(axis=0) for c in classes])
    centred = z - means[np.searchsorted(classes, labels)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    model = FeatureModel(pca.mean_, pca.components_, means, precision, np.zeros(2))
    model.reference = np.quantile(model.distance(val), np.linspace(0.0, 1.0, QUANTILES))
    return model


def decide(probability: float, familiarity: float | None, threshold: float) -> str:
    """``fake`` / ``real`` at ``threshold``, or ``uncertain`` when the image is unfamiliar and its score is not
    decisive (inside :data:`UNDECIDED`)."""
    if familiarity is not None and familiarity < FAMILIAR_CUT and UNDECIDED[0] < probability < UNDECIDED[1]:
        return "uncertain"
    return "fake" if probability >= threshold else "real"
