"""Explanation views by name: Grad-CAM-style overlays (need a detector) and model-free forensic views."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fakescope.explain.cam import CAM_METHODS, DEFAULT_CAM, ExplainError, cam_heatmap
from fakescope.explain.overlay import colorize, overlay
from fakescope.forensics.copymove import SIZE, copy_move_map, find_copy_move, regions_map
from fakescope.forensics.ela import ela_image, ela_map
from fakescope.forensics.io import ImageLoadError, load_image
from fakescope.forensics.noise import noise_map
from fakescope.progress import track

log = logging.getLogger(__name__)


def ela_view(img: Image.Image, quality: int = 90) -> Image.Image:
    """The classic brightened ELA image: regions edited after the last JPEG save re-compress differently."""
    return ela_image(img, quality)


def noise_view(img: Image.Image) -> Image.Image:
    """The local noise level of the median-filter residual, colour-mapped (bright = noisier than the rest)."""
    return colorize(noise_map(img), "inferno")


#: The copy-move view's shade over the copy and its source, and how strongly it covers them (0..255).
SHADE, SHADE_ALPHA = (255, 64, 0), 110


def copy_move_view(img: Image.Image) -> Image.Image:
    """The image with the copy and its source shaded orange and a line from each matched keypoint to its copy; the
    rest of the image as it is. Pillow only, so the view draws without importing PyTorch."""
    found = find_copy_move(np.asarray(img.convert("RGB")))
    shade = Image.fromarray((regions_map(found, img.width, img.height) * SHADE_ALPHA).astype(np.uint8))
    out = Image.composite(Image.new("RGB", img.size, SHADE), img.convert("RGB"), shade)
    pairs = found.pairs * np.tile([img.width / SIZE, img.height / SIZE], 2)
    draw = ImageDraw.Draw(out)
    for x0, y0, x1, y1 in pairs.tolist():
        draw.line((x0, y0, x1, y1), fill=(255, 255, 0), width=max(1, round(max(img.size) / 400)))
    return out


#: Views that need no model: name -> (float map in [0, 1], picture for people).
MODEL_FREE: dict[str, tuple[Callable[[Image.Image], np.ndarray], Callable[[Image.Image], Image.Image]]] = {
    "ela": (ela_map, ela_view),
    "noise": (noise_map, noise_view),
    "copy-move": (copy_move_map, copy_move_view),
}
METHODS: tuple[str, ...] = (*CAM_METHODS, *MODEL_FREE)


def _check(method: str, detector) -> None:
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if method in CAM_METHODS and detector is None:
        raise ExplainError(f"method {method!r} needs a detector")


def heatmap(img: Image.Image, method: str = DEFAULT_CAM, detector=None) -> np.ndarray:
    """The float map (H, W) in [0, 1] of ``method`` for ``img`` (what localisation is scored on)."""
    _check(method, detector)
    if method in MODEL_FREE:
        return MODEL_FREE[method][0](img)
    return cam_heatmap(detector, img, method)


def explain_image(img: Image.Image, method: str = DEFAULT_CAM, detector=None) -> Image.Image:
    """The picture of ``method`` for ``img``: a CAM overlay on the image, or the model-free view itself."""
    _check(method, detector)
    if method in MODEL_FREE:
        return MODEL_FREE[method][1](img)
    return overlay(img, cam_heatmap(detector, img, method))


@dataclass
class Explained:
    """One input file: where its picture was written, or why it could not be."""

    path: Path
    output: Path | None
    error: str | None = None


def _free_name(out_dir: Path, stem: str, method: str, taken: set[str]) -> Path:
    slug = method.replace("+", "p")
    name, i = f"{stem}_{slug}.png", 1
    while name in taken:
        i += 1
        name = f"{stem}-{i}_{slug}.png"
    taken.add(name)
    return out_dir / name


def explain_files(paths: Iterable[str | Path], method: str, out_dir: str | Path, detector=None) -> list[Explained]:
    """Write ``<stem>_<method>.png`` into ``out_dir`` for every image below ``paths``; errors per file."""
    from fakescope.data.discovery import iter_image_files

    _check(method, detector)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    done = []
    for path in track(iter_image_files(paths), None, method):
        try:
            picture = explain_image(load_image(path), method, detector)
        except (ImageLoadError, ExplainError) as err:
            done.append(Explained(Path(path), None, getattr(err, "reason", str(err))))
            continue
        target = _free_name(out_dir, Path(path).stem, method, taken)
        picture.save(target)
        done.append(Explained(Path(path), target))
    return done
