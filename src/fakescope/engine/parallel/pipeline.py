"""Pipeline parallelism: the model cut into consecutive stages, one per rank, fed with micro-batches.

``torch.distributed.pipelining.pipeline`` traces the model and cuts it before the modules named in
``parallel.pipeline_split`` (``SplitPoint.BEGINNING``); each rank builds its stage, and a GPipe or 1F1B schedule
runs the micro-batches through the stages, sending activations forward and their gradients back. The stage
modules share their parameters with the traced model, whose parameter names they keep, so the whole model is
put together again by gathering every stage's state dict.

Without explicit split points, the cuts fall where the measured forward FLOPs (``FlopCounterMode``) are most
evenly shared, at boundaries of the model's top-level and ``nn.Sequential`` children.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.pipelining import (
    Schedule1F1B,
    ScheduleGPipe,
    SplitPoint,
    pipeline,
)
from torch.utils.flop_counter import FlopCounterMode

from fakescope.config import TrainConfig
from fakescope.distributed import DistInfo, all_gather_objects
from fakescope.engine.distributed import broadcast_batches
from fakescope.engine.loops import EpochOptions
from fakescope.engine.parallel.base import Strategy

log = logging.getLogger(__name__)

SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}


def candidate_blocks(model: nn.Module, prefix: str = "") -> list[str]:
    """Module names in call order where a cut is allowed: top-level children, with ``nn.Sequential`` opened."""
    out = []
    for name, child in model.named_children():
        full = f"{prefix}{name}"
        out.extend(candidate_blocks(child, full + ".") if isinstance(child, nn.Sequential) else [full])
    return out


def balanced_split_points(model: nn.Module, example: torch.Tensor, n_stages: int) -> list[str]:
    """The ``n_stages - 1`` block names to cut before so that each stage gets about the same forward FLOPs."""
    blocks = candidate_blocks(model)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(example[:1])
    model.train()
    flops = {k.split(".", 1)[1]: sum(v.values()) for k, v in counter.get_flop_counts().items() if "." in k}
    costs = [flops.get(b, 0) for b in blocks]
    total, cum, cuts = sum(costs), 0, []
    for i, (name, cost) in enumerate(zip(blocks, costs)):
        target = total * (len(cuts) + 1) / n_stages
        if len(cuts) < n_stages - 1 and i > 0 and abs(cum - target) < abs(cum + cost - target):
            cuts.append(name)
        cum += cost
    if len(cuts) != n_stages - 1:
        raise ValueError(f"cannot cut {type(model).__name__} into {n_stages} stages at {blocks}; "
                         "set parallel.pipeline_split")
    return cuts


class PipelineStrategy(Strategy):
    name = "pipeline"
    supports = frozenset({"grad_clip"})

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device, info: DistInfo,
                 example: torch.Tensor):
        super().__init__(model, cfg, device, info)
        n_mb = cfg.parallel.microbatches
        if cfg.batch_size % n_mb:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by parallel.microbatches {n_mb}")
        self.batch_size, self.n_mb = cfg.batch_size, n_mb
        # gloo sends only contiguous tensors ("RuntimeError: input tensor has to be contiguous" for the
        # channels-last activations fit uses elsewhere), so the stages run in NCHW layout.
        model.to(memory_format=torch.contiguous_format)
        micro = example[:1].expand(cfg.batch_size // n_mb, *example.shape[1:]).contiguous()
        self.splits = list(cfg.parallel.pipeline_split) or balanced_split_points(model, micro, info.world_size)
        model.train()
        pipe = pipeline(model, mb_args=(micro,), split_spec={s: SplitPoint.BEGINNING for s in self.splits})
        self.stage = pipe.build_stage(info.rank, device)
        self.train_module = self.stage.submod
        self.activation_bytes = _boundary_bytes(model, micro, self.splits)
        self._schedule: Any = None
        log.info("pipeline: %d stages cut before %s, %d micro-batches of %d, %s schedule", info.world_size,
                 self.splits, n_mb, micro.shape[0], cfg.parallel.schedule)

    def schedule(self, loss_fn: nn.Module) -> Any:
        if self._schedule is None:
            self._schedule = SCHEDULES[self.cfg.parallel.schedule](self.stage, n_microbatches=self.n_mb, loss_fn=loss_fn)
        return self._schedule

    def train_one_epoch(self, loader: Iterable, opts: EpochOptions, total: int = 0) -> dict[str, float]:
        """Rank 0 reads the data and feeds the first stage; the labels go to the last stage."""
        self.train_module.train()
        schedule, stage = self.schedule(opts.loss_fn), self.stage
        loss_sum, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        for arrays, labels in opts.track(broadcast_batches(loader, total, False, self.device), total, "train"):
            if len(labels) != self.batch_size:  # the stages were traced for full batches
                log.warning("pipeline: skipping a batch of %d (unreadable images)", len(labels))
                continue
            opts.optimizer.zero_grad(set_to_none=True)
            args = (opts.to_input(arrays).to(self.device).contiguous(),) if stage.is_first else ()
            losses: list[torch.Tensor] = []
            out = schedule.step(*args, target=labels if stage.is_last else None, losses=losses)
            if opts.grad_clip:
                clip_grad_norm_global(list(self.train_module.parameters()), opts.grad_clip)
            opts.optimizer.step()
            if opts.scheduler is not None:
                opts.scheduler.step()
            if stage.is_last:
                loss_sum += float(torch.stack(losses).detach().mean()) * len(labels)
                correct += int((out.argmax(1) == labels).sum())
            seen += len(labels)
        elapsed = time.perf_counter() - start
        stats = torch.tensor([loss_sum / max(seen, 1), correct / max(seen, 1)], dtype=torch.float64)
        dist.broadcast(stats, self.info.world_size - 1)  # the last stage saw the outputs
        return {"loss": float(stats[0]), "accuracy": float(stats[1]),
                "images_per_s": seen / elapsed if elapsed > 0 else 0.0}

    def eval_model(self) -> nn.Module:
        state: dict[str, torch.Tensor] = {}
        for part in all_gather_objects({k: v.detach().cpu() for k, v in self.train_module.state_dict().items()}):
            state.update(part)
        self.model.load_state_dict(state)
        return self.model

    def bytes_per_step(self) -> dict[str, float]:
        labels = self.batch_size * 8
        return {"activations forward + gradients back": 2.0 * self.activation_bytes * self.batch_size,
                "labels broadcast": float(labels)}


def _boundary_bytes(model: nn.Module, example: torch.Tensor, splits: list[str]) -> int:
    """Bytes per sample crossing the stage boundaries (the inputs of the split modules)."""
    sizes: list[int] = []
    modules = dict(model.named_modules())
    hooks = [modules[s].register_forward_pre_hook(
        lambda _m, args: sizes.append(args[0].numel() * args[0].element_size() // args[0].shape[0])) for s in splits]
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        for h in hooks:
            h.remove()
        model.train()
    return sum(sizes)


def clip_grad_norm_global(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip by the norm over all stages' gradients: local squared norms summed across ranks."""
    grads = [p.grad for p in params if p.grad is not None]
    local = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
    squared = local.double().pow(2).cpu()
    dist.all_reduce(squared)
    total = squared.sqrt().to(local.dtype)
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total
