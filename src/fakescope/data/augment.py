"""Robustness augmentation from torchvision transforms v2: JPEG re-compression, blur, rescale, flip, colour.

Applied to the decoded image before a detector's preprocessing (so ELA is computed on the augmented image),
which teaches detectors to ignore compression and resolution rather than learn them as shortcuts. A tampering
mask given with the image (``tv_tensors.Mask``) follows the geometric steps (flip, rescale) and is left alone by
the photometric ones, as torchvision v2 does for masks.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from fakescope.config import AugmentConfig


class RandomRescale(v2.Transform):
    """Resize by a random factor in ``scale`` (keeps the aspect ratio; destroys pixel-grid traces like real uploads)."""

    def __init__(self, scale: tuple[float, float] = (0.5, 1.0)):
        super().__init__()
        self.scale = scale

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"factor": float(torch.empty(1).uniform_(*self.scale))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        h, w = F.get_size(inpt)
        size = [max(8, round(h * params["factor"])), max(8, round(w * params["factor"]))]
        return F.resize(inpt, size, antialias=True)


def build_augment(cfg: AugmentConfig) -> v2.Compose | None:
    """The training augmentation for ``cfg`` (PIL in, PIL out), or None when disabled."""
    if not cfg.enabled:
        return None
    q_lo, q_hi = cfg.jpeg_quality
    return v2.Compose([
        v2.PILToTensor(),
        v2.RandomHorizontalFlip(cfg.flip_p),
        # No hue jitter: torchvision's hue shift costs about 1 s per 512-px image on a CPU.
        v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2)], p=cfg.color_p),
        v2.RandomApply([RandomRescale(cfg.rescale)], p=cfg.rescale_p),
        v2.RandomApply([v2.GaussianBlur(kernel_size=13, sigma=cfg.blur_sigma)], p=cfg.blur_p),
        v2.RandomApply([v2.JPEG((int(q_lo), int(q_hi)))], p=cfg.jpeg_p),
        v2.ToPILImage(),
    ])


def apply(augment: v2.Compose | None, img: Image.Image) -> Image.Image:
    return img if augment is None else augment(img)


def apply_with_mask(augment: v2.Compose | None, img: Image.Image,
                    mask: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """Augment ``img`` and its uint8 (H, W) ``mask`` with the same draw of every geometric step."""
    if augment is None:
        return img, mask
    out, m = augment(img, tv_tensors.Mask(torch.from_numpy(mask)))
    return out, m.numpy()
