"""Familiarity: how much an image looks like the images a detector was trained on, from its feature statistics.

A detector's score is calibrated only on the kinds of image it saw. A checkpoint therefore stores a small
description of its training features (:class:`FeatureModel`): a standardisation, a PCA projection and the projected,
unit-length features of a sample of its training images. The features are the statistics of the network's stages
(each channel's mean and standard deviation over the image, for each of timm's feature stages, from the first at half
the input's resolution to the last: :func:`fakescope.inference.detector.logits_and_stage_statistics`): the early
stages keep how an image was made and processed (noise, colour, resampling), which the pooled features the classifier
reads are trained to ignore. An image's distance is one minus the cosine similarity of its
``neighbours``-th nearest training image (deep nearest neighbours: Sun et al., ICML 2022, "Out-of-Distribution
Detection with Deep Nearest Neighbors"); its familiarity is the share of the validation images that lie at least as
far (a conformal p-value): 95% of validation images score above :data:`FAMILIAR_CUT` by construction, and an image
far from everything seen scores near 0. On the shipped default, the stage statistics flag about twice as much of a
never-seen set as the pooled features did, and nearest neighbours four to forty times more than a class-conditional
Mahalanobis distance (docs/benchmarks/held-out.md, "Familiarity").

A description made with the training images' classes (a recipe's ``neighbour_score: true``; the shipped default's)
also scores: the log ratio of an image's distances to the :data:`RATIO_NEIGHBOURS`-th nearest training real and
training fake, made a probability by a logistic fit on the validation images (:meth:`FeatureModel.fake_probability`;
class-conditional nearest neighbours). The detector's probability is then the mean of the network's and this one:
measured on sets each model never saw, it raised ROC-AUC over the network alone (docs/benchmarks/held-out.md,
"Nearest training images as a fake score").
Numbers only (NumPy), so it runs beside ONNX Runtime without PyTorch.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Below this familiarity an image is called unfamiliar: 5% of the detector's validation images are.
FAMILIAR_CUT = 0.05
#: An unfamiliar image's score counts as decisive only outside this band; inside it the label is "uncertain".
UNDECIDED = (0.1, 0.9)
#: Components kept by the PCA, the neighbour whose similarity counts, and quantiles kept of validation distances.
COMPONENTS, NEIGHBOURS, QUANTILES = 32, 5, 201
#: The neighbour of each class whose distance makes the fake score (20 led 5 on the left-out table).
RATIO_NEIGHBOURS = 20
_FIELDS = ("center", "scale", "components", "references", "reference")
#: Stored only by a description that scores: each reference's class and the log ratio's logistic fit.
_SCORING = ("classes", "ratio")
#: The least spread a statistic is scaled by (a constant one, as the spread of a 1 x 1 stage, is left as it is; the
#: stored description keeps 5 decimals).
MIN_SCALE = 1e-3
#: What a description's features are; a checkpoint described otherwise (an older fakescope's pooled features) has none.
FEATURES = "stage statistics"


def _unit(z: np.ndarray) -> np.ndarray:
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


@functools.cache
def _blas_pools() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread(rows: int) -> contextlib.AbstractContextManager:
    """BLAS on one thread for a batch's small products (N x 1,280 by 1,280 x 32, then by 32 x 1,200): a second
    thread saves nothing on them, and OpenBLAS's spins after each call, waiting for more work, on a core that ONNX
    Runtime and the decode workers of a scan need. Same results (the products are not split along their sums).
    A single row never wakes BLAS's threads."""
    return _blas_pools().limit(limits=1, user_api="blas") if rows > 1 else contextlib.nullcontext()


