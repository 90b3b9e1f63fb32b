"""Write images from a generator checkpoint; the same seed gives the same files."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fakescope.generators.checkpoint import load_generator
from fakescope.inference.detector import resolve_device

log = logging.getLogger(__name__)

IMAGE_FORMATS = ("png", "jpg")


def resolve_label(label: str | int | None, class_names: list[str], conditional: bool) -> int | None:
    """A class name or index -> index; None lets a conditional model draw labels at random."""
    if label is None:
        return None
    if not conditional:
        raise ValueError("this generator is not conditional; --label needs a cgan checkpoint")
    text = str(label)
    if text in class_names:
        return class_names.index(text)
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    raise ValueError(f"unknown label {text!r}; this generator knows {class_names}")


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Float (N, 3, H, W) in [-1, 1] -> RGB images."""
    arrays = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a), "RGB") for a in arrays]


def generate_images(checkpoint: str | Path, num_images: int, out: str | Path, *, seed: int = 0,
                    label: str | int | None = None, batch_size: int = 64, image_format: str = "png",
                    quality: int = 95, resize: int | None = None, prefix: str = "gen",
                    device: str = "cpu") -> list[Path]:
    """Sample ``num_images`` images into ``out``.

    ``resize`` (bicubic) and ``image_format="jpg"`` at ``quality`` let generated images match the resolution and
    compression of the real images they will be mixed with, so a detector trained on both cannot learn the file
    format instead of the generator.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}")
    model, meta = load_generator(checkpoint)
    model.to(resolve_device(device))
    label_idx = resolve_label(label, meta.class_names, model.conditional)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    tag = "" if label_idx is None else f"{meta.class_names[label_idx]}_"
    written: list[Path] = []
    for start in range(0, num_images, batch_size):
        k = min(batch_size, num_images - start)
        for i, img in enumerate(to_pil(model.sample(k, g, label_idx)), start):
            if resize:
                img = img.resize((resize, resize), Image.Resampling.BICUBIC)
            path = out / f"{prefix}_{tag}{i:05d}.{image_format}"
            img.save(path, **({"quality": quality} if image_format == "jpg" else {}))
            written.append(path)
    log.info("wrote %d images from %s (%s) to %s", len(written), checkpoint, meta.architecture, out)
    return written
