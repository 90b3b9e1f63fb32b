"""What training reads: each folder split as ``fit`` splits it, the image (or clip) datasets, and their loaders,
seeded per epoch so that a resumed run sees the epochs an uninterrupted one would."""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, WeightedRandomSampler

from fakescope.config import TrainConfig
from fakescope.data.augment import build_augment
from fakescope.data.cache import default_cache_dir
from fakescope.data.dataset import ImageDataset, collate_skip
from fakescope.data.discovery import Sample, discover_samples
from fakescope.data.masks import PixelTarget, pixel_targets
from fakescope.data.preprocess import Preprocess
from fakescope.data.splits import limit_per_class, sample_weights, source_sample_weights, stratified_split
from fakescope.distributed import DistInfo
from fakescope.video.clips import clip_spec

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def folder_splits(cfg: TrainConfig) -> list[tuple[list[Sample], list[Sample]]]:
    """(train, validation) samples of each folder of ``cfg.data.path``, exactly as ``fit`` splits them."""
    d = cfg.data
    return [stratified_split(limit_per_class(discover_samples(p), d.max_per_class, d.seed), d.val_fraction, d.seed)
            for p in d.path]


def image_datasets(cfg: TrainConfig, pre: Preprocess) -> tuple[ImageDataset, ImageDataset]:
    """Training and validation datasets; the training one also holds a pseudo-fake entry per training real when
    ``data.pseudo_fakes`` is on (``train_ds.sources`` names each entry's folder, for per-source balancing)."""
    splits = folder_splits(cfg)
    train_s, val_s = [s for t, _ in splits for s in t], [s for _, v in splits for s in v]
    sources = [i for i, (t, _) in enumerate(splits) for _ in t]
    pseudo = [False] * len(train_s)
    if cfg.data.pseudo_fakes > 0:
        reals = [(s, i) for s, i in zip(train_s, sources) if s.label == 0]
        train_s, sources, pseudo = (train_s + [s for s, _ in reals], sources + [i for _, i in reals],
                                    pseudo + [True] * len(reals))
    cache_dir = (cfg.data.cache_dir or default_cache_dir()) if cfg.data.cache else None
    targets = _train_pixel_targets(cfg, splits, pseudo) if cfg.mask_loss else None
    aug = cfg.augment
    train_ds = ImageDataset(train_s, pre, build_augment(aug), cache_dir, random_crop=True,
                            pixel_targets=targets, pseudo=pseudo, pseudo_kinds=tuple(cfg.data.pseudo_kinds),
                            sources=sources, with_source=cfg.source_adversary > 0,
                            patch_shuffle=(aug.patch_shuffle_p if aug.enabled else 0.0, aug.patch_shuffle_size))
    return train_ds, ImageDataset(val_s, pre, None, cache_dir)


def _train_pixel_targets(cfg: TrainConfig, splits: list[tuple[list[Sample], list[Sample]]],
                         pseudo: list[bool]) -> list[PixelTarget]:
    """The training samples' pixel targets, set by set (pseudo-fakes bring their own masks); a mask loss without
    any set that has masks, and without pseudo-fakes, is an error."""
    targets: list[PixelTarget] = []
    for root, (train, _) in zip(cfg.data.path, splits):
        of_set = pixel_targets(train, root)
        n_masks = sum(isinstance(t, Path) for t in of_set)
        log.info("%s: %d training fakes with masks%s", root, n_masks, "" if n_masks else " (image labels only)")
        targets += of_set
    if not any(isinstance(t, Path) for t in targets) and not any(pseudo):
        raise ValueError("mask_loss needs a training set with tampering masks (a masks/ folder beside real/ and "
                         f"fake/) or pseudo-fakes; none found in {', '.join(map(str, cfg.data.path))}")
    return targets + [None] * (len(pseudo) - len(targets))


