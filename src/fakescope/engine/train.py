"""``fit``: the whole training run from a :class:`TrainConfig` to a calibrated best checkpoint.

Like torchvision's reference scripts, the loop is short functions: build data, build model, run epochs with
early stopping on validation loss, calibrate, save. Only the main process writes.
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fakescope._version import __version__
from fakescope.allocator import reuse_freed_memory
from fakescope.checkpoint import CheckpointMeta, read_meta, save_checkpoint, unwrap
from fakescope.config import TrainConfig, save_config, to_dict, validate
from fakescope.data.discovery import Sample
from fakescope.data.preprocess import Preprocess
from fakescope.data.splits import class_weights
from fakescope.distributed import DistInfo, barrier, device_for, in_torchrun_env, init_distributed
from fakescope.engine.adversary import SourceAdversary
from fakescope.engine.loaders import build_loaders, folder_splits, seed_epoch, seed_everything
from fakescope.engine.loops import EpochOptions, Track, _no_track, fit_temperature, predict_loader
from fakescope.engine.optim import build_optimizer, build_scheduler, parameter_groups
from fakescope.engine.parallel import (
    STRATEGIES,
    build_strategy,
    check_config,
)
from fakescope.engine.pixel import DetectorLoss, MaskSupervised
from fakescope.engine.threshold import shipped_threshold
from fakescope.evaluation.metrics import compute_metrics
from fakescope.inference.detector import (
    classifier_module,
    copy_move_input,
    has_stage_features,
    resolve_device,
    softmax_fake,
)
from fakescope.inference.kinds import SINGLE, get_kind
from fakescope.inference.kinds.patch import PatchConfig, PatchDetector, aggregate, patch_info
from fakescope.registry import create_detector, get_spec
from fakescope.video.clips import clip_info, clip_spec

log = logging.getLogger(__name__)

#: ``TrainConfig.keep``: the weights of the epoch with the lowest validation loss, or of the last epoch.

HISTORY_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_roc_auc", "lr",
                  "train_images_per_s", "seconds"]


@dataclass
class FitResult:
    checkpoint: Path
    history: list[dict[str, float]]
    metrics: dict[str, Any]


def _loss_fn(cfg: TrainConfig, labels: list[int]) -> nn.Module:
    weight = torch.tensor(class_weights(labels), dtype=torch.float32) if cfg.data.balance == "weights" else None
    return DetectorLoss(nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing), cfg.mask_loss,
                        sources=cfg.source_adversary > 0)


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def patch_config(cfg: TrainConfig) -> PatchConfig:
    """The patch aggregation a crop detector trained with ``cfg`` ships with (validated on construction)."""
    m = cfg.model
    return PatchConfig(aggregate=m.patch_aggregate, top_k=m.patch_top_k, max_patches=m.max_patches)


def _meta(cfg: TrainConfig, pre: Preprocess, counts: dict, metrics: dict, temperature: float,
          threshold: float = 0.5) -> CheckpointMeta:
    return CheckpointMeta(
        architecture=cfg.model.name,
        preprocess=pre,
        threshold=threshold,
        temperature=temperature,
        info={"data": {"path": cfg.data.path, "counts": counts}, "metrics": metrics, "config": to_dict(cfg),
              "fakescope_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              **patch_info(pre, patch_config(cfg)), **clip_info(pre),  # crop / clip detectors load as their Detector kinds
              **({"copy_move": True} if cfg.copy_move else {})},
    )


def _save_state(path: Path, model: nn.Module, optimizer, scheduler, epoch: int, best: float,
                history: list, bad_epochs: int) -> None:
    """Everything needed to resume; tensors and plain values only, so it loads with ``weights_only=True``."""
    torch.save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch, "best_val_loss": best, "history": history, "bad_epochs": bad_epochs,
        "torch_rng": torch.get_rng_state(),
    }, path)


def _resume(path: Path, model: nn.Module, optimizer, scheduler, device: torch.device,
            best_path: Path) -> tuple[list, float, int, int]:
    """Restore a run from its ``last.pt``; returns (history, best validation loss, bad epochs, next epoch)."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    source_best = path.with_name(best_path.name)
    if not best_path.exists() and source_best.is_file():
        # Resumed into another folder: bring the best checkpoint so far, or a run with no better epoch has none.
        shutil.copy2(source_best, best_path)
    log.info("resumed from %s at epoch %d", path, state["epoch"] + 1)
    return state["history"], state["best_val_loss"], state["bad_epochs"], state["epoch"] + 1


