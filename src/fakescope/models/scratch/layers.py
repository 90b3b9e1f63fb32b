"""Layers of the from-scratch CNN: explicit forward and backward passes on NumPy or CuPy arrays.

Each layer is functional: ``forward(x, p, training) -> (y, cache)`` and ``backward(dy, cache, p, need_dx) ->
(dx, grads)``, where ``p`` maps parameter and buffer names to arrays and ``cache`` is whatever the backward pass
needs. Layers own no arrays, so the same layer object serves a pure NumPy network (which keeps ``p`` in a dict)
and the torch module (which passes views of its ``nn.Parameter`` storage). Buffers (BatchNorm running statistics)
are updated in place, so they land in whichever storage ``p`` points at.

Shapes, layouts and formulas follow PyTorch exactly (NCHW activations, ``(out, in, kh, kw)`` convolution weights,
``(out, in)`` dense weights, biased batch variance for normalising and unbiased for the running estimate), which is
what lets the tests compare every layer with its ``torch.nn`` twin at ``rtol=1e-4``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fakescope.models.scratch.backend import array_module

Arrays = dict[str, Any]


class Layer:
    """Base class: a layer without parameters whose backward passes the gradient through unchanged."""

    #: Trainable arrays (``p[name]``), in the order gradients are returned.
    param_names: tuple[str, ...] = ()
    #: Non-trainable state updated in place during training (running statistics).
    buffer_names: tuple[str, ...] = ()

    def init(self, rng: np.random.Generator, dtype: Any = np.float32) -> Arrays:
        """Fresh parameters and buffers (NumPy; the caller moves them to its array module)."""
        return {}

    def forward(self, x: Any, p: Arrays, training: bool) -> tuple[Any, Any]:
        raise NotImplementedError

    def backward(self, dy: Any, cache: Any, p: Arrays, need_dx: bool = True) -> tuple[Any, Arrays]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float, dtype: Any) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _kaiming_like_torch(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, dtype: Any) -> Arrays:
    """PyTorch's default init for Conv/Linear: kaiming_uniform(a=sqrt(5)) weights, U(+-1/sqrt(fan_in)) bias."""
    bound = 1.0 / math.sqrt(fan_in)
    return {"weight": _uniform(rng, shape, bound, dtype), "bias": _uniform(rng, shape[:1], bound, dtype)}


class Conv2D(Layer):
    """2-D convolution as one matrix product over im2col patches."""

    param_names = ("weight", "bias")

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int, stride: int = 1, padding: int = 0):
        self.in_chans, self.out_chans = in_chans, out_chans
        self.k, self.stride, self.padding = kernel_size, stride, padding

    def init(self, rng: np.random.Generator, dtype: Any = np.float32) -> Arrays:
        shape = (self.out_chans, self.in_chans, self.k, self.k)
        return _kaiming_like_torch(rng, shape, self.in_chans * self.k * self.k, dtype)

    def output_side(self, side: int) -> int:
        return (side + 2 * self.padding - self.k) // self.stride + 1

    def _windows(self, h: int, w: int) -> tuple[int, int, list[tuple[int, int, slice, slice]]]:
        ho, wo, s = self.output_side(h - 2 * self.padding), self.output_side(w - 2 * self.padding), self.stride
        return ho, wo, [(i, j, slice(i, i + s * (ho - 1) + 1, s), slice(j, j + s * (wo - 1) + 1, s))
                        for i in range(self.k) for j in range(self.k)]

    def _weight_matrix(self, weight: Any) -> Any:
        """(F, C, kh, kw) -> (F, kh*kw*C), the column order of the patches."""
        return weight.transpose(0, 2, 3, 1).reshape(self.out_chans, -1)

    def forward(self, x: Any, p: Arrays, training: bool) -> tuple[Any, Any]:
        xp = array_module(x)
        # Channels-last patches (N, Ho, Wo, kh, kw, C): each copy below moves whole runs of C values.
        x = xp.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if self.padding:
            pad = self.padding
            x = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        n, h, w, c = x.shape
        ho, wo, windows = self._windows(h, w)
        cols = xp.empty((n, ho, wo, self.k, self.k, c), dtype=x.dtype)
        for i, j, rows, cs in windows:
            cols[:, :, :, i, j, :] = x[:, rows, cs, :]
        cols = cols.reshape(n * ho * wo, -1)
        y = cols @ self._weight_matrix(p["weight"]).T + p["bias"]
        y = xp.ascontiguousarray(y.reshape(n, ho, wo, self.out_chans).transpose(0, 3, 1, 2))
        return y, (cols, x.shape)

    def backward(self, dy: Any, cache: Any, p: Arrays, need_dx: bool = True) -> tuple[Any, Arrays]:
        xp = array_module(dy)
        cols, xshape = cache
        n, h, w, c = xshape
        dy2d = dy.transpose(0, 2, 3, 1).reshape(-1, self.out_chans)
        dw = (dy2d.T @ cols).reshape(self.out_chans, self.k, self.k, c).transpose(0, 3, 1, 2)
        grads = {"weight": xp.ascontiguousarray(dw), "bias": dy2d.sum(axis=0)}
        if not need_dx:
            return None, grads
        ho, wo, windows = self._windows(h, w)
        dcols = (dy2d @ self._weight_matrix(p["weight"])).reshape(n, ho, wo, self.k, self.k, c)
        dx = xp.zeros(xshape, dtype=dy.dtype)
        for i, j, rows, cs in windows:  # col2im: overlapping patches add up
            dx[:, rows, cs, :] += dcols[:, :, :, i, j, :]
        if self.padding:
            pad = self.padding
            dx = dx[:, pad:h - pad, pad:w - pad, :]
        return xp.ascontiguousarray(dx.transpose(0, 3, 1, 2)), grads

    def __repr__(self) -> str:
        return (f"Conv2D({self.in_chans}, {self.out_chans}, kernel_size={self.k}, stride={self.stride}, "
                f"padding={self.padding})")


