"""Parallel training strategies on torch.distributed, chosen by ``TrainConfig.strategy``.

- ``ddp``: synchronous data parallelism (``DistributedDataParallel``), :mod:`.ddp`
- ``localsgd``: replicas averaged every k steps (post-local-SGD hook + ``PeriodicModelAverager``), :mod:`.localsgd`
- ``pipeline``: the model cut into stages across ranks (``torch.distributed.pipelining``), :mod:`.pipeline`
- ``tensor``: the dense head sharded column- then row-wise (``torch.distributed.tensor.parallel``), :mod:`.tensor`

All run under ``torchrun`` (or ``fakescope train --nproc N``, :mod:`fakescope.engine.launch`); ``fit`` talks to them
through :class:`Strategy`.
"""
from __future__ import annotations

import torch
from torch import nn

from fakescope.config import TrainConfig, validate
from fakescope.distributed import DistInfo
from fakescope.engine.parallel.base import Strategy
from fakescope.engine.parallel.ddp import DDPStrategy
from fakescope.engine.parallel.localsgd import LocalSGDStrategy
from fakescope.engine.parallel.pipeline import PipelineStrategy
from fakescope.engine.parallel.tensor import TensorStrategy

STRATEGIES: dict[str, type[Strategy]] = {"none": Strategy, "ddp": DDPStrategy, "localsgd": LocalSGDStrategy,
                                         "pipeline": PipelineStrategy, "tensor": TensorStrategy}

__all__ = ["STRATEGIES", "Strategy", "build_strategy", "check_config"]


def check_config(cfg: TrainConfig, world_size: int) -> None:
    """Refuse, before any work, unknown choices and the combinations a strategy cannot run."""
    validate(cfg)
    cls = STRATEGIES[cfg.strategy]
    used = {"ema": cfg.ema, "amp": cfg.amp, "resume": cfg.resume, "grad_clip": cfg.optim.grad_clip,
            "mask_loss": cfg.mask_loss, "source_adversary": cfg.source_adversary}
    unsupported = sorted(k for k, v in used.items() if v and k not in cls.supports)
    if unsupported:
        raise ValueError(f"strategy {cfg.strategy!r} does not support {', '.join(unsupported)}")
    if cls.data_parallel and cfg.batch_size % world_size:
        raise ValueError(f"batch_size {cfg.batch_size} (the global batch) is not divisible by {world_size} ranks")


def build_strategy(cfg: TrainConfig, model: nn.Module, device: torch.device, info: DistInfo,
                   example: torch.Tensor) -> Strategy:
    """Wrap ``model`` for ``cfg.strategy``; ``example`` (one input, NCHW) lets the pipeline trace the model."""
    cls = STRATEGIES[cfg.strategy]
    if cls is PipelineStrategy:
        return PipelineStrategy(model, cfg, device, info, example)
    return cls(model, cfg, device, info)
