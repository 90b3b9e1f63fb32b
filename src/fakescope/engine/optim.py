"""Optimisers and learning-rate schedules, chosen by name from the config."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from timm.optim import param_groups_layer_decay
from torch import nn
from torch.optim import lr_scheduler

from fakescope.config import OptimConfig


def parameter_groups(cfg: OptimConfig, model: nn.Module, params: Iterable[nn.Parameter]) -> list:
    """``params`` as they are, or with ``cfg.layer_decay`` in timm's layer-wise groups of ``model``'s backbone, each
    with its own ``lr``; parameters outside the backbone (a training-only head) train at ``cfg.lr``."""
    params = list(params)
    if cfg.layer_decay is None:
        return params
    if not 0.0 < cfg.layer_decay <= 1.0:
        raise ValueError(f"optim.layer_decay must be in (0, 1], got {cfg.layer_decay}")
    backbone = next((m for m in model.modules() if hasattr(m, "group_matcher")), None)
    if backbone is None:
        raise ValueError(f"optim.layer_decay needs a timm backbone (one with group_matcher); {type(model).__name__} has none")
    wanted = {id(p) for p in params}
    groups = []
    # every parameter keeps the same weight decay as without layer decay: only the learning rate changes
    for g in param_groups_layer_decay(backbone, cfg.weight_decay, layer_decay=cfg.layer_decay,
                                      weight_decay_exclude_1d=False):
        kept = [p for p in g["params"] if id(p) in wanted]
        if kept:
            groups.append({"params": kept, "weight_decay": g["weight_decay"], "lr": cfg.lr * g["lr_scale"]})
    if not groups:
        raise ValueError("optim.layer_decay: none of the trained parameters belong to the backbone")
    seen = {id(p) for g in groups for p in g["params"]}
    rest = [p for p in params if id(p) not in seen]
    return groups + ([{"params": rest, "lr": cfg.lr}] if rest else [])


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
