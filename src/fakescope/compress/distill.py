"""Knowledge distillation (Hinton et al. 2015): a student learns the teacher's softened outputs plus the labels.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, label)

The teacher's logits are computed once per training image (no augmentation), so teacher and student may use
different inputs (an RGB EfficientNet teaching an ELA-CNN) and the teacher runs only once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fakescope import progress
from fakescope.checkpoint import CheckpointMeta, save_checkpoint
from fakescope.compress.report import (
    CompressionResult,
    measure,
    prepare_eval_set,
    split_data,
    subsample,
)
from fakescope.config import OptimConfig
from fakescope.data.cache import default_cache_dir
from fakescope.data.dataset import ImageDataset, collate_skip
from fakescope.data.discovery import Sample
from fakescope.data.preprocess import Preprocess
from fakescope.engine.loaders import seed_everything
from fakescope.engine.loops import Track, _no_track, fit_temperature, predict_loader
from fakescope.engine.optim import build_optimizer
from fakescope.inference.detector import Detector, shipped_weights
from fakescope.inference.kinds.single import SingleDetector
from fakescope.registry import create_detector

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class DistillConfig:
    teacher: str
    student: str
    data: list[str] = field(default_factory=list)
    out: str = "distilled.safetensors"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    temperature: float = 4.0
    alpha: float = 0.7
    #: Student input size and mode (default: the student's registered preprocessing).
    size: int | None = None
    input_mode: str | None = None
    pretrained: bool | str = False
    val_fraction: float = 0.2
    max_per_class: int | None = None
    eval_samples: int | None = 400
    workers: int = 0
    seed: int = 0


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    """KL divergence between the softened distributions, scaled by T^2 so its gradients keep their size as T
    changes, mixed with the ordinary cross-entropy on the labels."""
    soft = F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                    reduction="batchmean", log_target=True) * temperature ** 2
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student, labels)


class _Indexed(Dataset):
    """``(array, index)`` per sample, so each batch can be matched with its precomputed teacher logits."""

    def __init__(self, samples: list[Sample], pre: Preprocess):
        self.inner = ImageDataset(samples, pre, None, default_cache_dir())

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        item = self.inner[i]
        return None if item is None else (item[0], i)


def teacher_logits(teacher: Detector, samples: list[Sample], batch_size: int, workers: int) -> torch.Tensor:
    """Raw (untempered) teacher logits per sample; NaN rows for unreadable files."""
    out = torch.full((len(samples), 2), float("nan"))
    loader = DataLoader(_Indexed(samples, teacher.preprocess), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_skip)
    for batch in progress.track(loader, len(loader), "teacher"):
        if batch is not None:
            arrays, idx = batch
            out[idx] = teacher.logits(arrays.numpy())
    return out


def distill_epoch(student: nn.Module, loader: DataLoader, targets: torch.Tensor, labels: torch.Tensor,
                  optimizer: torch.optim.Optimizer, pre: Preprocess, cfg: DistillConfig, track: Track) -> float:
    student.train()
    total, seen = 0.0, 0
    for batch in track(loader, len(loader), "distill"):
        if batch is None:
            continue
        arrays, idx = batch
        keep = ~torch.isnan(targets[idx]).any(1)  # the teacher could not read it either
        if not keep.any():
            continue
        logits = student(pre.to_tensor(arrays[keep]))
        loss = distillation_loss(logits, targets[idx][keep], labels[idx][keep], cfg.temperature, cfg.alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * int(keep.sum())
        seen += int(keep.sum())
    return total / max(seen, 1)


def distill(cfg: DistillConfig, track: Track = _no_track) -> CompressionResult:
    """Train ``cfg.student`` on ``cfg.data``'s training split to match ``cfg.teacher``; calibrate on the
    validation split, save a normal checkpoint, and report teacher (before) against student (after)."""
    seed_everything(cfg.seed)
    teacher = Detector.load(cfg.teacher, device="cpu")
    student, pre = create_detector(cfg.student, input_mode=cfg.input_mode, size=cfg.size, pretrained=cfg.pretrained)
    train, val = split_data(cfg.data, cfg.val_fraction, cfg.seed)
    train = subsample(train, cfg.max_per_class and 2 * cfg.max_per_class, cfg.seed)
    targets = teacher_logits(teacher, train, cfg.batch_size, cfg.workers)
    labels = torch.tensor([s.label for s in train])
    loader = DataLoader(_Indexed(train, pre), batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.workers,
                        collate_fn=collate_skip, generator=torch.Generator().manual_seed(cfg.seed))
    optimizer = build_optimizer(OptimConfig(name="adam", lr=cfg.lr), student.parameters())
    for epoch in range(cfg.epochs):
        loss = distill_epoch(student, loader, targets, labels, optimizer, pre, cfg, track)
        log.info("distill epoch %d: loss %.4f", epoch + 1, loss)
    student.eval()
    val_dl = DataLoader(ImageDataset(val, pre, None, default_cache_dir()), batch_size=cfg.batch_size,
                        num_workers=cfg.workers, collate_fn=collate_skip)
    logits, val_labels = predict_loader(student, val_dl, torch.device("cpu"), pre.to_tensor)
    temperature = fit_temperature(logits, val_labels) if len(val_labels) else 1.0
    info = {"compression": {"method": "distillation", "teacher": cfg.teacher, "temperature": cfg.temperature,
                            "alpha": cfg.alpha, "epochs": cfg.epochs, "data": [str(d) for d in cfg.data]}}
    meta = CheckpointMeta(cfg.student, pre, temperature=temperature, info=info)
    path = save_checkpoint(cfg.out, student, meta)
    after = SingleDetector(student, meta, str(path), device="cpu")
    val = subsample(val, cfg.eval_samples, cfg.seed)
    teacher_path = Path(cfg.teacher) if Path(cfg.teacher).is_file() else shipped_weights(teacher.name)
    rows = [measure(f"teacher {teacher.meta.architecture}", teacher, prepare_eval_set(val, teacher.preprocess), teacher_path),
            measure(f"student {cfg.student}", after, prepare_eval_set(val, pre), path)]
    return CompressionResult(path, rows)
