"""Ensembles of detectors: a saved ensemble is a detector like any other.

Methods (``fakescope ensemble --method``):

- ``mean``: the mean of the members' calibrated fake probabilities;
- ``majority``: the fraction of members voting fake (each at its own threshold); an exact tie is broken by the
  mean probability;
- ``weighted``: a weighted vote; weights are given, or each member's log-odds of validation accuracy,
  ``log(acc / (1 - acc))`` (the optimal weights for independent voters; a member no better than chance gets 0);
- ``stacking``: members' probabilities (and, with ``features``, their penultimate activations: the input of the
  classifier layer, i.e. timm's ``forward_head(pre_logits=True)``) -> StandardScaler -> PCA -> RBF SVC with
  Platt-scaled probabilities (``CalibratedClassifierCV(SVC(), method="sigmoid", ensemble=False)``, the
  replacement scikit-learn gives for the deprecated ``SVC(probability=True)``), fitted with scikit-learn.

Weights and the stacker are fitted on the validation split of the data (``stratified_split``, seed 0), never on
the data the ensemble is evaluated on; the metrics reported for them are out-of-fold (k-fold within that split).

Format: one ``.safetensors`` checkpoint with ``info["kind"] = "ensemble"``. Member weights are embedded under
``members.<i>.``; each member's own metadata (architecture, preprocessing, temperature, threshold) is stored in
``info["members"]``; the fitted scaler, PCA, SVC and sigmoid are stored as explicit float64 arrays under
``stacker.`` and
evaluated with NumPy (no pickle, no scikit-learn needed to load). :class:`EnsembleDetector` is registered in
``DETECTOR_KINDS``, so ``Detector.load(path)`` returns it and scan, evaluate and the API use it unchanged.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from fakescope.data.discovery import Sample, discover_samples
from fakescope.data.splits import split_folders
from fakescope.engine.checkpoint import CheckpointMeta, read_meta, save_checkpoint
from fakescope.evaluation.metrics import compute_metrics
from fakescope.inference.detector import DETECTOR_KINDS, Detector, DetectorError

log = logging.getLogger(__name__)

METHODS = ("mean", "majority", "weighted", "stacking")
KIND = "ensemble"


# ---------------------------------------------------------------------------------------------- members' outputs
def classifier_module(model: nn.Module) -> nn.Module:
    """The layer producing the logits: timm's ``get_classifier()``, else the model's last ``nn.Linear``."""
    getter = getattr(model, "get_classifier", None)
    if callable(getter) and isinstance(getter(), nn.Module) and not isinstance(getter(), nn.Identity):
        return getter()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DetectorError(f"{type(model).__name__}: no classifier layer found for penultimate features")
    return linears[-1]


@torch.inference_mode()
def member_outputs(detector: Detector, arrays: Sequence[Any], features: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A member's calibrated fake probabilities (N,) and, with ``features``, its penultimate activations (N, D)."""
    if not features:
        return np.asarray(detector.predict_batch(list(arrays)), dtype=np.float64), None
    captured: list[torch.Tensor] = []
    hook = classifier_module(detector.model).register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0].flatten(1).float().cpu()))
    try:
        logits = detector.logits(np.stack(arrays))
    finally:
        hook.remove()
    probs = torch.softmax(logits / detector.meta.temperature, dim=1)[:, 1]
    return probs.numpy().astype(np.float64), captured[-1].numpy().astype(np.float64)


class EnsemblePreparer:
    """Picklable ``to_array(img)`` -> one input per member; members with equal preprocessing share the work."""

    def __init__(self, preparers: Sequence[Any]):
        self.preparers = tuple(preparers)

    def to_array(self, img: Any) -> tuple[Any, ...]:
        done: list[tuple[Any, Any]] = []
        out = []
        for prep in self.preparers:
            array = next((a for p, a in done if p == prep), None)
            if array is None:
                array = prep.to_array(img)
                done.append((prep, array))
            out.append(array)
        return tuple(out)


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


# ---------------------------------------------------------------------------------------------- the detector
class EnsembleModule(nn.Module):
    """Container whose state dict is the checkpoint's tensors: ``members.<i>.*`` and ``stacker.*``."""

    def __init__(self, models: Sequence[nn.Module], stacker: Stacker | None = None):
        super().__init__()
        self.members = nn.ModuleList(models)
        self.stacker = nn.Module()
        for key, value in (stacker.arrays() if stacker is not None else {}).items():
            self.stacker.register_buffer(key, torch.from_numpy(value))


