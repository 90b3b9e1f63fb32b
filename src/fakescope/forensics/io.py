"""Robust image loading: every way a file can be unreadable becomes one clear `ImageLoadError`.

All detectors and views read pixels through :func:`load_image`, so EXIF orientation, exotic modes (16-bit,
CMYK, palette, alpha) and malformed files are handled once.
"""
from __future__ import annotations

import importlib
import io
import os
import re
import stat
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# HEIC/HEIF (iPhone photos) through pillow-heif's libheif; AVIF is Pillow's own plugin (its wheels carry libavif).
pillow_heif.register_heif_opener()

#: Files a folder scan and dataset discovery pick up, and (see :func:`decoder_formats`) the formats any image is decoded as.
#: GIF counts: shared memes and stickers are GIFs; an animated one is scored on its first frame.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif",
                              ".heic", ".heif", ".hif", ".avif"})
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


_SPECIAL_FILES = {stat.S_IFIFO: "a named pipe", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
                  stat.S_IFBLK: "a block device"}


def irregular_file_reason(path: str | Path) -> str | None:
    """``"not a regular file (a named pipe)"`` and the like when ``path`` is a pipe, socket or device, which must
    never be opened: a FIFO blocks until something writes to it, a device may never end. None for a regular file
    or a folder, and when ``path`` cannot be looked at (the opener then says why: missing, permission, ...)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return f"not a regular file ({_SPECIAL_FILES.get(stat.S_IFMT(mode), 'a special file')})"


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


#: What Pillow raises from inside its decoders and ``exif_transpose`` on malformed input besides ``OSError``
#: (found by mutation fuzzing, see tests/test_fuzz.py): all of them mean "this file cannot be decoded".
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, NotImplementedError, AttributeError, TypeError,
                 struct.error, IndexError, KeyError, ZeroDivisionError, OverflowError, RecursionError)
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def decoder_formats() -> tuple[str, ...]:
    """The Pillow formats an image may be decoded as: those of :data:`IMAGE_EXTENSIONS` (read when called, so a
    plugin registered later for one of them, e.g. HEIF, counts). Pillow's other 30-odd formats (EPS through
    Ghostscript, DDS, SPIDER, ...) are never tried on untrusted bytes, nor imported: only the plugins of these
    extensions are (``Image.registered_extensions`` would import all 45, a tenth of a one-image scan's start-up)."""
    for ext in IMAGE_EXTENSIONS:
        if ext not in Image.EXTENSION and ext in _PLUGIN_OF:
            with suppress(ImportError):  # as Pillow's own init(): a plugin whose codec is missing
                importlib.import_module(f"PIL.{_PLUGIN_OF[ext]}")
    return tuple(sorted({Image.EXTENSION[ext] for ext in IMAGE_EXTENSIONS if ext in Image.EXTENSION}))


#: Pillow's plugin module for each of :data:`IMAGE_EXTENSIONS` that Pillow itself decodes (HEIF: pillow-heif).
_PLUGIN_OF = {".jpg": "JpegImagePlugin", ".jpeg": "JpegImagePlugin", ".jpe": "JpegImagePlugin",
              ".png": "PngImagePlugin", ".bmp": "BmpImagePlugin", ".gif": "GifImagePlugin", ".tif": "TiffImagePlugin",
              ".tiff": "TiffImagePlugin", ".webp": "WebPImagePlugin", ".avif": "AvifImagePlugin"}


def _check_pixels(label: str, size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageLoadError(label, f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}")


def _bomb_reason(err: Exception, max_pixels: int) -> str:
    """Pillow's own limit fired (a frame or a size it checks itself): say it in this module's terms."""
    m = _BOMB_PIXELS.search(str(err))
    if m is None:
        return f"decompression bomb refused: {str(err).splitlines()[0]}"
    pixels = int(m.group(1))
    if pixels > max_pixels:
        return f"image is {pixels:,} pixels, over the limit of {max_pixels:,}"
    return f"image is {pixels:,} pixels, over Pillow's decompression bomb limit (PIL.Image.MAX_IMAGE_PIXELS)"


def _decode_reason(err: BaseException, max_pixels: int) -> str:
    """One line for any decoding failure."""
    if isinstance(err, FileNotFoundError):
        return "file does not exist"
    if isinstance(err, IsADirectoryError):
        return "is a directory, not an image file"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, UnidentifiedImageError):
        return f"not a recognised image file (empty, corrupt or not one of {', '.join(decoder_formats())})"
    if isinstance(err, Image.DecompressionBombError):
        return _bomb_reason(err, max_pixels)
    if isinstance(err, MemoryError):
        return "not enough memory to decode the image"
    text = str(err).splitlines()[0].strip() if str(err).strip() else ""
    if "truncated" in text.lower():
        return "cannot decode image: image file is truncated"
    if isinstance(err, (OSError, SyntaxError, ValueError, EOFError)):
        return f"cannot decode image: {text or type(err).__name__}"[:300]
    # A decoder's internal error on malformed bytes (struct.error, TypeError, ...): name it, it helps a bug report.
    kind = type(err).__name__ if type(err).__module__ == "builtins" else f"{type(err).__module__}.{type(err).__name__}"
    return f"cannot decode image: malformed file ({kind}: {text})"[:300]


def squash(img: Image.Image, size: int) -> Image.Image:
    """``img`` resized to ``size`` x ``size`` whatever its shape (bilinear, Pillow's antialiasing): how a detector's
    input, its training mask and the copy-move check's image are all made, so that they line up pixel for pixel."""
    return img.resize((size, size), Image.Resampling.BILINEAR)


def as_rgb(img: Image.Image) -> Image.Image:
    """An image as :func:`load_image` returns it: EXIF orientation applied, any mode as 8-bit RGB. For images
    already in memory (e.g. opened with ``Image.open``), so they score as the same file does in a scan."""
    return _to_rgb(ImageOps.exif_transpose(img) or img)


def _labelled(source: str | Path | bytes | BinaryIO, name: str | None) -> tuple[str, str | Path | BinaryIO]:
    label = name or (str(source) if isinstance(source, (str, Path)) else "<bytes>")
    return label, io.BytesIO(source) if isinstance(source, bytes) else source


@contextmanager
def own_pixel_limit() -> Iterator[None]:
    """Pillow's ``DecompressionBombWarning`` (above ``PIL.Image.MAX_IMAGE_PIXELS``, 89.5 Mpx) silenced, wherever
    fakescope opens an image: its own ``max_pixels`` is the limit that applies, checked from the header. Which
    images are accepted does not change (Pillow's error, at twice its limit, still fires)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


@contextmanager
def _decoding(label: str, max_pixels: int) -> Iterator[None]:
    """Every exception decoding raises becomes one :class:`ImageLoadError`."""
    try:
        with own_pixel_limit(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"PIL\.")  # "Truncated File Read" etc.: the outcome says it
            yield
    except ImageLoadError:
        raise
    except (*DECODE_ERRORS, Image.DecompressionBombError, MemoryError) as err:
        raise ImageLoadError(label, _decode_reason(err, max_pixels)) from None


@contextmanager
def image_header(source: str | Path | bytes | BinaryIO, max_pixels: int = MAX_PIXELS,
                 name: str | None = None) -> Iterator[Image.Image]:
    """The opened image with its pixels not decoded (size, mode, EXIF, quantisation tables, text chunks), for
    reading what a file declares. It opens as :func:`open_image` does (only :func:`decoder_formats`, over
    ``max_pixels`` refused before anything is allocated) and every failure in the block, reading a malformed
    header included, is one :class:`ImageLoadError`."""
    label, source = _labelled(source, name)
    with _decoding(label, max_pixels), Image.open(source, formats=decoder_formats()) as img:
        _check_pixels(label, img.size, max_pixels)
        yield img


def image_size(source: str | Path | bytes | BinaryIO, max_pixels: int = MAX_PIXELS,
               name: str | None = None) -> tuple[int, int]:
    """(width, height) from the header alone, nothing decoded; fails as :func:`open_image` would on the header
    (including over ``max_pixels``). For admitting an image before spending memory on it."""
    with image_header(source, max_pixels, name) as img:
        return img.size


def open_image(source: str | Path | bytes | BinaryIO, max_pixels: int = MAX_PIXELS, name: str | None = None) -> Image.Image:
    """Decode ``source`` fully into an 8-bit RGB image with EXIF orientation applied.

    The one decode function: every failure (missing, unreadable, truncated, malformed, not one of
    :func:`decoder_formats`, over ``max_pixels``) raises :class:`ImageLoadError` with a one-line reason.
    ``max_pixels`` is the limit that applies (Pillow's lower warning level is not used).
    """
    label, source = _labelled(source, name)
    with _decoding(label, max_pixels):
        try:
            return _decode(source, label, max_pixels)
        except ValueError as err:
            # Pillow refuses to inflate a PNG text chunk over its limit (a text bomb, or a huge prompt) and with it
            # the whole image; the pixels do not depend on the text, so they are decoded without it.
            stripped = _without_png_text(source) if "text chunk" in str(err).lower() or "MAX_TEXT" in str(err) else None
            if stripped is None:
                raise
            return _decode(io.BytesIO(stripped), label, max_pixels)


def _decode(source: str | Path | BinaryIO, label: str, max_pixels: int) -> Image.Image:
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with Image.open(source, formats=decoder_formats()) as img:
        _check_pixels(label, img.size, max_pixels)
        img.load()
        img = ImageOps.exif_transpose(img) or img
        return _to_rgb(img)


def _without_png_text(source: str | Path | BinaryIO) -> bytes | None:
    """The PNG's bytes without its tEXt, zTXt and iTXt chunks (None for anything but a PNG)."""
    if isinstance(source, (str, Path)):
        data = Path(source).read_bytes()
    else:
        source.seek(0)
        data = source.read()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    kept, i = [data[:8]], 8
    while i + 12 <= len(data):
        end = i + 12 + int.from_bytes(data[i:i + 4], "big")
        if data[i + 4:i + 8] not in (b"tEXt", b"zTXt", b"iTXt"):
            kept.append(data[i:end])
        i = end
    return b"".join(kept)


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Load an image file as RGB; see :func:`open_image`."""
    path = Path(path)
    irregular = irregular_file_reason(path)
    if irregular is not None:
        raise ImageLoadError(path, irregular)
    try:
        empty = path.is_file() and path.stat().st_size == 0
    except (OSError, ValueError) as err:  # a name too long for the file system, an embedded NUL byte
        raise ImageLoadError(path, _decode_reason(err, max_pixels)) from None
    if empty:
        raise ImageLoadError(path, "file is empty (0 bytes)")
    return open_image(path, max_pixels=max_pixels, name=str(path))
