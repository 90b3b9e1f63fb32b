"""Tensor parallelism: the dense head's two layers sharded across ranks (Megatron-style, column then row).

For the ELA-CNN: Dense(57600 -> 128) is split by output columns (``ColwiseParallel``: each rank holds 128/N of
the units and computes them from the whole input), and Dense(128 -> 2) by input rows (``RowwiseParallel``: each
rank multiplies its share of the hidden units, the partial logits are all-reduced). The ReLU and Dropout in
between act on the sharded hidden units, so nothing is communicated there. ``parallelize_module`` does the
sharding with DTensors on a one-dimensional ``DeviceMesh`` (``cpu`` with gloo, ``cuda`` with nccl).

Every rank gets the same batch (rank 0 reads it and broadcasts it) and runs the convolutional features itself: only
the head's parameters, gradients and optimizer state are divided. The gradient reaching the features is
all-reduced by the column-parallel layer's backward, so the replicated layers stay identical on every rank.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    RowwiseParallel,
    parallelize_module,
)

from fakescope.config import TrainConfig
from fakescope.distributed import DistInfo
from fakescope.engine.distributed import broadcast_batches
from fakescope.engine.loops import EpochOptions, train_one_epoch
from fakescope.engine.parallel.base import Strategy

log = logging.getLogger(__name__)


def dense_pair(model: nn.Module) -> tuple[str, str]:
    """The model's last two ``nn.Linear`` layers: the hidden dense layer and the classifier."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if len(linears) < 2:
        raise ValueError(f"tensor parallelism shards a two-layer dense head; {type(model).__name__} has "
                         f"{len(linears)} Linear layer(s) (use ela-cnn, or the ddp/localsgd/pipeline strategies)")
    return linears[-2], linears[-1]


class TensorStrategy(Strategy):
    name = "tensor"
    #: Not grad_clip: ``clip_grad_norm_`` over a partly sharded model fails on CPU ("aten._foreach_norm.Scalar got
    #: mixed torch.Tensor and DTensor, need to convert all torch.Tensor to DTensor before calling distributed
    #: operators!").
    supports = frozenset({"amp"})

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device, info: DistInfo):
        super().__init__(copy.deepcopy(model), cfg, device, info)  # self.model: plain copy to validate and save
        first, second = dense_pair(model)
        mesh = init_device_mesh(device.type, (info.world_size,))
        plan = {first: ColwiseParallel(use_local_output=False), second: RowwiseParallel()}
        self.train_module = parallelize_module(model, mesh, plan)
        modules = dict(model.named_modules())
        self.hidden_in, self.classes = modules[first].in_features, modules[second].out_features
        self.input_shape: tuple[int, ...] = ()
        log.info("tensor parallel: %s column-wise, %s row-wise over %d ranks", first, second, info.world_size)

    def train_one_epoch(self, loader: Iterable, opts: EpochOptions, total: int = 0) -> dict[str, float]:
        """The single-process loop over batches that rank 0 reads and broadcasts (all ranks see the same data)."""
        batches = self._remember_shape(broadcast_batches(loader, total, True, self.device))
        return train_one_epoch(self.train_module, batches, self.device, opts, total)

    def _remember_shape(self, batches: Iterable) -> Iterable:
        for arrays, labels in batches:
            self.input_shape = tuple(arrays.shape)
            yield arrays, labels

    def eval_model(self) -> nn.Module:
        state = {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in self.train_module.state_dict().items()}
        self.model.load_state_dict(state)
        return self.model

    def bytes_per_step(self) -> dict[str, float]:
        if not self.input_shape:
            return {}
        batch = self.input_shape[0]
        return {"input batch broadcast (uint8)": float(torch.Size(self.input_shape).numel()),
                "logits all-reduce (forward)": float(batch * self.classes * 4),
                "hidden-input gradient all-reduce (backward)": float(batch * self.hidden_in * 4),
                "labels broadcast": float(batch * 8)}