class EnsembleDetector(Detector):
    """Scores with several member detectors and a :class:`Combiner`; saves as one checkpoint."""

    def __init__(self, members: Sequence[Detector], combiner: Combiner, name: str = "ensemble",
                 device: str = "auto", info: dict[str, Any] | None = None):
        for m in members:
            if type(m) is not Detector:
                raise DetectorError(f"{m.name}: ensemble members must be single-model detectors")
        self.members = list(members)
        self.combiner = combiner
        meta = CheckpointMeta(architecture=KIND, preprocess=members[0].preprocess, threshold=0.5,
                              info=self._info(info or {}))
        super().__init__(EnsembleModule([m.model for m in members], combiner.stacker), meta, name, device)

    def _info(self, extra: dict[str, Any]) -> dict[str, Any]:
        c = self.combiner
        return {**extra, "kind": KIND, "method": c.method, "features": c.features, "n_components": c.n_components,
                "weights": None if c.weights is None else [float(w) for w in c.weights],
                "members": [{"name": m.name, "meta": json.loads(m.meta.to_json())} for m in self.members]}

    @property
    def preparer(self) -> EnsemblePreparer:
        return EnsemblePreparer([m.preparer for m in self.members])

    @property
    def needs_features(self) -> bool:
        return self.combiner.method == "stacking" and self.combiner.features

    def member_matrix(self, items: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray | None]:
        """Members' probabilities (N, M) and, for feature stacking, their concatenated features (N, D)."""
        features = self.needs_features
        probs, feats = [], []
        for i, member in enumerate(self.members):
            p, f = member_outputs(member, [item[i] for item in items], features)
            probs.append(p)
            feats.append(f)
        return np.stack(probs, axis=1), (np.concatenate(feats, axis=1) if features else None)

    def predict_batch(self, items: list) -> np.ndarray:
        probs, feats = self.member_matrix(items)
        return self.combiner.predict(probs, feats)

    def predict_arrays(self, arrays: np.ndarray) -> np.ndarray:
        raise TypeError("an ensemble takes one input per member: use predict_batch([preparer.to_array(img)])")

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.model, self.meta)

    @classmethod
    def from_checkpoint(cls, path: str | Path, name: str, device: str = "auto") -> EnsembleDetector:
        from safetensors.torch import load_file

        meta = read_meta(path)
        tensors = load_file(str(path))
        members = []
        for i, m in enumerate(meta.info["members"]):
            member_meta = CheckpointMeta.from_json(json.dumps(m["meta"]))
            model = _member_model(member_meta, tensors, f"members.{i}.")
            members.append(Detector(model, member_meta, m["name"], device))
        stacker_arrays = {k[len("stacker."):]: v.numpy() for k, v in tensors.items() if k.startswith("stacker.")}
        info = meta.info
        weights = None if info.get("weights") is None else np.asarray(info["weights"], dtype=np.float64)
        combiner = Combiner(info["method"], [m.threshold for m in members], weights,
                            Stacker.from_arrays(stacker_arrays) if stacker_arrays else None,
                            bool(info.get("features", False)), int(info.get("n_components", 16)))
        extra = {k: v for k, v in info.items() if k in ("data", "metrics", "created")}
        return cls(members, combiner, name, device, extra)


def _member_model(meta: CheckpointMeta, tensors: dict[str, torch.Tensor], prefix: str) -> nn.Module:
    from fakescope.registry import get_spec

    spec = get_spec(meta.architecture)
    model = spec.factory(in_chans=meta.preprocess.channels, pretrained=False, size=meta.preprocess.size,
                         **{**spec.kwargs, **meta.model_kwargs})
    state = {k[len(prefix):]: (v.float() if v.is_floating_point() else v)
             for k, v in tensors.items() if k.startswith(prefix)}
    model.load_state_dict(state, strict=True)
    return model.eval()


DETECTOR_KINDS[KIND] = EnsembleDetector


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
    for batch in _batches(iter_prepared([s.path for s in samples], ensemble.preparer, workers, transform), batch_size):
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


def fit_ensemble(members: Sequence[str], method: str, data: Sequence[str | Path],
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
