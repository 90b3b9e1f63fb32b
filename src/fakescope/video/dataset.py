"""Labelled videos for training a clip detector: ``real/`` + ``fake/`` folders (any layout
:mod:`fakescope.data.discovery` knows), each video becoming one (T, H, W, C) uint8 clip.

Clips are cached on disk like image arrays (keyed by file content and preprocessing, which holds the clip
settings), so epochs after the first skip decoding and face detection.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import Dataset

from fakescope.data.cache import ArrayCache, default_cache_dir
from fakescope.data.discovery import Sample, discover_labelled
from fakescope.data.preprocess import Preprocess
from fakescope.data.splits import limit_per_class, stratified_split
from fakescope.video.clips import ClipPreparer
from fakescope.video.frames import VideoLoadError, is_video_file

if TYPE_CHECKING:
    from fakescope.config import TrainConfig

log = logging.getLogger(__name__)


def discover_videos(root: str | Path) -> list[Sample]:
    """Labelled videos below ``root`` (class folders such as real/ + fake/); :class:`LayoutError` if none."""
    return discover_labelled(root, is_video_file, "videos", "expected real/ and fake/ folders holding video files "
                             "(.mp4, .avi, .mov, .mkv, .webm)")


class VideoDataset(Dataset):
    """Items are ``(uint8 (T, H, W, C) clip, label)``; an unreadable video gives ``None`` (dropped by
    :func:`fakescope.data.dataset.collate_skip`). ``sources`` names each clip's training folder (per-source
    balancing); clips have no pseudo-fakes."""

    def __init__(self, samples: Sequence[Sample], preprocess: Preprocess, cache_dir: str | Path | None = None,
                 sources: Sequence[int] | None = None):
        self.samples = list(samples)
        self.sources = [0] * len(self.samples) if sources is None else list(sources)
        self.pseudo = [False] * len(self.samples)
        self.preparer = ClipPreparer(preprocess)
        self.cache = ArrayCache(cache_dir, preprocess.key()) if cache_dir else None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def __getitem__(self, index: int) -> tuple[np.ndarray, int] | None:
        sample = self.samples[index]
        try:
            if self.cache is not None:
                clip = self.cache.get(sample.path, lambda: self.preparer.to_array(sample.path))
            else:
                clip = self.preparer.to_array(sample.path)
        except VideoLoadError as err:
            log.warning("skipping %s", err)
            return None
        return clip, sample.label


def video_datasets(cfg: TrainConfig, pre: Preprocess) -> tuple[VideoDataset, VideoDataset]:
    """Training and validation clip datasets from ``cfg.data.path`` (each folder split on its own, seeded).

    Image augmentation (``cfg.augment``) is not applied to clips, and pseudo-fakes are made from images only."""
    if cfg.data.pseudo_fakes > 0:
        raise ValueError(f"config key data.pseudo_fakes: {cfg.data.pseudo_fakes!r} makes fakes from still images; "
                         "a clip model trains on videos (set it to 0)")
    d = cfg.data
    splits = [stratified_split(limit_per_class(discover_videos(p), d.max_per_class, d.seed), d.val_fraction, d.seed)
              for p in d.path]
    cache_dir = (d.cache_dir or default_cache_dir()) if d.cache else None
    train = VideoDataset([s for t, _ in splits for s in t], pre, cache_dir,
                         sources=[i for i, (t, _) in enumerate(splits) for _ in t])
    return train, VideoDataset([s for _, v in splits for s in v], pre, cache_dir)
