"""Synchronous data parallelism: ``DistributedDataParallel`` all-reduces (averages) gradients in every backward.

Each rank trains on its own share of the data (``DistributedSampler``, the global batch split across ranks), so
after every step all replicas hold the same weights. On CUDA, BatchNorm becomes ``SyncBatchNorm``; on CPU it
cannot (``ValueError: SyncBatchNorm expected input tensor to be on GPU or XPU or privateuseone``), so each
replica normalises with its own share of the batch and DDP broadcasts rank 0's running statistics.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from fakescope.config import TrainConfig
from fakescope.distributed import DistInfo
from fakescope.engine.distributed import reduce_epoch_stats
from fakescope.engine.loops import EpochOptions
from fakescope.engine.parallel.base import ALL_FEATURES, Strategy, tensor_bytes

log = logging.getLogger(__name__)


@dataclass
class CommCounter:
    """State of :func:`counting_allreduce_hook`: gradient bytes all-reduced and the number of buckets."""

    process_group: dist.ProcessGroup | None = None
    bytes: int = 0
    buckets: int = 0


def counting_allreduce_hook(state: CommCounter, bucket):
    """DDP's default all-reduce of a ``dist.GradBucket``, counting what it sends (the measured side of the
    benchmark's byte counts). Unannotated: DDP checks the annotations and this module's are strings."""
    buffer = bucket.buffer()
    state.bytes += buffer.numel() * buffer.element_size()
    state.buckets += 1
    return default_hooks.allreduce_hook(state.process_group, bucket)


class DDPStrategy(Strategy):
    name = "ddp"
    data_parallel = True
    supports = ALL_FEATURES

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device, info: DistInfo):
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        super().__init__(model, cfg, device, info)
        self.train_module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.comm = CommCounter()
        self.steps = 0
        self._register_hook()

    def _register_hook(self) -> None:
        self.train_module.register_comm_hook(self.comm, counting_allreduce_hook)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_post_hook(self._count_step)

    def _count_step(self, *_: Any) -> None:
        self.steps += 1

    def train_one_epoch(self, loader: Iterable, opts: EpochOptions, total: int = 0) -> dict[str, float]:
        stats = super().train_one_epoch(loader, opts, total)
        return reduce_epoch_stats(stats)

    def eval_model(self) -> nn.Module:
        """The model with rank 0's BatchNorm statistics on every rank: DDP sends them only at the next forward, so
        after an epoch each rank still holds the statistics of its own last half-batch, and the ranks' shares of
        the validation set would be scored by models that differ from the one rank 0 saves."""
        for buffer in self.model.buffers():
            dist.broadcast(buffer, 0)
        return self.model

    def bytes_per_step(self) -> dict[str, float]:
        grads = tensor_bytes(p for p in self.model.parameters() if p.requires_grad)
        out = {"gradient all-reduce (model)": float(grads)}
        if self.steps:
            out["gradient all-reduce (measured by comm hook)"] = self.comm.bytes / self.steps
        return out
