"""The two loops everything else uses: one training epoch, and prediction over a loader."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Track = Callable[[Iterable, int, str], Iterable]


def _no_track(it: Iterable, total: int, description: str) -> Iterable:
    return it


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU, fp16 on CUDA; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class EpochOptions:
    """How a training epoch runs, besides the model and the data: ``scheduler`` (if given) steps every batch,
    ``grad_clip`` bounds the gradient norm, ``amp`` autocasts (``scaler``: CUDA fp16's GradScaler), ``ema`` is
    updated after every step, ``track`` wraps the batches (a progress bar)."""

    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    to_input: Callable[[torch.Tensor], torch.Tensor]
    scheduler: Any = None
    grad_clip: float | None = None
    amp: bool = False
    scaler: torch.amp.GradScaler | None = None
    ema: Any = None
    track: Track = _no_track


def train_one_epoch(model: nn.Module, loader: Iterable, device: torch.device, opts: EpochOptions,
                    total: int = 0) -> dict[str, float]:
    """One pass over ``loader``; ``scheduler`` (if given) steps every batch. Returns loss, accuracy, images/s."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    for batch in opts.track(loader, total, "train"):
        if batch is None:
            continue
        arrays, labels, *targets = batch  # targets: (masks, known) from a dataset with pixel targets
        x, y = opts.to_input(arrays).to(device, non_blocking=True), labels.to(device)
        with autocast(device, opts.amp):
            output = model(x)  # logits, or (logits, cell logits) from a mask-supervised model
            logits = output[0] if isinstance(output, tuple) else output
            loss = opts.loss_fn(output, y, *[t.to(device) for t in targets])  # autocast runs the losses in fp32
        opts.optimizer.zero_grad(set_to_none=True)
        if opts.scaler is not None:
            opts.scaler.scale(loss).backward()
            opts.scaler.unscale_(opts.optimizer)
        else:
            loss.backward()
        if opts.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
        if opts.scaler is not None:
            opts.scaler.step(opts.optimizer)
            opts.scaler.update()
        else:
            opts.optimizer.step()
        if opts.scheduler is not None:
            opts.scheduler.step()
        if opts.ema is not None:
            opts.ema.update(model)
        n = y.numel()
        loss_sum += float(loss.detach()) * n
        correct += int((logits.argmax(1) == y).sum())
        seen += n
    elapsed = time.perf_counter() - start
    return {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1),
            "images_per_s": seen / elapsed if elapsed > 0 else 0.0}


@torch.no_grad()
def predict_loader(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    to_input: Callable[[torch.Tensor], torch.Tensor],
    amp: bool = False,
    track: Track = _no_track,
    total: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over a labelled loader, in eval mode."""
    model.eval()
    all_logits, all_labels = [], []
    for batch in track(loader, total, "validate"):
        if batch is None:
            continue
        arrays, labels, *_ = batch
        with autocast(device, amp):
            logits = model(to_input(arrays).to(device))
        all_logits.append(logits.float().cpu())
        all_labels.append(labels)
    if not all_logits:
        return torch.empty(0, 2), torch.empty(0, dtype=torch.long)
    return torch.cat(all_logits), torch.cat(all_labels)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising validation NLL of ``logits / T``."""
    if logits.numel() == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")
    nll = nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nll(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if 0.05 < t < 20.0 else 1.0
