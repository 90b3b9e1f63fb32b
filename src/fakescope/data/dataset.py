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
from fakescope.data.preprocess import Preprocess, shuffle_patches
from fakescope.data.pseudo import KINDS, make_pseudo_fake
from fakescope.forensics.io import ImageLoadError, load_image, squash

log = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Items are ``(uint8 HWC array, label)``; an unreadable file gives ``None`` (dropped by :func:`collate_skip`).

    The cache is used only without augmentation: an augmented image is different every epoch by design.

    With ``pixel_targets`` (one per sample, see :mod:`fakescope.data.masks`) items are ``(array, label, mask,
    known)``: the uint8 (size, size) tampering mask, augmented and resized with the image, and 1.0 where the
    sample has a pixel target (0.0 and an empty mask where it has none). Only whole-image (``squash``) inputs.

    ``pseudo`` (one flag per sample) marks real samples to be made into a new pseudo-fake each time they are drawn
    (:mod:`fakescope.data.pseudo`, one of ``pseudo_kinds`` each time): their label is fake, and their pixel target
    is the pseudo-fake's own mask.
    """

    def __init__(self, samples: Sequence[Sample], preprocess: Preprocess, augment=None, cache_dir: str | Path | None = None,
                 random_crop: bool = False, pixel_targets: Sequence[PixelTarget] | None = None,
                 pseudo: Sequence[bool] | None = None, pseudo_kinds: tuple[str, ...] = tuple(KINDS),
                 sources: Sequence[int] | None = None,
                 with_source: bool = False, patch_shuffle: tuple[float, int] = (0.0, 32)):
        if pixel_targets is not None:
            if preprocess.resize != "squash":
                raise ValueError("pixel-level (mask) targets need a whole-image detector, not resize='crop'")
            if len(pixel_targets) != len(samples):
                raise ValueError(f"{len(pixel_targets)} pixel targets for {len(samples)} samples")
        self.pixel_targets = None if pixel_targets is None else list(pixel_targets)
        self.pseudo = [False] * len(samples) if pseudo is None else list(pseudo)
        if len(self.pseudo) != len(samples):
            raise ValueError(f"{len(self.pseudo)} pseudo-fake flags for {len(samples)} samples")
        self.samples = [Sample(s.path, 1) if p else s for s, p in zip(samples, self.pseudo)]
        self.pseudo_kinds = pseudo_kinds
        #: the training folder each sample came from (per-source balancing)
        self.sources = [0] * len(samples) if sources is None else list(sources)
        #: items end with their source index (a source-adversarial head's target)
        self.with_source = with_source
        self.preprocess = preprocess
        self.augment = augment
        # Crop preprocessing (``resize="crop"``): a random native-resolution window per item (training) instead of
        # the centre one; drawn from torch's RNG, which the DataLoader seeds per worker, so runs are repeatable.
        self.random_crop = random_crop and preprocess.resize == "crop"
        #: (share of items, square side in px): items whose squares are shuffled (:func:`shuffle_patches`)
        self.patch_shuffle = patch_shuffle
        cacheable = (augment is None and not self.random_crop and pixel_targets is None and not any(self.pseudo)
                     and not patch_shuffle[0])
        self.cache = ArrayCache(cache_dir, preprocess.key()) if cache_dir and cacheable else None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def _rng(self) -> np.random.Generator:
        """Drawn from torch's RNG, which the DataLoader seeds per worker and epoch, so runs are repeatable."""
        return np.random.default_rng(int(torch.randint(0, 2**62, ())))

    def _decode(self, index: int) -> tuple[Image.Image, np.ndarray | None]:
        """The decoded image, made into a pseudo-fake if the sample is one (then also its mask)."""
        img = load_image(self.samples[index].path)
        if not self.pseudo[index]:
            return img, None
        return make_pseudo_fake(img, self.preprocess.size, self._rng(), self.pseudo_kinds)

    def _compute(self, index: int) -> np.ndarray:
        img = apply(self.augment, self._decode(index)[0])
        if self.random_crop:
            return self.preprocess.to_array(img, self._rng())
        return self.preprocess.to_array(img)

    def _compute_with_mask(self, index: int) -> tuple[np.ndarray, np.ndarray, float]:
        img, mask = self._decode(index)
        if mask is None:
            mask = load_mask(self.pixel_targets[index], img.size)
        known = mask is not None
        img, mask = apply_with_mask(self.augment, img, mask if known else np.zeros(img.size[::-1], np.uint8))
        mask = np.array(squash(Image.fromarray(mask), self.preprocess.size))
        return self.preprocess.to_array(img), self.preprocess.arranged(mask), float(known)

    def _shuffled(self, arr: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        share, cell = self.patch_shuffle
        if share <= 0 or float(torch.rand(())) >= share:
            return arr, mask
        return shuffle_patches(arr, cell, self._rng(), mask)

    def __getitem__(self, index: int) -> tuple | None:
        sample = self.samples[index]
        try:
            if self.pixel_targets is not None:
                arr, mask, known = self._compute_with_mask(index)
                arr, mask = self._shuffled(arr, mask)
                return (arr, sample.label, mask, known, *([self.sources[index]] if self.with_source else []))
            if self.cache is not None:
                arr = self.cache.get(sample.path, lambda: self._compute(index))
            else:
                arr = self._shuffled(self._compute(index))[0]
        except ImageLoadError as err:
            log.warning("skipping %s", err)
            return None
        return (arr, sample.label, self.sources[index]) if self.with_source else (arr, sample.label)


def collate_skip(batch: list[tuple | None]) -> tuple[torch.Tensor, ...] | None:
    """Stack a batch, dropping unreadable items; None when nothing in the batch was readable.

    ``(arrays, labels)``, or ``(arrays, labels, masks, known)`` from a dataset with pixel targets; each followed by
    the source indices from a dataset ``with_source``."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return tuple(default_collate(batch))
