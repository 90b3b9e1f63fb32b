"""Train a generator on a folder of images: checkpoint, a sample grid per epoch, loss curves (CSV and PNG).

Images are decoded once, centre-cropped to a square and resized to ``size`` px, and kept in memory as uint8
(a few thousand 64 px images take tens of MB), so an epoch is pure compute.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from fakescope.data.discovery import (
    CLASS_NAMES,
    LayoutError,
    discover_samples,
    iter_image_files,
)
from fakescope.engine.loaders import seed_everything
from fakescope.forensics.io import ImageLoadError, load_image
from fakescope.generators.base import ImageGenerator
from fakescope.generators.checkpoint import save_generator
from fakescope.generators.registry import create_generator, get_generator_spec
from fakescope.inference.detector import resolve_device
from fakescope.progress import track

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "generator.safetensors"


@dataclass
class GeneratorTrainConfig:
    model: str = "dcgan"
    data: str = ""
    out: str = "runs/generator"
    epochs: int = 10
    size: int = 64
    batch_size: int = 64
    #: None: the family's default (2e-4 for GANs, 1e-3 for autoencoders).
    lr: float | None = None
    seed: int = 0
    #: Use at most this many images (drawn with the seed); None for all.
    max_images: int | None = None
    flip: bool = True
    #: Images in each epoch's sample grid (the same latent codes every epoch, so epochs compare).
    grid: int = 64
    device: str = "auto"
    #: Factory keyword arguments, e.g. {"width": 32, "latent_dim": 64}.
    model_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 (N, size, size, 3)
    labels: torch.Tensor  # long (N,)
    class_names: list[str]  # [] for unconditional training


@dataclass
class GeneratorTrainResult:
    checkpoint: Path
    history: list[dict[str, float]]
    out: Path


def labelled_files(root: str | Path, conditional: bool) -> tuple[list[Path], list[int], list[str]]:
    """Image files with class indices: none needed unless ``conditional``; then real/fake layouts or sub-folders."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    if not conditional:
        files = list(iter_image_files([root]))
        return files, [0] * len(files), []
    try:
        samples = discover_samples(root)
        return [s.path for s in samples], [s.label for s in samples], list(CLASS_NAMES)
    except LayoutError:
        pass
    classes = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    per_class = [list(iter_image_files([d])) for d in classes]
    named = [(d.name, f) for d, f in zip(classes, per_class) if f]
    if not named:
        raise LayoutError(f"{root}: a conditional model needs labels: real/ + fake/ or one sub-folder per class")
    files = [p for _, fs in named for p in fs]
    labels = [i for i, (_, fs) in enumerate(named) for _ in fs]
    return files, labels, [name for name, _ in named]


def square_array(img: Image.Image, size: int) -> np.ndarray:
    """Centre crop to a square and resize (antialiased) to ``size`` px; uint8 (size, size, 3)."""
    return np.asarray(ImageOps.fit(img.convert("RGB"), (size, size), Image.Resampling.BICUBIC))


def load_training_images(root: str | Path, size: int, conditional: bool = False, max_images: int | None = None,
                         seed: int = 0) -> ImageSet:
    files, labels, class_names = labelled_files(root, conditional)
    if max_images is not None and len(files) > max_images:
        keep = sorted(np.random.default_rng(seed).choice(len(files), max_images, replace=False))
        files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    arrays, kept = [], []
    for path, label in zip(files, labels):
        try:
            arrays.append(square_array(load_image(path), size))
            kept.append(label)
        except ImageLoadError as err:
            log.warning("skipped: %s", err)
    if not arrays:
        raise LayoutError(f"{root}: no readable images")
    return ImageSet(torch.from_numpy(np.stack(arrays)), torch.tensor(kept, dtype=torch.long), class_names)


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1]."""
    return batch.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def run_epoch(model: ImageGenerator, data: ImageSet, optimizers: dict, cfg: GeneratorTrainConfig, epoch: int,
              device: torch.device) -> list[dict[str, float]]:
    """One pass over the images in a seeded order; one row of losses per step."""
    model.train()
    g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    n = len(data.labels)
    order = torch.randperm(n, generator=g)
    rows = []
    for step, start in enumerate(track(range(0, n, cfg.batch_size), -(-n // cfg.batch_size), f"epoch {epoch}")):
        idx = order[start:start + cfg.batch_size]
        if len(idx) < 2:  # BatchNorm cannot train on a single image
            continue
        x = to_model_range(data.images[idx])
        if cfg.flip:
            flip = torch.rand(len(idx), generator=g) < 0.5
            x[flip] = x[flip].flip(-1)
        losses = model.train_step(x.to(device), data.labels[idx].to(device), optimizers)
        rows.append({"epoch": epoch, "step": step, **losses})
    return rows


def write_losses(out: Path, rows: list[dict[str, float]]) -> None:
    """``losses.csv`` (one row per step) and ``losses.png`` (one panel per loss)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[0] if k not in ("epoch", "step")]
    with open(out / "losses.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", *keys])
        writer.writeheader()
        writer.writerows(rows)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot(range(1, len(rows) + 1), [r[key] for r in rows], lw=0.8)
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=100)
    plt.close(fig)


def save_grid(model: ImageGenerator, path: Path, n: int, seed: int) -> None:
    """A grid of ``n`` samples from fixed latent codes (and, for conditional models, labels cycling by row)."""
    from torchvision.utils import save_image

    labels = (torch.arange(n) // 8) % model.num_classes if model.conditional else None
    images = model.sample(n, torch.Generator().manual_seed(seed), labels)
    save_image(images.cpu(), path, nrow=8, normalize=True, value_range=(-1.0, 1.0))


def _epoch_summary(rows: list[dict[str, float]], epoch: int, seconds: float, n_images: int) -> dict[str, float]:
    keys = [k for k in rows[0] if k not in ("epoch", "step")] if rows else []
    means = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return {"epoch": epoch, **means, "seconds": seconds, "images_per_s": n_images / max(seconds, 1e-9)}


def train_generator(cfg: GeneratorTrainConfig,
                    on_epoch: Callable[[dict[str, float]], None] | None = None) -> GeneratorTrainResult:
    """Train ``cfg.model`` on the images below ``cfg.data``; the checkpoint is rewritten after every epoch."""
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    spec = get_generator_spec(cfg.model)
    data = load_training_images(cfg.data, cfg.size, spec.conditional, cfg.max_images, cfg.seed)
    log.info("%d training images at %d px%s", len(data.labels), cfg.size,
             f", classes {data.class_names}" if data.class_names else "")
    kwargs = {**cfg.model_kwargs, "num_classes": max(len(data.class_names), 1)}
    model = create_generator(cfg.model, size=cfg.size, **kwargs).to(device)
    optimizers = model.configure_optimizers(cfg.lr)
    checkpoint = out / CHECKPOINT_NAME
    steps: list[dict[str, float]] = []
    history: list[dict[str, float]] = []
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        rows = run_epoch(model, data, optimizers, cfg, epoch, device)
        history.append(_epoch_summary(rows, epoch, time.perf_counter() - t0, len(data.labels)))
        steps.extend(rows)
        save_grid(model, out / f"samples_epoch{epoch:03d}.png", cfg.grid, cfg.seed)
        if steps:
            write_losses(out, steps)
        save_generator(checkpoint, model, cfg.model, kwargs, data.class_names,
                       {"data": str(cfg.data), "images": len(data.labels), "epochs": epoch, "history": history,
                        "config": asdict(cfg), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if on_epoch:
            on_epoch(history[-1])
    return GeneratorTrainResult(checkpoint, history, out)
