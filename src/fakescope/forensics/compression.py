"""Compression history, read from the pixels and from the file header: the numbers a shortcut is made of.

A dataset whose real and fake images were saved differently (CASIA v1.0: median JPEG quality about 84 for the
authentic photos against 89 for the tampered ones, EXIF on most tampered files only) can be told apart without
looking at what the picture shows. These functions give a model-free baseline those numbers, so that
:mod:`fakescope.evaluation.shortcuts` can measure how much of a dataset's labels they carry, before and after a
shortcut test.

- :func:`jpeg_ghost_curve`: JPEG ghosts (Farid, "Exposing Digital Forgeries From JPEG Ghosts", IEEE TIFS 2009).
  Re-saving at quality q changes an image least near a quality it was already compressed at; the curve of the
  mean difference over q keeps that minimum after a further save at another quality, so one re-save does not
  erase the first compression.
- :func:`blockiness`: the strength of intensity steps on each of the 8 phases of the 8x8 grid, horizontally and
  vertically: where JPEG block boundaries lie and how strong they are.
- :func:`header_numbers`: what the file says without decoding: quantisation table level, EXIF present, size.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from fakescope.forensics.ela import resave_jpeg

#: The qualities of the JPEG ghost curve.
GHOST_QUALITIES = tuple(range(50, 101, 5))
#: The ghost curve and blockiness are computed on a central crop of at most this many pixels a side, taken on the
#: 8x8 grid (offsets are multiples of 8, so block boundaries stay where they were): bounded cost on large photos.
MAX_SIDE = 512
HEADER_NAMES = ("jpeg quantisation mean", "exif present", "width", "height")


def grid_crop(img: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """A central crop of at most ``max_side`` pixels a side whose offsets are multiples of 8."""
    w, h = img.size
    left = max(0, (w - max_side) // 2) // 8 * 8
    top = max(0, (h - max_side) // 2) // 8 * 8
    if left == 0 and top == 0 and w <= max_side and h <= max_side:
        return img
    return img.crop((left, top, min(w, left + max_side), min(h, top + max_side)))


def jpeg_ghost_curve(img: Image.Image, qualities: tuple[int, ...] = GHOST_QUALITIES) -> np.ndarray:
    """Mean absolute difference between ``img`` and its JPEG re-save at each quality, divided by the curve's mean
    (so the shape, not the image's overall texture level, is what is compared). float32, one value per quality."""
    a = np.asarray(img, dtype=np.float32)
    curve = np.array([np.abs(a - np.asarray(resave_jpeg(img, q), dtype=np.float32)).mean() for q in qualities],
                     dtype=np.float32)
    return curve / (curve.mean() + 1e-6)


def blockiness(img: Image.Image) -> np.ndarray:
    """Mean absolute luma step across each of the 8 column phases, then each of the 8 row phases, each divided by
    its direction's mean: 1 everywhere for an image never JPEG-compressed on this grid. float32, 16 values."""
    luma = np.asarray(img, dtype=np.float32).mean(axis=2)
    dx = np.abs(np.diff(luma, axis=1))
    dy = np.abs(np.diff(luma, axis=0))
    px = np.array([dx[:, p::8].mean() for p in range(8)])
    py = np.array([dy[p::8, :].mean() for p in range(8)])
    return np.concatenate([px / (px.mean() + 1e-6), py / (py.mean() + 1e-6)]).astype(np.float32)


def compression_history(img: Image.Image) -> np.ndarray:
    """The pixel-only compression numbers of a decoded RGB image: the JPEG ghost curve, then blockiness (27 values)."""
    if img.width < 9 or img.height < 9:
        raise ValueError(f"image is {img.width}x{img.height}; compression history needs at least 9x9 pixels")
    crop = grid_crop(img.convert("RGB") if img.mode != "RGB" else img)
    return np.concatenate([jpeg_ghost_curve(crop), blockiness(crop)])


def header_numbers(img: Image.Image) -> np.ndarray:
    """(mean of the first JPEG quantisation table, 0 when not a JPEG; EXIF present; width; height) of an image as
    opened from its file, or as re-encoded by a perturbation. float32, 4 values (names in ``HEADER_NAMES``)."""
    tables = getattr(img, "quantization", None) or {}
    first = tables[min(tables)] if tables else None
    return np.array([float(np.mean(first)) if first is not None else 0.0, float(len(img.getexif()) > 0),
                     float(img.width), float(img.height)], dtype=np.float32)
