"""A torch Dataset over labelled image files: decode -> (augment) -> preprocess, with the on-disk cache."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from fakescope.data.augment import apply, apply_with_mask
from fakescope.data.cache import ArrayCache
from fakescope.data.discovery import Sample
from fakescope.data.masks import PixelTarget, load_mask
from fakescope.data.preprocess import Preprocess
from fakescope.data.synth import SyntheticTampering
from fakescope.forensics.io import ImageLoadError, load_image

log = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Items are ``(uint8 HWC array, label)``; an unreadable file gives ``None`` (dropped by :func:`collate_skip`).

    The cache is used only without augmentation: an augmented image is different every epoch by design.

    With ``pixel_targets`` (one per sample, see :mod:`fakescope.data.masks`) items are ``(array, label, mask,
    known)``: the uint8 (size, size) tampering mask, augmented and resized with the image, and 1.0 where the
    sample has a pixel target (0.0 and an empty mask where it has none). Only whole-image (``squash``) inputs.

    With ``tampering`` some fake draws are replaced by a synthetic splice or copy-move of a training real
    (:class:`fakescope.data.synth.SyntheticTampering`), whose mask is then the pixel target.
    """

    def __init__(self, samples: Sequence[Sample], preprocess: Preprocess, augment=None, cache_dir: str | Path | None = None,
                 random_crop: bool = False, pixel_targets: Sequence[PixelTarget] | None = None,
                 tampering: SyntheticTampering | None = None):
        if pixel_targets is not None:
            if preprocess.resize != "squash":
                raise ValueError("pixel-level (mask) targets need a whole-image detector, not resize='crop'")
            if len(pixel_targets) != len(samples):
                raise ValueError(f"{len(pixel_targets)} pixel targets for {len(samples)} samples")
        self.pixel_targets = None if pixel_targets is None else list(pixel_targets)
        self.samples = list(samples)
        self.preprocess = preprocess
        self.augment = augment
        self.tampering = tampering
        # Crop preprocessing (``resize="crop"``): a random native-resolution window per item (training) instead of
        # the centre one; drawn from torch's RNG, which the DataLoader seeds per worker, so runs are repeatable.
        self.random_crop = random_crop and preprocess.resize == "crop"
        cacheable = augment is None and not self.random_crop and pixel_targets is None and tampering is None
        self.cache = ArrayCache(cache_dir, preprocess.key()) if cache_dir and cacheable else None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def _rng(self) -> np.random.Generator:
        """Drawn from torch's RNG, which the DataLoader seeds per worker, so runs are repeatable."""
        return np.random.default_rng(int(torch.randint(0, 2**62, ())))

    def _tampered(self, sample: Sample) -> tuple[Image.Image, np.ndarray] | None:
        if self.tampering is None or sample.label != 1:
            return None
        return self.tampering.draw(self._rng())

    def _compute(self, sample: Sample) -> np.ndarray:
        tampered = self._tampered(sample)
        img = apply(self.augment, tampered[0] if tampered else load_image(sample.path))
        if self.random_crop:
            return self.preprocess.to_array(img, self._rng())
        return self.preprocess.to_array(img)

    def _compute_with_mask(self, sample: Sample, target: PixelTarget) -> tuple[np.ndarray, np.ndarray, float]:
        tampered = self._tampered(sample)
        if tampered is not None:
            img, mask = tampered
        else:
            img = load_image(sample.path)
            mask = load_mask(target, img.size)
        known = mask is not None
        img, mask = apply_with_mask(self.augment, img, mask if known else np.zeros(img.size[::-1], np.uint8))
        side = (self.preprocess.size, self.preprocess.size)
        mask = np.array(Image.fromarray(mask).resize(side, Image.Resampling.BILINEAR))
        return self.preprocess.to_array(img), mask, float(known)

    def __getitem__(self, index: int) -> tuple | None:
        sample = self.samples[index]
        try:
            if self.pixel_targets is not None:
                arr, mask, known = self._compute_with_mask(sample, self.pixel_targets[index])
                return arr, sample.label, mask, known
            if self.cache is not None:
                arr = self.cache.get(sample.path, lambda: self._compute(sample))
            else:
                arr = self._compute(sample)
        except ImageLoadError as err:
            log.warning("skipping %s", err)
            return None
        return arr, sample.label


def collate_skip(batch: list[tuple | None]) -> tuple[torch.Tensor, ...] | None:
    """Stack a batch, dropping unreadable items; None when nothing in the batch was readable.

    ``(arrays, labels)``, or ``(arrays, labels, masks, known)`` from a dataset with pixel targets."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return tuple(default_collate(batch))
