"""A torch Dataset over labelled image files: decode -> (augment) -> preprocess, with the on-disk cache."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from fakescope.data.augment import apply
from fakescope.data.cache import ArrayCache
from fakescope.data.discovery import Sample
from fakescope.data.preprocess import Preprocess
from fakescope.forensics.io import ImageLoadError, load_image

log = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Items are ``(uint8 HWC array, label)``; an unreadable file gives ``None`` (dropped by :func:`collate_skip`).

    The cache is used only without augmentation: an augmented image is different every epoch by design.
    """

    def __init__(self, samples: Sequence[Sample], preprocess: Preprocess, augment=None, cache_dir: str | Path | None = None,
                 random_crop: bool = False):
        self.samples = list(samples)
        self.preprocess = preprocess
        self.augment = augment
        # Crop preprocessing (``resize="crop"``): a random native-resolution window per item (training) instead of
        # the centre one; drawn from torch's RNG, which the DataLoader seeds per worker, so runs are repeatable.
        self.random_crop = random_crop and preprocess.resize == "crop"
        cacheable = augment is None and not self.random_crop
        self.cache = ArrayCache(cache_dir, preprocess.key()) if cache_dir and cacheable else None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def _compute(self, path: Path) -> np.ndarray:
        img = apply(self.augment, load_image(path))
        if self.random_crop:
            return self.preprocess.to_array(img, np.random.default_rng(int(torch.randint(0, 2**62, ()))))
        return self.preprocess.to_array(img)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int] | None:
        sample = self.samples[index]
        try:
            if self.cache is not None:
                arr = self.cache.get(sample.path, lambda: self._compute(sample.path))
            else:
                arr = self._compute(sample.path)
        except ImageLoadError as err:
            log.warning("skipping %s", err)
            return None
        return arr, sample.label


def collate_skip(batch: list[tuple[np.ndarray, int] | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Stack a batch, dropping unreadable items; None when nothing in the batch was readable."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    arrays, labels = default_collate(batch)
    return arrays, labels