def build_loaders(cfg: TrainConfig, pre: Preprocess,
                  shard: DistInfo | None = None) -> tuple[DataLoader, DataLoader, dict[str, Any]]:
    """Training and validation loaders; with ``shard`` (data parallelism) each rank draws its own share of every
    epoch, in batches of ``batch_size / world_size`` (one global batch per step)."""
    if clip_spec(pre) is not None:  # a video model (Preprocess.extra["clip"]): clips from real/ + fake/ videos
        from fakescope.video.dataset import video_datasets

        train_ds, val_ds = video_datasets(cfg, pre)
    else:
        train_ds, val_ds = image_datasets(cfg, pre)
    sampler = _train_sampler(cfg, train_ds, shard)
    common = dict(batch_size=cfg.batch_size, num_workers=cfg.data.workers, collate_fn=collate_skip,
                  persistent_workers=cfg.data.workers > 0)
    batch, n_train = cfg.batch_size, len(train_ds)
    if shard is not None:
        batch, n_train = cfg.batch_size // shard.world_size, len(sampler)
    train_dl = DataLoader(train_ds, sampler=sampler, shuffle=sampler is None, drop_last=n_train > batch,
                          generator=torch.Generator().manual_seed(cfg.seed), **{**common, "batch_size": batch})
    val_dl = DataLoader(val_ds, shuffle=False, **common)
    counts = {
        "train": {"real": train_ds.labels.count(0), "fake": train_ds.labels.count(1),
                  **({"pseudo_fake": n} if (n := sum(getattr(train_ds, "pseudo", []))) else {})},
        "val": {"real": val_ds.labels.count(0), "fake": val_ds.labels.count(1)},
    }
    return train_dl, val_dl, counts


class DistributedWeightedSampler(WeightedRandomSampler):
    """A data-parallel rank's share of the single-process weighted draw: every rank draws the whole epoch with the
    same seed (:func:`seed_epoch` seeds ``generator`` alike on all ranks) and keeps every ``world_size``-th item
    from its rank on, so the ranks together train on exactly the sample one process would (the draw's first
    items repeated, as ``DistributedSampler`` pads, to give every rank as many)."""

    def __init__(self, weights: torch.Tensor, num_samples: int, shard: DistInfo, generator: torch.Generator):
        super().__init__(weights, num_samples, replacement=True, generator=generator)
        self.rank, self.world_size = shard.rank, shard.world_size

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size)

    def __iter__(self):
        draw = list(super().__iter__())
        draw += draw[:len(self) * self.world_size - len(draw)]
        return iter(draw[self.rank::self.world_size])


def _train_sampler(cfg: TrainConfig, train_ds, shard: DistInfo | None) -> Sampler | None:
    """The training draw: weighted (``sampler``, ``source``; a pseudo-fake entry is drawn instead of, not besides,
    the real fakes, so an epoch is as long as the non-pseudo entries), else a shuffle (``DistributedSampler``'s
    on data-parallel ranks)."""
    if cfg.data.balance in ("sampler", "source"):
        weights = torch.as_tensor(_draw_weights(cfg, train_ds))
        n_draws = len(train_ds) - sum(getattr(train_ds, "pseudo", []))
        g = torch.Generator().manual_seed(cfg.seed)
        if shard is None:
            return WeightedRandomSampler(weights, n_draws, generator=g)
        return DistributedWeightedSampler(weights, n_draws, shard, g)
    if shard is not None:
        return DistributedSampler(train_ds, shard.world_size, shard.rank, shuffle=True, seed=cfg.seed)
    return None


def _draw_weights(cfg: TrainConfig, train_ds) -> np.ndarray:
    """The sampler's per-item weights: by class (``sampler``), or by folder and class (``source``)."""
    if cfg.data.balance == "source":
        return source_sample_weights(train_ds.sources, train_ds.labels, train_ds.pseudo, cfg.data.pseudo_fakes)
    return sample_weights(train_ds.labels)


def seed_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Seed epoch ``epoch``'s draw (order, balanced sampling, worker augmentation seeds) from (seed, epoch) alone,
    so a resumed run sees the epochs an uninterrupted one would, not epoch 1's order again."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)  # a new shuffle, the same on every rank
    elif getattr(loader.sampler, "generator", None) is not None:
        loader.sampler.generator.manual_seed(seed * 100_003 + epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 100_003 + epoch)
