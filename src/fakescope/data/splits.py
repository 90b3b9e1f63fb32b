"""Seeded, stratified, leak-free splits and class balancing.

Tampered images are made from authentic ones (CASIA's ``Sp_D_CNN_A_ani0049_ani0084_0266.jpg`` is built from
``Au_ani_0049.jpg`` and ``Au_ani_0084.jpg``). Putting a source in training and its splice in validation leaks the
scene, so files that share a scene id are kept on the same side of every split.
"""
from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from fakescope.data.discovery import Sample

_AUTHENTIC = re.compile(r"^Au_([a-z]{3})_(\d{4,5})$", re.IGNORECASE)
_SCENE = re.compile(r"(?<![a-z])([a-z]{3}\d{4,5})(?!\d)", re.IGNORECASE)


def scene_ids(name: str) -> list[str]:
    """Scene ids in a CASIA-style file stem (``Au_ani_0049`` -> ``ani0049``); [] for other naming."""
    m = _AUTHENTIC.match(name)
    if m:
        return [f"{m.group(1)}{m.group(2)}".lower()]
    if name.lower().startswith(("sp_", "tp_")):
        return [s.lower() for s in _SCENE.findall(name)]
    return []


def scene_groups(samples: Sequence[Sample]) -> np.ndarray:
    """A group number per sample: connected components of shared scene ids (a file without ids is alone)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    keys = []
    for i, s in enumerate(samples):
        ids = scene_ids(s.path.stem) or [f"#file{i}"]
        for other in ids[1:]:
            parent[find(other)] = find(ids[0])
        keys.append(ids[0])
    roots = [find(k) for k in keys]
    lookup = {r: n for n, r in enumerate(dict.fromkeys(roots))}
    return np.array([lookup[r] for r in roots])


def stratified_split(samples: Sequence[Sample], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split into train and validation keeping the real/fake ratio and scene groups; deterministic for a seed."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    samples = list(samples)
    labels = np.array([s.label for s in samples])
    groups = scene_groups(samples)
    n_splits = max(2, round(1.0 / val_fraction))
    counts = np.bincount(labels, minlength=2)
    if len(np.unique(groups)) < len(samples) and counts.min() >= n_splits:
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        train_idx, val_idx = next(folds.split(np.zeros(len(samples)), labels, groups))
        return [samples[i] for i in train_idx], [samples[i] for i in val_idx]
    stratify = labels if counts.min() >= 2 else None
    train, val = train_test_split(samples, test_size=val_fraction, random_state=seed, stratify=stratify)
    return list(train), list(val)


def split_folders(folders: Sequence[Sample] | Sequence[Sequence[Sample]], val_fraction: float = 0.2,
                  seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split each dataset on its own and concatenate, so every dataset keeps the same validation split."""
    train: list[Sample] = []
    val: list[Sample] = []
    for samples in folders:
        t, v = stratified_split(samples, val_fraction, seed)
        train += t
        val += v
    return train, val


def class_weights(labels: Sequence[int], num_classes: int = 2) -> np.ndarray:
    """Inverse-frequency weights normalised to mean 1 (missing classes get weight 0)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    return np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 0.0)


def sample_weights(labels: Sequence[int]) -> np.ndarray:
    """Per-sample weights for a WeightedRandomSampler that draws both classes equally often."""
    return class_weights(labels)[np.asarray(labels, dtype=np.int64)]


def source_sample_weights(sources: Sequence[int], labels: Sequence[int], pseudo: Sequence[bool],
                          pseudo_share: float) -> np.ndarray:
    """Per-sample weights for a sampler that draws every source (training folder) in proportion to the square root
    of its size, the classes of a source equally often, and ``pseudo_share`` of a source's fakes from its
    pseudo-fakes (all of them when it has no other fakes), so no one set's kind of image dominates training and a
    small set is not repeated until it is learnt by heart."""
    sources, labels, pseudo = np.asarray(sources), np.asarray(labels), np.asarray(pseudo, dtype=bool)
    weights = np.zeros(len(labels), dtype=np.float64)
    for src in np.unique(sources):
        cells = {"real": (sources == src) & (labels == 0), "fake": (sources == src) & (labels == 1) & ~pseudo,
                 "pseudo": (sources == src) & pseudo}
        share = {"real": 0.5, "fake": 0.5 * (1 - pseudo_share), "pseudo": 0.5 * pseudo_share}
        if not cells["pseudo"].any():
            share["fake"] += share.pop("pseudo")
        elif not cells["fake"].any():
            share["pseudo"] += share.pop("fake")
        present = {k: v for k, v in share.items() if cells[k].any()}
        total = sum(present.values())
        size = np.sqrt(((sources == src) & ~pseudo).sum())
        for k, v in present.items():
            weights[cells[k]] = size * v / total / cells[k].sum()
    return weights / weights.mean()


def limit_per_class(samples: list[Sample], n: int | None, seed: int) -> list[Sample]:
    """At most ``n`` samples of each class, drawn with ``seed`` (all of them when ``n`` is None)."""
    if n is None:
        return samples
    rng = random.Random(seed)
    out = []
    for label in (0, 1):
        of_class = [s for s in samples if s.label == label]
        rng.shuffle(of_class)
        out.extend(of_class[:n])
    return out
