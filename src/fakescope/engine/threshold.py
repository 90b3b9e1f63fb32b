"""The threshold a detector ships with: the lowest that flags at most ``target_fpr`` of the validation reals of every
training folder, chosen by ``fakescope train`` on the model's scores (and, for a recipe with the copy-move check, on
its final scores: :mod:`fakescope.engine.copymove`)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fakescope.config import TrainConfig
from fakescope.evaluation.metrics import HELD_OUT_FOLDS, held_out_fpr, threshold_at_fpr

log = logging.getLogger(__name__)


def shipped_threshold(cfg: TrainConfig, labels, probs, paths: list[Path] | None = None) -> tuple[float, float | None]:
    """0.5, or with ``target_fpr`` the lowest threshold that flags at most that share of the validation reals of
    every folder of ``data.path`` (``paths``: each scored image's file, in the order of ``labels``). CASIA's
    authentic photos score higher than the faces' or COCO's; a pooled bound would let one set's reals take most of
    the false alarms. Second: the share of validation reals flagged by the threshold chosen the same way on the
    *other* reals (5-fold cross-fitted, :func:`held_out_fpr`), the rate to expect on unseen photos; ``None`` without
    ``target_fpr`` or with fewer than ``HELD_OUT_FOLDS`` reals."""
    if cfg.target_fpr is None:
        return 0.5, None
    folders = None
    if paths is not None and len(paths) == len(labels):
        roots = [Path(p).resolve() for p in cfg.data.path]
        folders = [next((i for i, r in enumerate(roots) if Path(f).resolve().is_relative_to(r)), -1) for f in paths]
    elif len(cfg.data.path) > 1:
        log.warning("the scored validation images' files are unknown or some could not be read: the %.0f%% "
                    "false-positive bound holds over all sets' reals together, not set by set", 100 * cfg.target_fpr)
    threshold = threshold_at_fpr(labels, probs, cfg.target_fpr, folders)
    if int(np.sum(np.asarray(labels) == 0)) < HELD_OUT_FOLDS:
        return threshold, None
    return threshold, held_out_fpr(labels, probs, cfg.target_fpr, folders)["fpr"]
