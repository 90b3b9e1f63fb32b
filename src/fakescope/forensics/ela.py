"""Error Level Analysis (ELA): re-save as JPEG, take the difference, stretch it.

Regions that were pasted in or edited after the last JPEG save re-compress differently from the rest of the
image, so they stand out in the difference. Each step is a separate function so that it can be tested and
reused (the classic ELA-CNN input, the report's ELA map).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageChops

from fakescope.forensics.io import own_pixel_limit


def _rgb(img: Image.Image) -> Image.Image:
    """``img`` as RGB, without the copy ``convert`` makes of an image that already is."""
    return img if img.mode == "RGB" else img.convert("RGB")


def resave_jpeg(img: Image.Image, quality: int = 90) -> Image.Image:
    """Encode ``img`` as JPEG at ``quality`` in memory and decode it again."""
    buf = io.BytesIO()
    _rgb(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with own_pixel_limit():
        out = Image.open(buf)  # in memory: nothing to close, and a closed image could not be returned
    out.load()
    return _rgb(out)


def ela_difference(img: Image.Image, quality: int = 90) -> Image.Image:
    """Absolute per-pixel difference between ``img`` and its JPEG re-save at ``quality``."""
    rgb = _rgb(img)
    return ImageChops.difference(rgb, resave_jpeg(rgb, quality))


def scale_contrast(diff: Image.Image) -> Image.Image:
    """Stretch so that the largest difference becomes 255 (the classic ELA brightening)."""
    # NumPy's max over the pixel buffer: cheaper than Image.getextrema, which computes every band's minimum too.
    max_diff = int(np.asarray(diff).max()) or 1
    scale = 255.0 / max_diff
    # A 256-entry lookup table: the same float32 arithmetic, once per value instead of once per pixel
    # (docs/benchmarks/speed.md, "Throughput", times the ELA preparation).
    lut = np.clip(np.arange(256, dtype=np.float32) * scale + 0.5, 0, 255).astype(np.uint8)
    return diff.point(lut.tolist() * len(diff.getbands()))


def to_grayscale(img: Image.Image) -> Image.Image:
    """Luma, replicated to three channels so the detector's input shape does not change."""
    return img.convert("L").convert("RGB")


def reduce_bit_depth(img: Image.Image, bits: int) -> Image.Image:
    """Keep the ``bits`` most significant bits of each channel (8 keeps the image unchanged)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    if bits == 8:
        return img
    mask = (0xFF << (8 - bits)) & 0xFF
    return Image.fromarray(np.asarray(img) & np.uint8(mask), mode=img.mode)


def ela_image(img: Image.Image, quality: int = 90, grayscale: bool = False, bits: int = 8) -> Image.Image:
    """The full-resolution ELA image: re-save, difference, contrast scaling, optional grayscale and bit reduction."""
    out = scale_contrast(ela_difference(img, quality))
    if grayscale:
        out = to_grayscale(out)
    return reduce_bit_depth(out, bits)


def ela_map(img: Image.Image, quality: int = 90) -> np.ndarray:
    """A single-channel float map in [0, 1] for display and localisation: the per-pixel max over channels."""
    diff = np.asarray(scale_contrast(ela_difference(img, quality)), dtype=np.float32)
    return diff.max(axis=2) / 255.0
