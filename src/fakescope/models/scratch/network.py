"""The ELA-CNN's shape built from scratch layers, and a pure NumPy/CuPy network that trains it.

Layer names follow :class:`fakescope.models.ela_cnn.ELACNN` (``features.0`` ... ``head.4``), so a state dict moves
between the NumPy network, the torch-facing :class:`~fakescope.models.scratch.module.ScratchCNN` and the PyTorch
ELA-CNN without renaming.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fakescope.models.scratch import backend
from fakescope.models.scratch.layers import (
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
    ReLU,
)
from fakescope.models.scratch.losses import softmax_cross_entropy
from fakescope.models.scratch.optim import Optimizer, clip_grad_norm

Arrays = dict[str, Any]


def ela_cnn_side(size: int) -> int:
    """Spatial side after the two conv (3x3, no padding) + pool (2) blocks."""
    return ((size - 2) // 2 - 2) // 2


def ela_cnn_layers(in_chans: int = 3, size: int = 128, num_classes: int = 2, dropout: float = 0.5,
                   seed: int | None = None) -> dict[str, list[Layer]]:
    """Conv32-BN-ReLU-Pool-Conv64-BN-ReLU-Pool | Flatten-Dense128-ReLU-Dropout-Dense(num_classes)."""
    side = ela_cnn_side(size)
    if side < 1:
        raise ValueError(f"input size {size} is too small for the ELA-CNN (needs at least 10)")
    return {
        "features": [Conv2D(in_chans, 32, 3), BatchNorm2D(32), ReLU(), MaxPool2D(2),
                     Conv2D(32, 64, 3), BatchNorm2D(64), ReLU(), MaxPool2D(2)],
        "head": [Flatten(), Dense(64 * side * side, 128), ReLU(), Dropout(dropout, seed), Dense(128, num_classes)],
    }


class ScratchNet:
    """A sequence of named layers with their arrays; forward, backward and a state dict like ``nn.Module``'s."""

    def __init__(self, sections: dict[str, list[Layer]], seed: int = 0, dtype: Any = np.float32):
        self.layers: list[tuple[str, Layer]] = [(f"{sec}.{i}", layer) for sec, layers in sections.items()
                                                for i, layer in enumerate(layers)]
        rng = np.random.default_rng(seed)
        self.arrays: dict[str, Arrays] = {
            name: {k: backend.xp.asarray(v) for k, v in layer.init(rng, dtype).items()} for name, layer in self.layers
        }
        self.training = True
        self._caches: list[Any] = []

    def train(self, mode: bool = True) -> ScratchNet:
        self.training = mode
        return self

    def eval(self) -> ScratchNet:
        return self.train(False)

    def parameters(self) -> Arrays:
        """Trainable arrays keyed ``layer.param`` (views: updating them updates the network)."""
        return {f"{name}.{k}": self.arrays[name][k] for name, layer in self.layers for k in layer.param_names}

    def state_dict(self) -> Arrays:
        return {f"{name}.{k}": v for name, _ in self.layers for k, v in self.arrays[name].items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy arrays in (NumPy arrays, or anything with ``.numpy()`` such as CPU torch tensors)."""
        own = self.state_dict()
        if set(own) != set(state):
            raise KeyError(f"state dict keys differ: missing {sorted(set(own) - set(state))}, "
                           f"unexpected {sorted(set(state) - set(own))}")
        for key, target in own.items():
            value = state[key].detach().cpu().numpy() if hasattr(state[key], "detach") else state[key]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"{key}: shape {tuple(value.shape)} != {tuple(target.shape)}")
            target[...] = backend.xp.asarray(value)

    def forward(self, x: Any) -> Any:
        """Logits for a float NCHW batch; keeps what :meth:`backward` needs when training."""
        self._caches = []
        for name, layer in self.layers:
            x, cache = layer.forward(x, self.arrays[name], self.training)
            self._caches.append(cache)
        return x

    __call__ = forward

    def backward(self, dlogits: Any) -> Arrays:
        """Gradients of every parameter, keyed like :meth:`parameters`, from d(loss)/d(logits)."""
        if len(self._caches) != len(self.layers):
            raise RuntimeError("backward() needs a forward() first")
        grads: Arrays = {}
        dy = dlogits
        for index in range(len(self.layers) - 1, -1, -1):
            name, layer = self.layers[index]
            dy, layer_grads = layer.backward(dy, self._caches[index], self.arrays[name], need_dx=index > 0)
            grads.update({f"{name}.{k}": g for k, g in layer_grads.items()})
        self._caches = []
        return grads


def build_ela_cnn(in_chans: int = 3, size: int = 128, num_classes: int = 2, dropout: float = 0.5, seed: int = 0,
                  dtype: Any = np.float32) -> ScratchNet:
    """A fresh from-scratch ELA-CNN on the default array module (CuPy on a GPU, else NumPy)."""
    return ScratchNet(ela_cnn_layers(in_chans, size, num_classes, dropout, seed), seed=seed, dtype=dtype)


def train_step(net: ScratchNet, optimizer: Optimizer, x: Any, labels: Any, grad_clip: float | None = None) -> float:
    """One optimisation step on a batch: forward, softmax cross-entropy, backward, clip, update. Returns the loss."""
    net.train()
    loss, dlogits = softmax_cross_entropy(net.forward(x), labels)
    grads = net.backward(dlogits)
    if grad_clip:
        clip_grad_norm(grads, grad_clip)
    optimizer.step(grads)
    return loss
