"""Describe a trained detector's features so that each result can say how familiar its image is
(:mod:`fakescope.familiarity`): the stage statistics of the training images (up to ``per_cell`` per folder and class,
without augmentation) are the neighbours, those of the validation images the reference."""
from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fakescope.checkpoint import read_meta, write_meta
from fakescope.data.discovery import Sample
from fakescope.data.preprocess import Preprocess
from fakescope.familiarity import FeatureModel, fit_feature_model
from fakescope.inference.detector import Detector, has_stage_features
from fakescope.inference.scan import prepared_batches
from fakescope.video.clips import clip_info

log = logging.getLogger(__name__)


def describable(model: object, preprocess: Preprocess) -> bool:
    """Whether a familiarity description fits the model: timm's stage statistics out, one image (or, for a patch
    detector, the mean over its patches) a row. A clip detector reads frame sequences, which it does not cover."""
    return has_stage_features(model) and not clip_info(preprocess)


def sample_features(detector: Detector, samples: Sequence[Sample], workers: int = 2,
                    batch_size: int = 32) -> np.ndarray:
    """Stage statistics (N, D) of the readable ``samples``, in the samples' order (the decode workers finish in their
    own), through the scan's decode pipeline."""
    feats, order = [], []
    for batch in prepared_batches([s.path for s in samples], detector.preparer, workers, batch_size):
        feats.append(detector.image_features([item.array for item in batch]))
        order.extend(item.index for item in batch)
    return np.concatenate(feats)[np.argsort(order, kind="stable")]


def capped(samples: Sequence[Sample], sources: Sequence[int], per_cell: int, seed: int = 0) -> list[Sample]:
    """At most ``per_cell`` samples of each (source, class), drawn with ``seed``."""
    cells: dict[tuple[int, int], list[Sample]] = {}
    for s, src in zip(samples, sources):
        cells.setdefault((src, s.label), []).append(s)
    rng = random.Random(seed)
    return [s for cell in cells.values() for s in rng.sample(cell, min(per_cell, len(cell)))]


def describe(detector: Detector, train: Sequence[Sample], val: Sequence[Sample], workers: int = 2,
             scores: bool = False) -> FeatureModel:
    """The :class:`FeatureModel` of ``detector`` from its training and validation images; with ``scores``, one that
    keeps their classes and makes a fake score (every image must be readable: its row pairs with its label)."""
    train_features, val_features = sample_features(detector, train, workers), sample_features(detector, val, workers)
    if not scores:
        return fit_feature_model(train_features, val_features)
    if (len(train_features), len(val_features)) != (len(train), len(val)):
        raise ValueError("a training or validation image could not be read; the nearest-images score needs them all")
    return fit_feature_model(train_features, val_features,
                             labels=(np.asarray([s.label for s in train]), np.asarray([s.label for s in val])))


def add_familiarity(checkpoint: str | Path, splits: Sequence[tuple[Sequence[Sample], Sequence[Sample]]],
                    per_cell: int = 200, workers: int = 2, detector: Detector | None = None,
                    scores: bool = False) -> FeatureModel:
    """Describe the checkpoint's features from its (train, validation) splits, one pair per training folder, and
    store the description in its metadata (``info["familiarity"]``); the weights and the header's other entries are
    left as they are (a shipped ONNX model's checksum then no longer matches: re-run ``fakescope export --ship``).
    ``scores``: the description also scores (a recipe's ``neighbour_score``; :mod:`fakescope.familiarity`), which
    changes the detector's probabilities: its threshold must then be chosen again on them
    (:func:`fakescope.engine.threshold.threshold_final_scores`).

    ``detector``: the checkpoint's weights already in memory (``fit`` passes the model it has just saved), so they
    are not read back from the file; without it the checkpoint is loaded on the CPU."""
    detector = detector or Detector.load(str(checkpoint), device="cpu")
    train = capped([s for t, _ in splits for s in t], [i for i, (t, _) in enumerate(splits) for _ in t], per_cell)
    model = describe(detector, train, [s for _, v in splits for s in v], workers, scores)
    meta = read_meta(checkpoint)
    meta.info["familiarity"] = model.to_dict()
    write_meta(checkpoint, meta)
    log.info("%s: familiarity from %d training and %d validation images", checkpoint, len(train),
             sum(len(v) for _, v in splits))
    return model
