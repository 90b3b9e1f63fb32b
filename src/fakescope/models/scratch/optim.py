"""Optimisers, gradient clipping and exponential learning-rate decay for the pure NumPy/CuPy training loop.

The update rules are PyTorch's (``torch.optim.SGD`` with momentum/Nesterov, ``torch.optim.Adam``,
``torch.nn.utils.clip_grad_norm_``, ``torch.optim.lr_scheduler.ExponentialLR``), so a NumPy step and a torch step
from the same state give the same weights; the tests check it.
"""
from __future__ import annotations

import math
from typing import Any

from fakescope.models.scratch.backend import array_module

Arrays = dict[str, Any]


class Optimizer:
    """Updates ``params`` (name -> array, in place) from gradients keyed by the same names."""

    def __init__(self, params: Arrays, lr: float, weight_decay: float = 0.0):
        self.params = params
        self.lr = lr
        self.weight_decay = weight_decay
        self.state: dict[str, dict[str, Any]] = {}

    def _grad(self, name: str, grad: Any) -> Any:
        return grad + self.weight_decay * self.params[name] if self.weight_decay else grad

    def step(self, grads: Arrays) -> None:
        for name, grad in grads.items():
            self._update(name, self._grad(name, grad))

    def _update(self, name: str, grad: Any) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(self, params: Arrays, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        super().__init__(params, lr, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov

    def _update(self, name: str, grad: Any) -> None:
        if self.momentum:
            state = self.state.setdefault(name, {})
            buf = state.get("momentum_buffer")
            buf = grad.copy() if buf is None else buf * self.momentum + grad
            state["momentum_buffer"] = buf
            grad = grad + self.momentum * buf if self.nesterov else buf
        self.params[name] -= self.lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, as ``torch.optim.Adam`` computes it."""

    def __init__(self, params: Arrays, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.betas, self.eps = betas, eps

    def _update(self, name: str, grad: Any) -> None:
        xp = array_module(grad)
        b1, b2 = self.betas
        state = self.state.setdefault(name, {"step": 0, "m": xp.zeros_like(grad), "v": xp.zeros_like(grad)})
        state["step"] += 1
        t = state["step"]
        state["m"] = b1 * state["m"] + (1 - b1) * grad
        state["v"] = b2 * state["v"] + (1 - b2) * grad * grad
        denom = xp.sqrt(state["v"]) / math.sqrt(1 - b2 ** t) + self.eps
        self.params[name] -= (self.lr / (1 - b1 ** t)) * state["m"] / denom


def clip_grad_norm(grads: Arrays, max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``; returns the norm before."""
    if not grads:
        return 0.0
    total = math.sqrt(sum(float((g.astype("float64") ** 2).sum()) for g in grads.values()))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    return total


class ExponentialDecay:
    """``lr = lr0 * rate ** (step / decay_steps)`` (``staircase``: integer division), set on the optimiser.

    With ``decay_steps=1`` it is ``torch.optim.lr_scheduler.ExponentialLR(gamma=rate)``; call :meth:`step` after
    each optimiser step (per batch) or each epoch.
    """

    def __init__(self, optimizer: Optimizer, rate: float, decay_steps: int = 1, staircase: bool = False):
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"decay rate must be in (0, 1], got {rate}")
        self.optimizer, self.rate, self.decay_steps, self.staircase = optimizer, rate, decay_steps, staircase
        self.initial_lr = optimizer.lr
        self.steps = 0

    def step(self) -> float:
        self.steps += 1
        exponent = self.steps // self.decay_steps if self.staircase else self.steps / self.decay_steps
        self.optimizer.lr = self.initial_lr * self.rate ** exponent
        return self.optimizer.lr
