"""Fréchet distance between two sets of image features (FID when the features are Inception-v3's).

d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))  (Heusel et al. 2017), with ``scipy.linalg.sqrtm`` and
the usual guard for a singular product. Every result carries the name of its feature extractor: distances from
different extractors (or Inception weights) are on different scales and must never be compared.

Feature extractors:

- :class:`InceptionFeatures`: torchvision's Inception-v3 from a local weights file, 2048-d pool features. These are
  torchvision's ImageNet weights, not the TensorFlow graph of the original FID code, so the numbers are close to but
  not the same as published FIDs.
- :class:`DetectorFeatures`: a fakescope detector's globally average-pooled ``forward_features`` (any checkpoint
  or shipped detector), fed through the detector's own preprocessing.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from scipy import linalg

from fakescope.data.discovery import iter_image_files
from fakescope.forensics.io import ImageLoadError, load_image
from fakescope.progress import track

log = logging.getLogger(__name__)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError("need a (N, D) feature array with N >= 2")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrtm(a: np.ndarray, tolerance: float = 1e-4) -> np.ndarray | None:
    """``scipy.linalg.sqrtm(a)``, or None when the root is not finite or not accurate (a singular ``a``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(a)
    if not np.isfinite(root).all():
        return None
    error = np.linalg.norm(root @ root - a) / max(np.linalg.norm(a), 1e-30)
    return root if error < tolerance else None


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two distributions have different dimensions")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if covmean is None:
        # Singular product (fewer samples than dimensions): regularise both covariances slightly.
        log.warning("singular covariance product; adding %g to the diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Numerical noise gives tiny imaginary parts; large ones mean the input is not a covariance pair.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag)):.3g} in the matrix square root")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class FeatureExtractor(Protocol):
    name: str

    def __call__(self, images: list[Image.Image]) -> np.ndarray: ...


class DetectorFeatures:
    """Global-average-pooled ``forward_features`` of a fakescope detector, after its own preprocessing."""

    def __init__(self, detector):
        if not hasattr(getattr(detector, "model", None), "forward_features"):
            raise ValueError(f"{detector.name}: FID needs a single-model detector with forward_features "
                             "(not an ensemble or another runtime)")
        self.detector = detector
        pre = detector.preprocess
        self.name = f"detector:{detector.name} ({detector.meta.architecture}, {pre.input_mode} {pre.size}px, pooled)"

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        d = self.detector
        x = d.preprocess.to_tensor(np.stack([d.prepare(im) for im in images])).to(d.device)
        feats = d.model.forward_features(x)
        return (feats.mean(dim=(2, 3)) if feats.ndim == 4 else feats.flatten(1)).float().cpu().numpy()


class InceptionFeatures:
    """torchvision Inception-v3 pool features (2048-d) from a local weights file (never downloads)."""

    def __init__(self, weights: str | Path, device: str = "cpu"):
        from torchvision.models import inception_v3

        from fakescope.models.pretrained import read_state_dict

        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: Inception-v3 weights file does not exist")
        # transform_input=True: inputs are ImageNet-normalised, as torchvision's weights expect.
        model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
        model.load_state_dict(read_state_dict(weights), strict=True)
        model.fc = torch.nn.Identity()
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.name = f"inception_v3 (torchvision, {weights.name}, pool 2048-d)"

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        from fakescope.data.preprocess import IMAGENET_MEAN, IMAGENET_STD

        arrays = np.stack([np.asarray(im.convert("RGB").resize((299, 299), Image.Resampling.BILINEAR)) for im in images])
        x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(255.0)
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return self.model(x.to(self.device)).float().cpu().numpy()


@dataclass
class FIDResult:
    fid: float
    features: str
    dim: int
    n_a: int
    n_b: int
    skipped: list[str]

    def to_dict(self) -> dict:
        return {"fid": self.fid, "features": self.features, "dim": self.dim, "n_a": self.n_a, "n_b": self.n_b,
                "skipped": self.skipped}


def _batches(paths: list[Path], batch_size: int, skipped: list[str]) -> Iterator[list[Image.Image]]:
    batch: list[Image.Image] = []
    for path in paths:
        try:
            batch.append(load_image(path))
        except ImageLoadError as err:
            skipped.append(str(err))
            continue
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def folder_features(folder: str | Path, extractor: Callable[[list[Image.Image]], np.ndarray], batch_size: int = 32,
                    max_images: int | None = None, skipped: list[str] | None = None) -> np.ndarray:
    """Features of the images below ``folder`` (sorted order; the first ``max_images`` if given)."""
    paths = list(iter_image_files([folder]))[:max_images]
    if not paths:
        raise FileNotFoundError(f"{folder}: no images found")
    skipped = [] if skipped is None else skipped
    batches = track(_batches(paths, batch_size, skipped), -(-len(paths) // batch_size), f"features of {Path(folder).name}")
    return np.concatenate([extractor(b) for b in batches])


def compute_fid(dir_a: str | Path, dir_b: str | Path, extractor: FeatureExtractor, batch_size: int = 32,
                max_images: int | None = None) -> FIDResult:
    """Fréchet distance between the feature distributions of two image folders."""
    skipped: list[str] = []
    fa = folder_features(dir_a, extractor, batch_size, max_images, skipped)
    fb = folder_features(dir_b, extractor, batch_size, max_images, skipped)
    if min(len(fa), len(fb)) <= fa.shape[1]:
        log.warning("%d / %d images for %d-d features: covariances are rank-deficient and the distance is biased "
                    "upwards; compare only results with the same image counts", len(fa), len(fb), fa.shape[1])
    fid = frechet_distance(*feature_stats(fa), *feature_stats(fb))
    return FIDResult(fid, extractor.name, int(fa.shape[1]), len(fa), len(fb), skipped)


def build_extractor(features: str = "default", inception_weights: str | Path | None = None,
                    device: str = "auto") -> FeatureExtractor:
    """Inception-v3 when a local weights file is given, otherwise the pooled features of detector ``features``."""
    if inception_weights is not None:
        from fakescope.inference.detector import resolve_device

        return InceptionFeatures(inception_weights, str(resolve_device(device)))
    from fakescope.inference.detector import Detector

    return DetectorFeatures(Detector.load(features, device=device))