def _calibrated_metrics(logits: torch.Tensor, labels: torch.Tensor, temperature: float,
                        threshold: float = 0.5) -> dict[str, Any]:
    probs = softmax_fake(logits.numpy(), temperature)
    return compute_metrics(labels.numpy(), probs, threshold)


def _tensorboard(out: Path, on_epoch):
    """Wrap ``on_epoch`` so every epoch's row is also written as TensorBoard scalars under ``out/tensorboard``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch imports tensorboard lazily
        raise RuntimeError("tensorboard logging needs the tensorboard package: pip install 'fakescope[tensorboard]'") from e
    writer = SummaryWriter(str(out / "tensorboard"))

    def write(row: dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch":
                writer.add_scalar(key, value, row["epoch"])
        writer.flush()
        if on_epoch:
            on_epoch(row)

    return write


class _UncalibratedToo(PatchDetector):
    """A patch detector that, while scoring at its calibrated temperature, also aggregates every image's patches
    at temperature 1 (kept in ``uncalibrated``, in scoring order): one pass over the images gives both."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.uncalibrated: list[float] = []

    def image_probabilities(self, patch_logits: list[torch.Tensor]) -> np.ndarray:
        self.uncalibrated += [aggregate(self.probabilities(x, 1.0), self.config.aggregate, self.config.top_k)
                              for x in patch_logits]
        return super().image_probabilities(patch_logits)


def _patch_validation(cfg: TrainConfig, model: nn.Module, pre: Preprocess, samples: list[Sample],
                      temperature: float) -> tuple[float, dict[str, Any]]:
    """Threshold and metrics of a patch detector as ``scan`` scores it: every validation image cut into patches at
    native resolution and their calibrated probabilities aggregated (the temperature is fitted per patch)."""
    from fakescope.evaluation.evaluate import score_samples

    info = patch_info(pre, patch_config(cfg))
    meta = CheckpointMeta(cfg.model.name, pre, temperature=temperature, info=info)
    detector = _UncalibratedToo(model, meta, cfg.model.name, device=str(next(model.parameters()).device))
    scored: list[Path] = []  # the files behind labels and probs, in their (completion) order

    def note(result) -> None:
        if result.error is None:
            scored.append(Path(result.path))

    labels, probs, _ = score_samples(detector, samples, batch_size=cfg.batch_size, workers=cfg.data.workers,
                                     on_result=note)
    threshold, held_out = shipped_threshold(cfg, labels, probs, scored)
    metrics = compute_metrics(labels, probs, threshold)
    metrics["fpr_held_out"] = held_out
    metrics["ece_uncalibrated"] = compute_metrics(labels, detector.uncalibrated)["ece"]
    metrics["patch"] = info["patch"]
    return threshold, metrics