@dataclass
class FeatureModel:
    center: np.ndarray  # (D,) mean of the training features
    scale: np.ndarray  # (D,) their standard deviation: every statistic counts alike, whatever its stage's range
    components: np.ndarray  # (k, D) PCA directions
    references: np.ndarray  # (N, k) projected, unit-length training features
    reference: np.ndarray  # (Q,) sorted quantiles of the validation images' distances
    classes: np.ndarray | None = None  # (N,) 0 real / 1 fake of each reference, in a description that scores
    ratio: np.ndarray | None = None  # (2,) slope and intercept making the log ratio a fake probability

    @property
    def scores(self) -> bool:
        """Whether the description makes a fake score (:meth:`fake_probability`)."""
        return self.ratio is not None

    def similarities(self, features: np.ndarray) -> np.ndarray:
        """Cosine similarity of each row of ``features`` (N, D) to each training image, shape (N, references)."""
        with _one_blas_thread(len(features)):
            z = _unit((np.asarray(features, np.float64) - self.center) / self.scale @ self.components.T)
            return z @ self.references.T

    def distance(self, features: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
        """One minus the cosine similarity of each row of ``features`` (N, D) to its ``neighbours``-th nearest
        training image, shape (N,)."""
        return _kth_distance(self.similarities(features), neighbours)

    def log_ratio(self, features: np.ndarray, neighbours: int = RATIO_NEIGHBOURS) -> np.ndarray:
        """log(distance to the ``neighbours``-th nearest training real / to the ``neighbours``-th nearest training
        fake): higher is more like the training fakes. Needs the references' classes."""
        return self._log_ratio(self.similarities(features), neighbours)

    def fake_probability(self, features: np.ndarray) -> np.ndarray:
        """The nearest training images' fake probability of each row of ``features``, shape (N,)."""
        return self._fake_probability(self.similarities(features))

    def familiarity(self, features: np.ndarray) -> np.ndarray:
        """Share of validation images at least as far from the training features as each image, in [0, 1]."""
        return self._familiarity(self.similarities(features))

    def read(self, probabilities: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fake probability, familiarity) of images whose network probabilities are ``probabilities`` (N,) and stage
        statistics ``features`` (N, D): the network's probabilities, averaged with the nearest training images'
        when the description scores. One projection of ``features`` serves both."""
        sims = self.similarities(features)
        if self.scores:
            probabilities = (np.asarray(probabilities, np.float64) + self._fake_probability(sims)) / 2
        return probabilities, self._familiarity(sims)

    def _log_ratio(self, sims: np.ndarray, neighbours: int = RATIO_NEIGHBOURS) -> np.ndarray:
        real, fake = (_kth_distance(sims[:, self.classes == c], neighbours) for c in (0, 1))
        return np.log(np.maximum(real, 1e-9)) - np.log(np.maximum(fake, 1e-9))

    def _fake_probability(self, sims: np.ndarray) -> np.ndarray:
        slope, intercept = self.ratio
        return 1.0 / (1.0 + np.exp(-(slope * self._log_ratio(sims) + intercept)))

    def _familiarity(self, sims: np.ndarray) -> np.ndarray:
        levels = np.linspace(0.0, 1.0, len(self.reference))  # reference[i] is the levels[i] quantile
        d = _kth_distance(sims, NEIGHBOURS)
        return np.clip(1.0 - np.interp(d, self.reference, levels, left=0.0, right=1.0), 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        kept = _FIELDS + (_SCORING if self.scores else ())
        return {"features": FEATURES, **{k: np.round(getattr(self, k), 5).tolist() for k in kept}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureModel | None:
        """The stored description, or None for one of other features (it cannot read this version's)."""
        if d.get("features") != FEATURES:
            return None
        return cls(**{k: np.asarray(d[k], np.float64) for k in _FIELDS + _SCORING if k in d})


def _kth_distance(sims: np.ndarray, k: int) -> np.ndarray:
    """One minus each row's ``k``-th largest similarity (the last, when a row has fewer)."""
    k = min(k, sims.shape[1])
    return 1.0 - np.partition(sims, -k, axis=1)[:, -k]


def standardisation(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) that standardise each feature of ``train`` (N, D): its mean and its spread, at least
    :data:`MIN_SCALE`."""
    return train.mean(0), np.maximum(train.std(0), MIN_SCALE)


def familiar(familiarity: np.ndarray) -> np.ndarray:
    """Which images are familiar (at or above :data:`FAMILIAR_CUT`); NaN, no familiarity, counts as familiar."""
    return np.nan_to_num(np.asarray(familiarity, np.float64), nan=1.0) >= FAMILIAR_CUT


def fit_feature_model(train: np.ndarray, val: np.ndarray, components: int = COMPONENTS,
                      labels: tuple[np.ndarray, np.ndarray] | None = None) -> FeatureModel:
    """Describe training features ``train`` (N, D); the validation features ``val`` (M, D) set the reference.
    ``labels``: the classes of ``train`` and ``val`` (0 real, 1 fake), for a description that scores (the log
    ratio's logistic fit is made on the validation images)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    train = np.asarray(train, np.float64)
    center, scale = standardisation(train)
    standard = (train - center) / scale
    pca = PCA(n_components=min(components, train.shape[1], len(train) - 1), random_state=0).fit(standard)
    # the PCA's own mean of the standardised features is zero, so its projection is the product with its components
    model = FeatureModel(center, scale, pca.components_, _unit(standard @ pca.components_.T), np.zeros(2))
    model.reference = np.quantile(model.distance(val), np.linspace(0.0, 1.0, QUANTILES))
    if labels is not None:
        model.classes = np.asarray(labels[0], np.float64)
        fit = LogisticRegression().fit(model.log_ratio(val)[:, None], labels[1])
        model.ratio = np.array([fit.coef_[0, 0], fit.intercept_[0]])
    return model


def decide(probability: float, familiarity: float | None, threshold: float) -> str:
    """``fake`` / ``real`` at ``threshold``, or ``uncertain`` when the image is unfamiliar and its score is not
    decisive (inside :data:`UNDECIDED`)."""
    if familiarity is not None and familiarity < FAMILIAR_CUT and UNDECIDED[0] < probability < UNDECIDED[1]:
        return "uncertain"
    return "fake" if probability >= threshold else "real"
