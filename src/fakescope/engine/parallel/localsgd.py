"""Local SGD: replicas step on their own data independently and are averaged every k steps.

The asynchronous-style comparison to DDP, built from torch.distributed's own pieces: DDP with the post-local-SGD
communication hook (synchronous gradient all-reduce for ``localsgd_warmup`` steps, then none) and
``PeriodicModelAverager``, which all-reduces the parameters after every k-th optimizer step. Between averaging
steps the replicas drift apart; communication drops from the gradients every step to the parameters every k steps.
At the end of each epoch the replicas (parameters and BatchNorm statistics) are averaged once more, so the model
that is validated and saved is their consensus.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.post_localSGD_hook import (
    PostLocalSGDState,
    post_localSGD_hook,
)
from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

from fakescope.config import TrainConfig
from fakescope.distributed import DistInfo
from fakescope.engine.distributed import average_tensors
from fakescope.engine.parallel.base import tensor_bytes
from fakescope.engine.parallel.ddp import DDPStrategy

log = logging.getLogger(__name__)


class LocalSGDStrategy(DDPStrategy):
    name = "localsgd"
    supports = frozenset({"amp", "grad_clip", "mask_loss", "source_adversary"})

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device, info: DistInfo):
        self.period = cfg.parallel.localsgd_period
        self.warmup = cfg.parallel.localsgd_warmup
        super().__init__(model, cfg, device, info)
        self.averager = PeriodicModelAverager(period=self.period, warmup_steps=self.warmup)

    def _register_hook(self) -> None:
        state = PostLocalSGDState(process_group=None, subgroup=None, start_localSGD_iter=self.warmup,
                                  post_local_gradient_allreduce=False)
        self.train_module.register_comm_hook(state, post_localSGD_hook)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        super().attach(optimizer)
        optimizer.register_step_post_hook(self._average)

    def _average(self, *_: Any) -> None:
        self.averager.average_parameters(self.model.parameters())

    def eval_model(self) -> nn.Module:
        average_tensors(list(self.model.parameters()) + list(self.model.buffers()))
        return self.model

    def bytes_per_step(self) -> dict[str, float]:
        """Steady state after the warm-up: the parameters once every k steps (warm-up steps send gradients)."""
        params = tensor_bytes(p for p in self.model.parameters() if p.requires_grad)
        return {f"parameter averaging every {self.period} steps (model)": params / self.period}