def fit(cfg: TrainConfig, track: Track = _no_track, on_epoch=None) -> FitResult:
    """Train ``cfg.model.name`` on ``cfg.data.path``; returns the best (lowest validation loss) checkpoint."""
    reuse_freed_memory()
    seed_everything(cfg.seed)
    cfg, info = _join(cfg)
    patch_config(cfg)  # a bad aggregation fails now, not after training
    if not info.is_main:  # only rank 0 reports and writes
        track, on_epoch = _no_track, None
    device = device_for(resolve_device(cfg.device))
    out = Path(cfg.out)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        if cfg.tensorboard:
            on_epoch = _tensorboard(out, on_epoch)

    model, pre = create_detector(cfg.model.name, input_mode=cfg.model.input_mode, size=cfg.model.size,
                                 pretrained=cfg.model.pretrained, resize=cfg.model.resize)
    pre = replace(pre, shuffle=cfg.model.patch_shuffle)
    if cfg.mask_loss and (clip_spec(pre) is not None or pre.resize != "squash"):
        raise ValueError(f"mask_loss needs a whole-image detector; {cfg.model.name!r} reads "
                         f"{'video clips' if clip_spec(pre) is not None else 'native-resolution crops'}")
    if cfg.copy_move and (clip_spec(pre) is not None or not copy_move_input(pre)):
        raise ValueError(f"copy_move needs a whole-image RGB detector; {cfg.model.name!r} reads "
                         f"{pre.input_mode} input ({pre.resize})")
    if cfg.neighbour_score and (pre.resize != "squash" or not has_stage_features(model) or clip_spec(pre)):
        raise ValueError(f"neighbour_score needs a whole-image detector with stage statistics (a timm backbone); "
                         f"{cfg.model.name!r} is not one")
    model.to(device, memory_format=torch.channels_last)  # the layout oneDNN's CPU convolutions are fastest in
    train_dl, val_dl, counts = build_loaders(cfg, pre, info if STRATEGIES[cfg.strategy].data_parallel else None)
    if info.is_main:
        log.info("data: %s", counts)

    def to_input(arrays: torch.Tensor) -> torch.Tensor:
        x = pre.to_tensor(arrays)  # 5-D for clips (N, T, C, H, W), which have no channels-last layout
        return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x

    loss_fn = _loss_fn(cfg, train_dl.dataset.labels).to(device)
    example = to_input(torch.zeros(1, pre.size, pre.size, pre.channels))
    if cfg.mask_loss:  # a training-only tampering-map head; the checkpoint holds the plain detector
        model = MaskSupervised(model, get_spec(cfg.model.name).target_layer, example.to(device))
    if cfg.source_adversary:  # a training-only source head behind gradient reversal; dropped when saving
        model = SourceAdversary(model, classifier_module(unwrap(model)), len(cfg.data.path), cfg.source_adversary)
        model.to(device)
    strategy = build_strategy(cfg, model, device, info, example)
    optimizer = build_optimizer(cfg.optim, parameter_groups(cfg.optim, model, strategy.parameters()))
    strategy.attach(optimizer)
    scheduler, per_batch = build_scheduler(cfg.optim, optimizer, len(train_dl), cfg.epochs)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp and device.type == "cuda" else None
    ema = None
    if cfg.ema:
        from timm.utils import ModelEmaV3
        ema = ModelEmaV3(model, decay=cfg.ema)

    epoch_opts = EpochOptions(optimizer, loss_fn, to_input, scheduler if per_batch else None, cfg.optim.grad_clip,
                              cfg.amp, scaler, ema, track)
    history: list[dict[str, float]] = []
    best, bad_epochs, start_epoch = float("inf"), 0, 1
    best_path = out / "best.safetensors"
    if cfg.resume:
        history, best, bad_epochs, start_epoch = _resume(Path(cfg.resume), model, optimizer, scheduler, device, best_path)

    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        seed_epoch(train_dl, cfg.seed, epoch)
        tr = strategy.train_one_epoch(train_dl, epoch_opts, len(train_dl))
        eval_model = ema.module if ema is not None else strategy.eval_model()
        logits, labels = strategy.predict(eval_model, val_dl, to_input, cfg.amp, track)
        val_loss = float(nn.functional.cross_entropy(logits, labels)) if len(labels) else float("nan")
        val = compute_metrics(labels.numpy(), softmax_fake(logits.numpy(), 1.0)) if len(labels) else {}
        if scheduler is not None and not per_batch:
            scheduler.step(val_loss) if cfg.optim.schedule == "plateau" else scheduler.step()
        row = {"epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"], "val_loss": val_loss,
               "val_accuracy": val.get("accuracy", float("nan")), "val_roc_auc": val.get("roc_auc") or float("nan"),
               "lr": max(g["lr"] for g in optimizer.param_groups), "train_images_per_s": tr["images_per_s"],
               "seconds": time.perf_counter() - t0}
        history.append(row)
        if info.is_main:
            _write_history(out / "history.csv", history)
        if on_epoch:
            on_epoch(row)
        improved = val_loss < best
        best, bad_epochs = (val_loss, 0) if improved else (best, bad_epochs + 1)
        if info.is_main and (improved or cfg.keep == "last"):
            save_checkpoint(best_path, eval_model, _meta(cfg, pre, counts, val, 1.0))
        if info.is_main and "resume" in strategy.supports:  # sharded optimizer states do not resume
            _save_state(out / "last.pt", model, optimizer, scheduler, epoch, best, history, bad_epochs)
        if bad_epochs >= cfg.patience:
            log.info("early stopping: validation loss has not improved for %d epochs", cfg.patience)
            break
    barrier()
    result = _finish(cfg, pre, counts, history, best_path, val_dl, device) if info.is_main else None
    barrier()  # every rank returns once the final checkpoint is written
    return result or FitResult(best_path, history, {})


