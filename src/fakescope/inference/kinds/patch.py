"""Patch-level detection: score native-resolution crops of an image and aggregate their scores per image.

Trace detectors (NPR, noise residuals, spectra) read pixel-level evidence that resizing a whole image to the
network's input size would erase. They are trained on random ``size`` x ``size`` crops (``Preprocess(resize=
"crop")``) and score an image by cutting it into crops that cover it, scoring every crop and aggregating:

- ``mean``: the average crop probability (a fully generated image is fake everywhere);
- ``max``: the most suspicious crop (a small pasted region is enough to make an image fake);
- ``topk``: the mean of the ``top_k`` highest, between the two.

The settings travel in the checkpoint (``meta.info["kind"] = "patch"``, ``meta.info["patch"]``), and
:class:`PatchDetector` keeps the :class:`~fakescope.inference.detector.Detector` contract (``preparer`` and
``predict_batch``), so scan, evaluate, the API and the benchmarks use it unchanged.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from fakescope.checkpoint import CheckpointMeta, load_checkpoint
from fakescope.data.preprocess import Preprocess, grid_origins, pad_to
from fakescope.inference.detector import Detector, Scores
from fakescope.inference.kinds import register_kind

log = logging.getLogger(__name__)

PATCH_KIND = "patch"
AGGREGATES = ("mean", "max", "topk")
LAYOUTS = ("grid", "random")


@dataclass(frozen=True)
class PatchConfig:
    """How an image becomes patches and how their scores become one.

    ``layout``: ``grid`` (windows covering the image; with more than ``max_patches`` an evenly spaced subset) or
    ``random`` (``max_patches`` windows drawn with ``seed``, the same for every image of a given size).
    """

    aggregate: str = "mean"
    top_k: int = 3
    layout: str = "grid"
    max_patches: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.top_k < 1 or self.max_patches < 1:
            raise ValueError("top_k and max_patches must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PatchConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown patch settings: {sorted(unknown)}")
        return cls(**d)


def aggregate(scores: np.ndarray, how: str = "mean", top_k: int = 3) -> float:
    """One image's score from its patch scores: ``mean``, ``max`` or ``topk`` (mean of the ``top_k`` highest)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no patch scores to aggregate")
    if how == "mean":
        return float(scores.mean())
    if how == "max":
        return float(scores.max())
    if how == "topk":
        return float(np.sort(scores)[-top_k:].mean())
    raise ValueError(f"aggregate must be one of {AGGREGATES}, got {how!r}")


def patch_origins(h: int, w: int, size: int, config: PatchConfig) -> list[tuple[int, int]]:
    """(top, left) of the patches of an (h, w) image (already padded to at least ``size``)."""
    if config.layout == "grid":
        return grid_origins(h, w, size, config.max_patches)
    rng = np.random.default_rng(config.seed)
    tops = rng.integers(0, h - size + 1, config.max_patches)
    lefts = rng.integers(0, w - size + 1, config.max_patches)
    return [(int(t), int(l)) for t, l in zip(tops, lefts)]


def cut_patches(arr: np.ndarray, size: int, origins: list[tuple[int, int]]) -> np.ndarray:
    """(H, W, C) -> (P, size, size, C) uint8 windows at ``origins``."""
    return np.ascontiguousarray(np.stack([arr[t:t + size, l:l + size] for t, l in origins]))


@dataclass(frozen=True)
class PatchPreparer:
    """Picklable ``to_array(img)`` for scan workers: an image -> its stack of native-resolution patches."""

    preprocess: Preprocess
    config: PatchConfig

    def native(self, img: Image.Image) -> np.ndarray:
        pre = self.preprocess
        return pad_to(pre.stack_native(pre.native_parts(img)), pre.size)

    def to_array(self, img: Image.Image) -> np.ndarray:
        arr = self.native(img)
        size = self.preprocess.size
        return cut_patches(arr, size, patch_origins(arr.shape[0], arr.shape[1], size, self.config))


