"""``scratch-cnn``: the from-scratch network as a registered ``nn.Module``, so every fakescope tool can use it.

Each scratch layer sits in a :class:`ScratchLayer` module that owns the layer's arrays as ``nn.Parameter`` and
buffers (named as in ``torch.nn``: ``weight``, ``bias``, ``running_mean`` ...) and runs it through
:class:`_LayerFunction`, a ``torch.autograd.Function`` whose forward and backward are the layer's own NumPy/CuPy
code on zero-copy views of the tensors. The optimiser, training loop, checkpointing, Detector, scan, evaluate and
Grad-CAM hooks then work unchanged, while every number is computed by the scratch code (torch only stores
tensors and chains the hand-written backward passes). See ``fakescope.models.scratch`` for the design.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from fakescope.data.preprocess import Preprocess
from fakescope.models._registry import register_detector
from fakescope.models.scratch.backend import from_torch, to_torch
from fakescope.models.scratch.layers import Dropout, Layer
from fakescope.models.scratch.network import ela_cnn_layers, ela_cnn_side

log = logging.getLogger(__name__)


class _LayerFunction(torch.autograd.Function):
    """Runs one scratch layer; its backward is the layer's hand-written backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: Layer, training: bool, buffers: dict, *params: torch.Tensor):
        arrays = {**buffers, **{n: from_torch(t) for n, t in zip(layer.param_names, params)}}
        y, cache = layer.forward(from_torch(x), arrays, training)
        ctx.layer, ctx.cache, ctx.arrays = layer, cache, arrays
        return to_torch(y)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor):
        layer = ctx.layer
        dx, grads = layer.backward(from_torch(dy.contiguous()), ctx.cache, ctx.arrays, need_dx=ctx.needs_input_grad[0])
        ctx.cache = ctx.arrays = None
        param_grads = [to_torch(grads[n]) if ctx.needs_input_grad[4 + i] else None
                       for i, n in enumerate(layer.param_names)]
        return (None if dx is None else to_torch(dx)), None, None, None, *param_grads


class ScratchLayer(nn.Module):
    """Holds one scratch layer's parameters and buffers as torch tensors and runs the layer on them."""

    def __init__(self, layer: Layer, rng: np.random.Generator | None = None):
        super().__init__()
        self.layer = layer
        init = layer.init(rng or np.random.default_rng(0))
        for name in layer.param_names:
            self.register_parameter(name, nn.Parameter(_tensor(init[name])))
        for name in layer.buffer_names:
            self.register_buffer(name, _tensor(init[name]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in (torch.float32, torch.float64):  # autocast's bf16/fp16: NumPy has no bfloat16
            x = x.float()
        buffers = {n: from_torch(getattr(self, n)) for n in self.layer.buffer_names}  # views: updated in place
        params = [getattr(self, n) for n in self.layer.param_names]
        return _LayerFunction.apply(x, self.layer, self.training, buffers, *params)

    def extra_repr(self) -> str:
        return repr(self.layer)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor on the current default device; on the meta device (parameter counting) no data is copied."""
    t = torch.empty(array.shape, dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype)
    if t.device.type != "meta":
        t.copy_(torch.from_numpy(array))
    return t


class ScratchCNN(nn.Module):
    """The ELA-CNN's shape on scratch layers; same state-dict keys and shapes as :class:`ELACNN`."""

    def __init__(self, in_chans: int = 3, size: int = 128, num_classes: int = 2, dropout: float = 0.5,
                 seed: int | None = None):
        super().__init__()
        if seed is None:  # follow torch's seed, so fit()'s seed_everything makes runs repeatable
            seed = int(torch.randint(0, 2**31 - 1, (1,), device="cpu").item())
        rng = np.random.default_rng(seed)
        sections = ela_cnn_layers(in_chans, size, num_classes, dropout, seed=seed + 1)
        self.features = nn.Sequential(*[ScratchLayer(layer, rng) for layer in sections["features"]])
        self.head = nn.Sequential(*[ScratchLayer(layer, rng) for layer in sections["head"]])
        self.num_features = 64 * ela_cnn_side(size) ** 2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits, or the 128-d activations feeding the classifier with ``pre_logits=True`` (timm's contract)."""
        return self.head[:-1](x) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head[-1]

    def dropout_layers(self) -> list[Dropout]:
        return [m.layer for m in self.modules() if isinstance(m, ScratchLayer) and isinstance(m.layer, Dropout)]


@register_detector(
    "scratch-cnn",
    preprocess=Preprocess(input_mode="ela", size=128, ela_quality=90),
    target_layer="features.6",
    description="The ELA-CNN written from scratch in NumPy/CuPy (im2col convolutions, hand-written backward)",
)
def scratch_cnn(in_chans: int = 3, pretrained: bool | str = False, size: int = 128, **kwargs) -> ScratchCNN:
    if pretrained:
        log.info("scratch-cnn has no ImageNet weights; training starts from scratch")
    return ScratchCNN(in_chans=in_chans, size=size, **kwargs)