def _join(cfg: TrainConfig) -> tuple[TrainConfig, DistInfo]:
    """Check the config, then join the torchrun process group for a parallel strategy (one process without one)."""
    validate(cfg)
    if cfg.strategy != "none" and not in_torchrun_env() and not torch.distributed.is_initialized():
        raise ValueError(f"strategy {cfg.strategy!r} runs under torchrun or with --nproc N")
    info = init_distributed(cfg.device) if cfg.strategy != "none" else DistInfo()
    check_config(cfg, info.world_size)
    return cfg, info


def _finish(cfg: TrainConfig, pre: Preprocess, counts: dict, history: list, best_path: Path,
            val_dl: DataLoader, device: torch.device) -> FitResult:
    """Reload the best weights, fit the temperature on validation logits, and write the final checkpoint."""
    from fakescope.checkpoint import load_checkpoint

    model, _ = load_checkpoint(best_path)
    model.to(device)
    logits, labels = predict_loader(model, val_dl, device, pre.to_tensor, cfg.amp)
    temperature = fit_temperature(logits, labels) if cfg.calibrate and len(labels) else 1.0
    if temperature != 1.0 and (_calibrated_metrics(logits, labels, temperature)["ece"]
                               > _calibrated_metrics(logits, labels, 1.0)["ece"]):
        log.info("temperature %.2f lowers the NLL but not the ECE on this small validation set; keeping 1.0",
                 temperature)
        temperature = 1.0
    if not len(labels):
        threshold, metrics = 0.5, {}
    elif "patch" in patch_info(pre):
        threshold, metrics = _patch_validation(cfg, model, pre, val_dl.dataset.samples, temperature)
    else:
        threshold, held_out = shipped_threshold(cfg, labels.numpy(), softmax_fake(logits.numpy(), temperature),
                                         [s.path for s in val_dl.dataset.samples])
        metrics = _calibrated_metrics(logits, labels, temperature, threshold)
        metrics["fpr_held_out"] = held_out
        metrics["ece_uncalibrated"] = _calibrated_metrics(logits, labels, 1.0)["ece"]
    if metrics:
        metrics["temperature"] = temperature
    meta = _meta(cfg, pre, counts, metrics, temperature, threshold)
    save_checkpoint(best_path, model, meta)
    from fakescope.engine.familiarity import add_familiarity, describable

    detector = get_kind(meta.info.get("kind", SINGLE))(model, meta, str(best_path), device=str(device)) \
        if describable(model, pre) or cfg.copy_move else None
    if describable(model, pre):
        add_familiarity(best_path, folder_splits(cfg), workers=cfg.data.workers, detector=detector,
                        scores=cfg.neighbour_score)
    if (cfg.copy_move or cfg.neighbour_score) and metrics:
        from fakescope.engine.threshold import threshold_final_scores

        threshold_final_scores(best_path, cfg, detector)
        metrics = read_meta(best_path).info["metrics"]
    (Path(cfg.out) / "metrics.json").write_text(json.dumps({"validation": metrics, "counts": counts}, indent=2))
    return FitResult(best_path, history, metrics)