@register_kind(PATCH_KIND)
class PatchDetector(Detector):
    """A detector that scores patches at native resolution and aggregates them per image."""

    #: Patches per forward pass: bounds memory whatever the batch size and image sizes.
    chunk = 64
    #: Patches per class-activation pass (each keeps its activations and gradients).
    cam_chunk = 32

    def __init__(self, model: nn.Module, meta: CheckpointMeta, name: str, device: str = "auto",
                 config: PatchConfig | None = None):
        super().__init__(model, meta, name, device)
        if meta.preprocess.resize != "crop":
            raise ValueError(f"{name}: a patch detector needs resize='crop' preprocessing, "
                             f"got {meta.preprocess.resize!r}")
        self.config = config or PatchConfig.from_dict(meta.info.get("patch", {}))

    @classmethod
    def from_checkpoint(cls, path: str | Path, name: str, device: str = "auto", **overrides: Any) -> PatchDetector:
        """Load a patch checkpoint; ``overrides`` change its patch settings (e.g. ``aggregate="max"``)."""
        model, meta = load_checkpoint(path)
        config = replace(PatchConfig.from_dict(meta.info.get("patch", {})), **overrides)
        return cls(model, meta, name, device, config)

    @property
    def preparer(self) -> PatchPreparer:
        return PatchPreparer(self.preprocess, self.config)

    def patch_logits(self, items: list[np.ndarray]) -> list[torch.Tensor]:
        """Patch stacks from :meth:`prepare` -> (patches, 2) logits, one tensor per image."""
        if not items:
            return []
        return list(torch.split(torch.cat([self.logits(c) for c in self._chunks(items)]), [len(x) for x in items]))

    def _chunks(self, items: list[np.ndarray]) -> list[np.ndarray]:
        """Every image's patches in one run, cut into forward passes of at most :attr:`chunk`."""
        flat = np.concatenate(items)
        return [flat[i:i + self.chunk] for i in range(0, len(flat), self.chunk)]

    def patch_probabilities(self, items: list[np.ndarray]) -> list[np.ndarray]:
        """Patch stacks from :meth:`prepare` -> calibrated fake probability of every patch, one array per image."""
        return [self.probabilities(logits) for logits in self.patch_logits(items)]

    def predict_batch(self, items: list[np.ndarray]) -> np.ndarray:
        return self.image_probabilities(self.patch_logits(items))

    def image_probabilities(self, patch_logits: list[torch.Tensor]) -> np.ndarray:
        """Each image's (patches, 2) logits -> its calibrated fake probability, the patches' aggregated."""
        cfg = self.config
        return np.array([aggregate(self.probabilities(lg), cfg.aggregate, cfg.top_k) for lg in patch_logits],
                        dtype=np.float64)

    def _logits_and_features(self, items: list[np.ndarray]) -> tuple[list[torch.Tensor], np.ndarray]:
        """Patch stacks -> the (patches, 2) logits of each image and its (N, D) features: the mean stage statistics
        of its patches (what familiarity describes and reads for a patch detector)."""
        parts = [self.logits_and_features(c) for c in self._chunks(items)]
        sizes = [len(x) for x in items]
        per_image = np.split(np.concatenate([f for _, f in parts]), np.cumsum(sizes)[:-1])
        return list(torch.split(torch.cat([lg for lg, _ in parts]), sizes)), np.stack([f.mean(0) for f in per_image])

    def image_features(self, items: list[np.ndarray]) -> np.ndarray:
        return self._logits_and_features(items)[1]

    def model_scores(self, items: list[np.ndarray]) -> Scores:
        if self.feature_model is None:
            return Scores(self.predict_batch(items))
        logits, features = self._logits_and_features(items)
        return Scores(*self.feature_model.read(self.image_probabilities(logits), features))

    def _grid(self, img: Image.Image) -> tuple[tuple[int, int], list[tuple[int, int]], np.ndarray]:
        """(padded shape, origins, patches) of the full grid over ``img`` (no ``max_patches`` limit)."""
        arr = self.preparer.native(img)
        size = self.preprocess.size
        origins = grid_origins(arr.shape[0], arr.shape[1], size)
        return arr.shape[:2], origins, cut_patches(arr, size, origins)

    def _average(self, shape: tuple[int, int], origins: list[tuple[int, int]], values: list,
                 img_size: tuple[int, int]) -> np.ndarray:
        """Per-patch values (scalars or maps) averaged over every pixel's covering patches, cropped to the image."""
        size = self.preprocess.size
        total = np.zeros(shape, dtype=np.float64)
        count = np.zeros(shape, dtype=np.float64)
        for (t, l), v in zip(origins, values):
            total[t:t + size, l:l + size] += v
            count[t:t + size, l:l + size] += 1
        return (total / np.maximum(count, 1))[:img_size[1], :img_size[0]].astype(np.float32)

    def patch_map(self, img: Image.Image) -> np.ndarray:
        """Fake probability of every pixel's covering patches (averaged where they overlap), float32 (H, W).

        Uses the full grid (no ``max_patches`` limit): it shows where the evidence is, as a Grad-CAM map does.
        """
        shape, origins, patches = self._grid(img)
        return self._average(shape, origins, list(self.patch_probabilities([patches])[0]), img.size)

    def explain_map(self, img: Image.Image, method: str | None = None) -> np.ndarray:
        """The class-activation map of every patch of the full native-resolution grid, scaled by that patch's fake
        probability (a CAM is normalised per input, so an all-real patch would otherwise glow as brightly as a
        fake one) and averaged where patches overlap: the whole image, not one resized view it never scores."""
        from fakescope.explain.cam import DEFAULT_CAM, model_cams_and_logits

        shape, origins, patches = self._grid(img.convert("RGB"))
        maps: list[np.ndarray] = []
        for i in range(0, len(origins), self.cam_chunk):
            cams, logits = model_cams_and_logits(self.model, self.meta.architecture,
                                                 self.preprocess.to_tensor(patches[i:i + self.cam_chunk]),
                                                 method or DEFAULT_CAM)
            maps += list(cams * self.probabilities(logits)[:, None, None])
        return np.clip(self._average(shape, origins, maps, img.size), 0.0, 1.0)


def patch_info(preprocess: Preprocess, config: PatchConfig | None = None) -> dict[str, Any]:
    """Checkpoint ``info`` entries that make ``Detector.load`` build a :class:`PatchDetector` ({} if not a crop model)."""
    if preprocess.resize != "crop":
        return {}
    return {"kind": PATCH_KIND, "patch": (config or PatchConfig()).to_dict()}

