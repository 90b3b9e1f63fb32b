"""Optimisers and learning-rate schedules, chosen by name from the config."""
from __future__ import annotations

import math

import torch
from torch.optim import lr_scheduler

from fakescope.config import OptimConfig


def build_optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    name = cfg.name.lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    raise ValueError(f"unknown optimizer {cfg.name!r}; use adam, adamw or sgd")


def build_scheduler(cfg: OptimConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int):
    """Returns ``(scheduler, per_batch)``: per-batch schedulers step every batch, the others once per epoch.

    ``plateau`` steps on the validation loss (the caller passes it).
    """
    name = cfg.schedule.lower()
    total = max(1, steps_per_epoch * epochs)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def with_warmup(f):
        return lambda step: (step + 1) / warmup if step < warmup else f(step)

    if name == "inverse":  # Keras' classic decay: lr / (1 + decay * iterations)
        return lr_scheduler.LambdaLR(optimizer, with_warmup(lambda s: 1.0 / (1.0 + cfg.lr_decay * s))), True
    if name == "cosine":
        def cosine(s: int) -> float:
            progress = min(1.0, (s - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return lr_scheduler.LambdaLR(optimizer, with_warmup(cosine)), True
    if name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma), False
    if name == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.gamma, patience=2), False
    if name == "none":
        return None, False
    raise ValueError(f"unknown schedule {cfg.schedule!r}; use inverse, cosine, step, plateau or none")
