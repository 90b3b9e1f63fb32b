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

The combiners are :mod:`fakescope.ensemble.combine`; fitting them on data is :mod:`fakescope.ensemble.fit`.

Format: one ``.safetensors`` checkpoint with ``info["kind"] = "ensemble"``. Member weights are embedded under
``members.<i>.``; each member's own metadata (architecture, preprocessing, temperature, threshold) is stored in
``info["members"]``; the fitted scaler, PCA, SVC and sigmoid are stored as explicit float64 arrays under
``stacker.`` and evaluated with NumPy (no pickle, no scikit-learn needed to load). :class:`EnsembleDetector` is
the ``ensemble`` detector kind, so ``Detector.load(path)`` returns it and scan, evaluate and the API use it
unchanged.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fakescope.checkpoint import CheckpointMeta, build_model, float_state, read_meta, save_checkpoint
from fakescope.ensemble.combine import Combiner, Stacker
from fakescope.inference.detector import Detector, DetectorError, classifier_module
from fakescope.inference.kinds import SINGLE, register_kind
from fakescope.inference.kinds.single import SingleDetector

log = logging.getLogger(__name__)

KIND = "ensemble"


# ---------------------------------------------------------------------------------------------- members' outputs
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
    return detector.probabilities(logits), captured[-1].numpy().astype(np.float64)


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


# ---------------------------------------------------------------------------------------------- the detector
class EnsembleModule(nn.Module):
    """Container whose state dict is the checkpoint's tensors: ``members.<i>.*`` and ``stacker.*``."""

    def __init__(self, models: Sequence[nn.Module], stacker: Stacker | None = None):
        super().__init__()
        self.members = nn.ModuleList(models)
        self.stacker = nn.Module()
        for key, value in (stacker.arrays() if stacker is not None else {}).items():
            self.stacker.register_buffer(key, torch.from_numpy(value))


@register_kind(KIND)
class EnsembleDetector(Detector):
    """Scores with several member detectors and a :class:`Combiner`; saves as one checkpoint."""

    def __init__(self, members: Sequence[Detector], combiner: Combiner, name: str = "ensemble",
                 device: str = "auto", info: dict[str, Any] | None = None):
        for m in members:
            if m.kind != SINGLE:
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

    def explain_map(self, img: Any, method: str | None = None) -> np.ndarray:
        from fakescope.explain.cam import ExplainError

        raise ExplainError(f"detector {self.name!r} is an ensemble: it has no single model to explain")

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
            model = build_model(member_meta)
            model.load_state_dict(float_state(tensors, f"members.{i}."), strict=True)
            members.append(SingleDetector(model, member_meta, m["name"], device))
        stacker_arrays = {k[len("stacker."):]: v.numpy() for k, v in tensors.items() if k.startswith("stacker.")}
        info = meta.info
        weights = None if info.get("weights") is None else np.asarray(info["weights"], dtype=np.float64)
        combiner = Combiner(info["method"], [m.threshold for m in members], weights,
                            Stacker.from_arrays(stacker_arrays) if stacker_arrays else None,
                            bool(info.get("features", False)), int(info.get("n_components", 16)))
        extra = {k: v for k, v in info.items() if k in ("data", "metrics", "created")}
        return cls(members, combiner, name, device, extra)