class BatchNorm2D(Layer):
    """Batch normalisation over (N, H, W) per channel, with running statistics for evaluation."""

    param_names = ("weight", "bias")
    buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        self.num_features, self.eps, self.momentum = num_features, eps, momentum

    def init(self, rng: np.random.Generator, dtype: Any = np.float32) -> Arrays:
        c = self.num_features
        return {"weight": np.ones(c, dtype), "bias": np.zeros(c, dtype), "running_mean": np.zeros(c, dtype),
                "running_var": np.ones(c, dtype), "num_batches_tracked": np.zeros((), np.int64)}

    def forward(self, x: Any, p: Arrays, training: bool) -> tuple[Any, Any]:
        xp = array_module(x)
        if training:
            mean = x.mean(axis=(0, 2, 3))
            var = x.var(axis=(0, 2, 3))
            n = x.size // x.shape[1]
            m = self.momentum
            p["running_mean"][...] = (1 - m) * p["running_mean"] + m * mean
            p["running_var"][...] = (1 - m) * p["running_var"] + m * var * (n / max(n - 1, 1))
            p["num_batches_tracked"][...] += 1
        else:
            mean, var = p["running_mean"], p["running_var"]
        inv_std = (1.0 / xp.sqrt(var + self.eps)).astype(x.dtype)
        x_hat = (x - mean.astype(x.dtype)[:, None, None]) * inv_std[:, None, None]
        y = x_hat * p["weight"][:, None, None] + p["bias"][:, None, None]
        return y, (x_hat, inv_std, training)

    def backward(self, dy: Any, cache: Any, p: Arrays, need_dx: bool = True) -> tuple[Any, Arrays]:
        x_hat, inv_std, training = cache
        axes = (0, 2, 3)
        grads = {"weight": (dy * x_hat).sum(axis=axes), "bias": dy.sum(axis=axes)}
        if not need_dx:
            return None, grads
        dx_hat = dy * p["weight"][:, None, None]
        if not training:  # running statistics are constants
            return dx_hat * inv_std[:, None, None], grads
        n = dy.size // dy.shape[1]
        dx = (inv_std[:, None, None] / n) * (
            n * dx_hat - dx_hat.sum(axis=axes)[:, None, None]
            - x_hat * (dx_hat * x_hat).sum(axis=axes)[:, None, None]
        )
        return dx, grads

    def __repr__(self) -> str:
        return f"BatchNorm2D({self.num_features}, eps={self.eps}, momentum={self.momentum})"


