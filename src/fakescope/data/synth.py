"""Tampered images with exact masks, made from real images: for training tampering detectors on scarce labels.

``splice`` pastes a region of another real image; ``copy-move`` moves a region within the same image. Regions are
random rectangles, ellipses or star-shaped polygons, pasted with hard edges or blended (a Gaussian-feathered
alpha). Output is a layout ``fakescope train`` reads directly::

    OUT/real/NAME.jpg          the source reals, re-encoded by the same pipeline as the fakes
    OUT/fake/NAME.jpg          tampered images
    OUT/masks/NAME_mask.png    white = pixels the tampering changed (discovery skips masks/)
    OUT/manifest.csv           per fake: source, donor, shape, edges, boxes, re-compression

What a mask means: it is computed from the pixels *before* any JPEG step, as ``tampered != source`` on any
channel, so it marks exactly the pixels the tampering changed (with blended edges, the feathered border counts as
long as it changed a value). JPEG output (and the optional re-compression) then alters all pixels of fakes and reals
alike by small amounts; the mask does not mark that. With ``image_format="png"`` and no re-compression the mask
equals the pixel difference between ``fake/NAME.png`` and its source in ``real/``.

Reals and fakes go through the same encoder (format, quality, re-compression probability), so a detector trained
on the output cannot tell them apart by compression history alone.
"""
from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fakescope.data.discovery import iter_image_files
from fakescope.forensics.ela import resave_jpeg
from fakescope.forensics.io import ImageLoadError, load_image

log = logging.getLogger(__name__)

SYNTH_KINDS = ("splice", "copy-move")
SHAPES = ("rectangle", "ellipse", "polygon")
Box = tuple[int, int, int, int]  # top, left, height, width


@dataclass
class SynthConfig:
    kind: str = "splice"
    #: Number of tampered images; None makes one per real image.
    count: int | None = None
    seed: int = 0
    shapes: tuple[str, ...] = SHAPES
    #: Region area as a fraction of the image, drawn uniformly.
    area: tuple[float, float] = (0.02, 0.12)
    #: Probability of blended (feathered) edges instead of hard ones, and the feather's Gaussian sigma in px.
    blend_p: float = 0.5
    feather: tuple[float, float] = (1.0, 4.0)
    #: Probability that an image (real or fake alike) is JPEG-compressed once more at a quality in the range.
    recompress_p: float = 0.0
    recompress_quality: tuple[int, int] = (60, 95)
    #: Output: ``jpg`` at ``quality``, or lossless ``png``.
    image_format: str = "jpg"
    quality: int = 95

    def __post_init__(self) -> None:
        if self.kind not in SYNTH_KINDS:
            raise ValueError(f"kind must be one of {SYNTH_KINDS}, got {self.kind!r}")
        if self.image_format not in ("jpg", "png"):
            raise ValueError(f"image_format must be jpg or png, got {self.image_format!r}")
        unknown = set(self.shapes) - set(SHAPES)
        if unknown or not self.shapes:
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}")


@dataclass
class Tampered:
    image: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # bool (H, W): pixels that differ from the source
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class SynthResult:
    out: Path
    n_real: int
    n_fake: int
    skipped: list[str]


def random_box(height: int, width: int, rng: np.random.Generator, area: tuple[float, float]) -> Box:
    """A box covering a random fraction ``area`` of the image with an aspect ratio in [1/2, 2]."""
    frac = rng.uniform(*area)
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    bh = int(np.clip(round(math.sqrt(frac * height * width / aspect)), 4, height))
    bw = int(np.clip(round(math.sqrt(frac * height * width * aspect)), 4, width))
    return int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1)), bh, bw


