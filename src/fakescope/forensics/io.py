"""Robust image loading: every way a file can be unreadable becomes one clear `ImageLoadError`.

All detectors and views read pixels through :func:`load_image`, so EXIF orientation, exotic modes (16-bit,
CMYK, palette, alpha) and malformed files are handled once.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

#: Files a folder scan and dataset discovery pick up (an explicitly named file of another format is tried anyway).
#: GIF counts: shared memes and stickers are GIFs; an animated one is scored on its first frame.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
#: Default pixel limit (width x height); larger images are refused instead of exhausting memory.
MAX_PIXELS = 100_000_000


class MediaLoadError(Exception):
    """A file could not be read. ``str(err)`` is one line naming the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageLoadError(MediaLoadError):
    """A file could not be read as an image."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _white_level(img: Image.Image, arr: np.ndarray) -> float:
    """The value of white in a high-bit-depth image: 65535 for 16-bit modes, ``2**bits - 1`` when a TIFF declares
    9 to 16 bits per sample (10/12/14-bit camera TIFFs), 1.0 for float images within 0..1; otherwise 65535 when
    any value exceeds 255, else 255."""
    if img.mode.startswith("I;16"):
        return 65535.0
    bits = getattr(img, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    bits = bits[0] if isinstance(bits, tuple) else bits
    if isinstance(bits, int) and 8 < bits <= 16:
        return float(2**bits - 1)
    top = float(arr.max()) if arr.size else 0.0
    if img.mode == "F" and top <= 1.0:
        return 1.0
    return 65535.0 if top > 255 else 255.0


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB without clipping high bit depths or dropping alpha badly."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        hi = _white_level(img, arr)
        arr8 = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Composite on white: transparent pixels have no colour of their own, white is what viewers show.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def open_image(source: str | Path | bytes | BinaryIO, max_pixels: int = MAX_PIXELS, name: str | None = None) -> Image.Image:
    """Decode ``source`` fully into an 8-bit RGB image with EXIF orientation applied.

    Raises :class:`ImageLoadError` for missing, unreadable, truncated, non-image or oversized input.
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "<bytes>")
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            with Image.open(source) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageLoadError(label, f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}")
                img.load()
                img = ImageOps.exif_transpose(img) or img
                return _to_rgb(img)
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(label, "file does not exist") from None
    except IsADirectoryError:
        raise ImageLoadError(label, "is a directory, not an image file") from None
    except PermissionError:
        raise ImageLoadError(label, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageLoadError(label, "not a recognised image file (empty, corrupt or another format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageLoadError(label, f"decompression bomb refused: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "truncated" in reason.lower():
            reason = "image file is truncated"
        raise ImageLoadError(label, f"cannot decode image: {reason}") from None


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Load an image file as RGB; see :func:`open_image`."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ImageLoadError(path, "file is empty (0 bytes)")
    return open_image(path, max_pixels=max_pixels, name=str(path))
