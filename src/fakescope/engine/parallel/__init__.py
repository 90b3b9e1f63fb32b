"""Parallel training strategies on torch.distributed, chosen by ``TrainConfig.strategy``.

- ``ddp``: synchronous data parallelism (``DistributedDataParallel``), :mod:`.ddp`
- ``localsgd``: replicas averaged every k steps (post-local-SGD hook + ``PeriodicModelAverager``), :mod:`.localsgd`
- ``pipeline``: the model cut into stages across ranks (``torch.distributed.pipelining``), :mod:`.pipeline`
- ``tensor``: the dense head sharded column- then row-wise (``torch.distributed.tensor.parallel``), :mod:`.tensor`

All run under ``torchrun`` (or ``fakescope train --nproc N``); ``fit`` talks to them through :class:`Strategy`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import record

from fakescope.config import TrainConfig
from fakescope.engine.distributed import DistInfo, launch, shutdown_distributed
from fakescope.engine.parallel.base import Strategy
from fakescope.engine.parallel.ddp import DDPStrategy
from fakescope.engine.parallel.localsgd import LocalSGDStrategy
from fakescope.engine.parallel.pipeline import SCHEDULES, PipelineStrategy
from fakescope.engine.parallel.tensor import TensorStrategy

if TYPE_CHECKING:
    from fakescope.engine.train import FitResult

log = logging.getLogger(__name__)

STRATEGIES: dict[str, type[Strategy]] = {"none": Strategy, "ddp": DDPStrategy, "localsgd": LocalSGDStrategy,
                                         "pipeline": PipelineStrategy, "tensor": TensorStrategy}

__all__ = ["STRATEGIES", "Strategy", "build_strategy", "check_config", "fit_worker", "launch_fit", "prepare_config"]


def check_config(cfg: TrainConfig, world_size: int) -> None:
    """Refuse, before any work, the combinations a strategy cannot run."""
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {cfg.strategy!r}; use one of {', '.join(STRATEGIES)}")
    cls = STRATEGIES[cfg.strategy]
    used = {"ema": cfg.ema, "amp": cfg.amp, "resume": cfg.resume, "grad_clip": cfg.optim.grad_clip,
            "mask_loss": cfg.mask_loss}
    unsupported = sorted(k for k, v in used.items() if v and k not in cls.supports)
    if unsupported:
        raise ValueError(f"strategy {cfg.strategy!r} does not support {', '.join(unsupported)}")
    if cls.data_parallel and cfg.batch_size % world_size:
        raise ValueError(f"batch_size {cfg.batch_size} (the global batch) is not divisible by {world_size} ranks")
    if cfg.strategy == "pipeline" and cfg.parallel.schedule not in SCHEDULES:
        raise ValueError(f"unknown pipeline schedule {cfg.parallel.schedule!r}; use {', '.join(SCHEDULES)}")


def prepare_config(cfg: TrainConfig) -> TrainConfig:
    """Data-parallel ranks draw from a ``DistributedSampler``, which cannot also re-weight classes: the
    ``sampler`` balance becomes a class-weighted loss (recorded in the saved config)."""
    if STRATEGIES[cfg.strategy].data_parallel and cfg.data.balance == "sampler":
        log.info("%s: class balance by weighted loss instead of a weighted sampler", cfg.strategy)
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, balance="weights"))
    return cfg


def build_strategy(cfg: TrainConfig, model: nn.Module, device: torch.device, info: DistInfo,
                   example: torch.Tensor) -> Strategy:
    """Wrap ``model`` for ``cfg.strategy``; ``example`` (one input, NCHW) lets the pipeline trace the model."""
    cls = STRATEGIES[cfg.strategy]
    if cls is PipelineStrategy:
        return PipelineStrategy(model, cfg, device, info, example)
    return cls(model, cfg, device, info)


def launch_fit(cfg: TrainConfig, nproc: int) -> FitResult:
    """``fit(cfg)`` in ``nproc`` local processes (what ``torchrun --nproc-per-node N`` does); rank 0's result."""
    if cfg.strategy == "none":
        raise ValueError("--nproc needs a parallel --strategy (ddp, localsgd, pipeline or tensor)")
    check_config(cfg, nproc)
    return launch(fit_worker, nproc, cfg)[0]


@record
def fit_worker(cfg: TrainConfig) -> FitResult:
    """One process of :func:`launch_fit`: a thread per core share, rank 0 logs the epochs, then leave the group."""
    from fakescope.engine.train import fit

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