def region_alpha(height: int, width: int, shape: str, rng: np.random.Generator, sigma: float = 0.0) -> np.ndarray:
    """Opacity in [0, 1] of a ``shape`` filling a ``height`` x ``width`` box; feathered by ``sigma`` px if > 0."""
    margin = math.ceil(2 * sigma) if sigma > 0 else 0
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    x0, y0, x1, y1 = margin, margin, max(width - 1 - margin, margin), max(height - 1 - margin, margin)
    if shape == "rectangle":
        draw.rectangle((x0, y0, x1, y1), fill=255)
    elif shape == "ellipse":
        draw.ellipse((x0, y0, x1, y1), fill=255)
    else:  # a star-shaped polygon: sorted angles, random radii, so it never self-intersects
        n = int(rng.integers(5, 11))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.5, 1.0, n)
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        draw.polygon([(cx + r * rx * math.cos(a), cy + r * ry * math.sin(a)) for a, r in zip(angles, radii)], fill=255)
    if sigma > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(sigma))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def paste(target: np.ndarray, patch: np.ndarray, alpha: np.ndarray, top: int, left: int) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-composite ``patch`` onto ``target`` at (top, left); returns the image and the exact changed-pixel mask."""
    h, w = alpha.shape
    region = target[top:top + h, left:left + w].astype(np.float32)
    a = alpha[..., None]
    out = target.copy()
    out[top:top + h, left:left + w] = np.clip(np.rint(a * patch.astype(np.float32) + (1 - a) * region), 0, 255)
    return out, (out != target).any(axis=2)


def _shape_and_alpha(bh: int, bw: int, rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, dict]:
    shape = str(rng.choice(list(cfg.shapes)))
    sigma = float(rng.uniform(*cfg.feather)) if rng.random() < cfg.blend_p else 0.0
    return region_alpha(bh, bw, shape, rng, sigma), {"shape": shape, "feather_sigma": round(sigma, 2)}


def splice(target: np.ndarray, donor: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> Tampered:
    """Paste a region of ``donor`` (resized to the target's size) into ``target``."""
    h, w = target.shape[:2]
    if donor.shape[:2] != (h, w):
        donor = np.asarray(Image.fromarray(donor).resize((w, h), Image.Resampling.BICUBIC))
    top, left, bh, bw = random_box(h, w, rng, cfg.area)
    src_top, src_left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    alpha, info = _shape_and_alpha(bh, bw, rng, cfg)
    image, mask = paste(target, donor[src_top:src_top + bh, src_left:src_left + bw], alpha, top, left)
    return Tampered(image, mask, {**info, "box": [top, left, bh, bw], "source_box": [src_top, src_left, bh, bw]})


def copy_move(target: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> Tampered:
    """Copy a region of ``target`` to another place in it, at least half the region's size away."""
    h, w = target.shape[:2]
    src_top, src_left, bh, bw = random_box(h, w, rng, cfg.area)
    for _ in range(20):
        top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        if abs(top - src_top) + abs(left - src_left) >= min(bh, bw) / 2:
            break
    alpha, info = _shape_and_alpha(bh, bw, rng, cfg)
    image, mask = paste(target, target[src_top:src_top + bh, src_left:src_left + bw], alpha, top, left)
    return Tampered(image, mask, {**info, "box": [top, left, bh, bw], "source_box": [src_top, src_left, bh, bw]})


def tamper(target: np.ndarray, donor: np.ndarray | None, rng: np.random.Generator, cfg: SynthConfig,
           attempts: int = 10) -> Tampered | None:
    """One tampered version of ``target``; None if every attempt left the pixels unchanged (e.g. a flat image)."""
    for _ in range(attempts):
        t = splice(target, donor, rng, cfg) if cfg.kind == "splice" else copy_move(target, rng, cfg)
        if t.mask.any():
            return t
    return None


def write_image(arr: np.ndarray, path: Path, cfg: SynthConfig, rng: np.random.Generator) -> int | None:
    """Encode like every other output image (optional extra JPEG round, then the output format); returns that
    extra round's quality, or None."""
    img = Image.fromarray(arr, "RGB")
    extra = None
    if cfg.recompress_p > 0 and rng.random() < cfg.recompress_p:
        extra = int(rng.integers(cfg.recompress_quality[0], cfg.recompress_quality[1] + 1))
        img = resave_jpeg(img, extra)
    img.save(path, **({"quality": cfg.quality} if cfg.image_format == "jpg" else {}))
    return extra


def unique_stems(paths: list[Path]) -> list[str]:
    """File stems, suffixed where two files below different folders share one."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        k = seen.get(p.stem, 0)
        seen[p.stem] = k + 1
        out.append(p.stem if k == 0 else f"{p.stem}_{k}")
    return out


def _target_order(n_reals: int, count: int, rng: np.random.Generator) -> list[int]:
    """Each real once in a seeded order, repeated (reshuffled) until ``count`` targets."""
    order: list[int] = []
    while len(order) < count:
        order.extend(rng.permutation(n_reals).tolist())
    return order[:count]


def _make_one(i: int, reals: list[Path], stems: list[str], t: int, rng: np.random.Generator, cfg: SynthConfig,
              out: Path, written: set[int]) -> dict[str, Any] | None:
    target = np.asarray(load_image(reals[t]))
    donor_idx = None
    donor = None
    if cfg.kind == "splice":
        donor_idx = (t + 1 + int(rng.integers(len(reals) - 1))) % len(reals)
        donor = np.asarray(load_image(reals[donor_idx]))
    result = tamper(target, donor, rng, cfg)
    if result is None:
        log.warning("skipped %s: tampering changed no pixel", reals[t])
        return None
    ext = cfg.image_format
    name = f"{stems[t]}_{cfg.kind.replace('-', '')}_{i:05d}"
    extra = write_image(result.image, out / "fake" / f"{name}.{ext}", cfg, rng)
    Image.fromarray(result.mask.astype(np.uint8) * 255, "L").save(out / "masks" / f"{name}_mask.png")
    if t not in written:
        write_image(target, out / "real" / f"{stems[t]}.{ext}", cfg, rng)
        written.add(t)
    return {"name": f"{name}.{ext}", "kind": cfg.kind, "source": str(reals[t]),
            "donor": "" if donor_idx is None else str(reals[donor_idx]), **result.info,
            "changed_pixels": int(result.mask.sum()), "recompress_quality": extra or ""}


def synthesize(real_dir: str | Path, out: str | Path, cfg: SynthConfig,
               on_item: Callable[[], None] | None = None) -> SynthResult:
    """Write ``cfg.count`` tampered images (and their sources and masks) from the reals below ``real_dir``."""
    reals = list(iter_image_files([real_dir])) if Path(real_dir).is_dir() else []
    if not reals:
        raise FileNotFoundError(f"{real_dir}: no images found")
    if cfg.kind == "splice" and len(reals) < 2:
        raise ValueError("splice needs at least two real images (a target and a donor)")
    out = Path(out)
    for sub in ("real", "fake", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    stems = unique_stems(reals)
    rows, skipped, written = [], [], set()
    for i, t in enumerate(_target_order(len(reals), cfg.count or len(reals), rng)):
        try:
            row = _make_one(i, reals, stems, t, rng, cfg, out, written)
        except ImageLoadError as err:
            row = None
            skipped.append(str(err))
            log.warning("skipped: %s", err)
        if row is not None:
            rows.append(row)
        if on_item:
            on_item()
    _write_manifest(out / "manifest.csv", rows)
    return SynthResult(out, len(written), len(rows), skipped)


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = ["name", "kind", "source", "donor", "shape", "feather_sigma", "box", "source_box", "changed_pixels",
              "recompress_quality"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "box": " ".join(map(str, row["box"])),
                             "source_box": " ".join(map(str, row["source_box"]))})
