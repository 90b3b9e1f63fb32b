"""Softmax cross-entropy with its gradient, computed stably through log-sum-exp."""
from __future__ import annotations

from typing import Any

from fakescope.models.scratch.backend import array_module


def log_softmax(logits: Any) -> Any:
    xp = array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits: Any, labels: Any) -> tuple[float, Any]:
    """Mean cross-entropy of ``logits`` (N, K) against integer ``labels`` (N,), and d(loss)/d(logits).

    Matches ``torch.nn.functional.cross_entropy`` with its default mean reduction.
    """
    xp = array_module(logits)
    n = logits.shape[0]
    labels = xp.asarray(labels).astype(xp.int64)
    logp = log_softmax(logits)
    rows = xp.arange(n)
    loss = -logp[rows, labels].mean()
    grad = xp.exp(logp)
    grad[rows, labels] -= 1.0
    return float(loss), grad / n
