"""A recipe with ``copy_move: true`` ships the threshold and validation metrics of its final scores: the model's
probabilities with the copy-move evidence added (:mod:`fakescope.forensics.copymove`), as every scan gives them,
rather than the model's alone, so that "at most ``target_fpr`` of each set's validation reals flagged" holds for
what users see."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fakescope.checkpoint import read_meta, write_meta
from fakescope.config import TrainConfig
from fakescope.engine.threshold import shipped_threshold
from fakescope.evaluation.metrics import compute_metrics
from fakescope.inference.detector import Detector
from fakescope.inference.scan import scan

log = logging.getLogger(__name__)


def threshold_final_scores(checkpoint: str | Path, cfg: TrainConfig, detector: Detector | None = None) -> float:
    """Score the validation splits of ``cfg`` (as ``fakescope train`` made them) with the checkpoint's copy-move
    check, choose the threshold by ``cfg``'s rule on those scores, and store it and the validation metrics at it in
    the checkpoint; returns the threshold. ``detector``: the checkpoint's weights already in memory."""
    from fakescope.engine.loaders import folder_splits

    detector = detector or Detector.load(str(checkpoint), device="cpu")
    meta = read_meta(checkpoint)
    detector.meta = meta
    if not detector.checks_copy_moves:
        raise ValueError(f"{checkpoint}: does not check for copy-moves (info['copy_move'], a squashed RGB input)")
    labels = {str(s.path): s.label for _, val in folder_splits(cfg) for s in val}
    scored = {r.path: r.fake_probability for r in scan(list(labels), detector, workers=cfg.data.workers)
              if r.error is None}
    paths = [p for p in labels if p in scored]
    y, p = np.asarray([labels[k] for k in paths]), np.asarray([scored[k] for k in paths])
    threshold, held_out = shipped_threshold(cfg, y, p, [Path(k) for k in paths])
    metrics = {**compute_metrics(y, p, threshold), "fpr_held_out": held_out, "temperature": meta.temperature,
               "ece_uncalibrated": meta.info.get("metrics", {}).get("ece_uncalibrated"),
               "model_threshold": meta.threshold}
    meta.threshold = threshold
    meta.info["metrics"] = metrics
    write_meta(checkpoint, meta)
    log.info("%s: threshold %.3f on the scores with copy-move evidence (the model's alone: %.3f)", checkpoint,
             threshold, metrics["model_threshold"])
    return threshold
