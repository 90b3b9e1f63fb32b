"""The threshold a detector ships with: the lowest that flags at most ``target_fpr`` of the validation reals of every
training folder, chosen by ``fakescope train`` on the model's scores, and again on its final scores when they are not
the network's alone (:func:`threshold_final_scores`), so that "at most ``target_fpr`` of each set's validation reals
flagged" holds for what users see."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fakescope.config import TrainConfig
from fakescope.evaluation.metrics import HELD_OUT_FOLDS, compute_metrics, held_out_fpr, threshold_at_fpr

if TYPE_CHECKING:
    from fakescope.inference.detector import Detector

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


def threshold_final_scores(checkpoint: str | Path, cfg: TrainConfig, detector: Detector | None = None,
                           batch_size: int = 32) -> float:
    """Score the validation splits of ``cfg`` (as ``fakescope train`` made them) as a scan scores them, choose the
    threshold by ``cfg``'s rule on those final scores, and store it and the validation metrics at it in the
    checkpoint; returns the threshold. Also stored: ``model_threshold``, chosen the same way on the scores without
    the copy-move check (what ``--no-copy-move`` uses). ``detector``: the checkpoint's weights already in memory.

    For a detector whose scores are not its network's alone: the copy-move evidence added (a recipe's
    ``copy_move``) or the nearest training images' probability averaged in (``neighbour_score``)."""
    from fakescope.checkpoint import read_meta, write_meta
    from fakescope.engine.loaders import folder_splits
    from fakescope.inference.detector import Detector
    from fakescope.inference.scan import prepared_batches

    detector = detector or Detector.load(str(checkpoint), device="cpu")
    meta = read_meta(checkpoint)
    detector.meta = meta
    detector.__dict__.pop("_feature_model", None)  # read the description just written, not a cached one
    labels = {str(s.path): s.label for _, val in folder_splits(cfg) for s in val}
    paths, model, final = [], [], []
    for batch in prepared_batches(list(labels), detector.preparer, cfg.data.workers, batch_size):
        arrays = [item.array for item in batch]
        scores = detector.model_scores(arrays)
        model.append(scores.probabilities)
        final.append(detector.with_copy_moves(arrays, scores).probabilities)
        paths.extend(item.path for item in batch)
    y, p = np.asarray([labels[k] for k in paths]), np.concatenate(final)
    threshold, held_out = shipped_threshold(cfg, y, p, [Path(k) for k in paths])
    metrics = {**compute_metrics(y, p, threshold), "fpr_held_out": held_out, "temperature": meta.temperature,
               "ece_uncalibrated": meta.info.get("metrics", {}).get("ece_uncalibrated"),
               "model_threshold": shipped_threshold(cfg, y, np.concatenate(model), [Path(k) for k in paths])[0]}
    log.info("%s: threshold %.3f on its final scores (without the copy-move check: %.3f; the network's alone: %.3f)",
             checkpoint, threshold, metrics["model_threshold"], meta.threshold)
    meta.threshold = threshold
    meta.info["metrics"] = metrics
    write_meta(checkpoint, meta)
    return threshold
