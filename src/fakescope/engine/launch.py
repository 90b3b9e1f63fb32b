"""``fakescope train --nproc N``: ``fit`` in N local processes, as ``torchrun --nproc-per-node N`` would run it."""
from __future__ import annotations

import logging
import os

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from fakescope.config import TrainConfig
from fakescope.distributed import launch, shutdown_distributed
from fakescope.engine.parallel import check_config
from fakescope.engine.train import FitResult, fit

log = logging.getLogger(__name__)


def launch_fit(cfg: TrainConfig, nproc: int) -> FitResult:
    """``fit(cfg)`` in ``nproc`` local processes (what ``torchrun --nproc-per-node N`` does); rank 0's result."""
    if cfg.strategy == "none":
        raise ValueError("--nproc needs a parallel --strategy (ddp, localsgd, pipeline or tensor)")
    check_config(cfg, nproc)
    return launch(fit_worker, nproc, cfg)[0]


@record
def fit_worker(cfg: TrainConfig) -> FitResult:
    """One process of :func:`launch_fit`: a thread per core share, rank 0 logs the epochs, then leave the group."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    main = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(level=logging.INFO if main else logging.WARNING, format="%(message)s")
    try:
        return fit(cfg, on_epoch=_log_epoch)
    finally:
        shutdown_distributed()


def _log_epoch(row: dict[str, float]) -> None:
    log.info("epoch %d  train loss %.4f acc %.3f  val loss %.4f acc %.3f  %.0f img/s  %.0fs", row["epoch"],
             row["train_loss"], row["train_accuracy"], row["val_loss"], row["val_accuracy"],
             row["train_images_per_s"], row["seconds"])