class ReLU(Layer):
    def forward(self, x: Any, p: Arrays, training: bool) -> tuple[Any, Any]:
        y = array_module(x).maximum(x, 0)
        return y, y

    def backward(self, dy: Any, cache: Any, p: Arrays, need_dx: bool = True) -> tuple[Any, Arrays]:
        return (dy * (cache > 0) if need_dx else None), {}


class MaxPool2D(Layer):
    """Max pooling (floor mode); the gradient goes to the first maximum of each window, as in PyTorch."""

    def __init__(self, kernel_size: int = 2, stride: int | None = None):
        self.k, self.stride = kernel_size, stride or kernel_size

    def _slices(self, h: int, w: int) -> tuple[int, int, list[tuple[slice, slice]]]:
        s = self.stride
        ho, wo = (h - self.k) // s + 1, (w - self.k) // s + 1
        return ho, wo, [(slice(i, i + s * (ho - 1) + 1, s), slice(j, j + s * (wo - 1) + 1, s))
                         for i in range(self.k) for j in range(self.k)]

    def forward(self, x: Any, p: Arrays, training: bool) -> tuple[Any, Any]:
        xp = array_module(x)
        slices = self._slices(*x.shape[2:])[2]
        y = x[:, :, slices[0][0], slices[0][1]]
        for r, c in slices[1:]:  # element-wise maxima over the window offsets: no (..., k*k) temporary
            y = xp.maximum(y, x[:, :, r, c])
        return xp.ascontiguousarray(y), (x, y)

    def backward(self, dy: Any, cache: Any, p: Arrays, need_dx: bool = True) -> tuple[Any, Arrays]:
        if not need_dx:
            return None, {}
        xp = array_module(dy)
        x, y = cache
        dx = xp.zeros(x.shape, dtype=dy.dtype)
        taken = xp.zeros(y.shape, dtype=bool)
        for r, c in self._slices(*x.shape[2:])[2]:  # row-major offsets: the first maximum wins
            hit = (x[:, :, r, c] == y) & ~taken
            dx[:, :, r, c] += dy * hit
            taken |= hit
        return dx, {}

    def __repr__(self) -> str:
        return f"MaxPool2D(kernel_size={self.k}, stride={self.stride})"


class Flatten(Layer):
    def forward(self, x: Any, p: Arrays, training: bool) -> tuple[Any, Any]:
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dy: Any, cache: Any, p: Arrays, need_dx: bool = True) -> tuple[Any, Arrays]:
        return (dy.reshape(cache) if need_dx else None), {}


class Dense(Layer):
    """Fully connected layer ``y = x W^T + b`` with PyTorch's ``(out, in)`` weight layout."""

    param_names = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int):
        self.in_features, self.out_features = in_features, out_features

    def init(self, rng: np.random.Generator, dtype: Any = np.float32) -> Arrays:
        return _kaiming_like_torch(rng, (self.out_features, self.in_features), self.in_features, dtype)

    def forward(self, x: Any, p: Arrays, training: bool) -> tuple[Any, Any]:
        return x @ p["weight"].T + p["bias"], x

    def backward(self, dy: Any, cache: Any, p: Arrays, need_dx: bool = True) -> tuple[Any, Arrays]:
        grads = {"weight": dy.T @ cache, "bias": dy.sum(axis=0)}
        return (dy @ p["weight"] if need_dx else None), grads

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features})"


class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability ``p`` and scale the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.5, seed: int | None = None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = np.random.default_rng(seed)

    def forward(self, x: Any, p: Arrays, training: bool) -> tuple[Any, Any]:
        if not training or self.p == 0.0:
            return x, None
        xp = array_module(x)
        # The mask is drawn on the host so a seed gives the same mask on NumPy and CuPy.
        keep = xp.asarray(self.rng.random(x.shape) >= self.p)
        mask = keep.astype(x.dtype) / (1.0 - self.p)
        return x * mask, mask

    def backward(self, dy: Any, cache: Any, p: Arrays, need_dx: bool = True) -> tuple[Any, Arrays]:
        if not need_dx:
            return None, {}
        return (dy if cache is None else dy * cache), {}

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"
