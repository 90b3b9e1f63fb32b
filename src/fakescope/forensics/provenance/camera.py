"""Camera evidence: EXIF make, model, lens and dates, the embedded thumbnail against the image, and the JPEG
quantisation tables matched to known encoders.

A camera writes a small JPEG thumbnail into EXIF (IFD1) when it takes the picture; an editor that changes the
pixels but copies the EXIF block leaves the old thumbnail behind. The quantisation tables say which encoder wrote
the JPEG: libjpeg (and libjpeg-turbo, Pillow, most web software) scales the tables of the JPEG standard's Annex K
by the IJG formula, so ``quality N`` is recognised exactly; Adobe Photoshop uses its own tables (Pillow ships them
as ``PIL.JpegPresets``); camera and phone firmware use tables of their own, which fall in neither group.
"""
from __future__ import annotations

import functools
import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import ExifTags, Image, JpegPresets

#: ITU-T T.81 Annex K tables K.1 (luminance) and K.2 (chrominance), natural order, as libjpeg's jcparam.c has them.
ANNEX_K_LUMINANCE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                     92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
ANNEX_K_CHROMINANCE = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                       47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32
#: Mean absolute difference (0..255, at thumbnail size) above which the thumbnail does not show this image.
THUMBNAIL_TOLERANCE = 12.0
#: Relative aspect-ratio difference above which the thumbnail does not show this image (a crop).
ASPECT_TOLERANCE = 0.04
#: EXIF tags (TIFF/EXIF 2.32) read here.
MAKE, MODEL, SOFTWARE, DATETIME, DESCRIPTION, ORIENTATION = 271, 272, 305, 306, 270, 274
DATETIME_ORIGINAL, USER_COMMENT, LENS_MAKE, LENS_MODEL = 36867, 37510, 42035, 42036
THUMB_OFFSET, THUMB_LENGTH = 513, 514


@dataclass
class CameraEvidence:
    """What EXIF and the JPEG encoding say about the device and software that made the file."""

    __pydantic_config__ = {"use_attribute_docstrings": True}
    make: str | None = None
    """EXIF Make."""
    model: str | None = None
    """EXIF Model."""
    lens: str | None = None
    """EXIF LensMake and LensModel."""
    taken_at: str | None = None
    """EXIF DateTimeOriginal (when the picture was taken, by the camera's clock)."""
    software: str | None = None
    """EXIF Software: the firmware or application that wrote the file."""
    thumbnail: str | None = None
    """``consistent`` or ``inconsistent`` with the image (None: no EXIF thumbnail, or not a JPEG)."""
    thumbnail_difference: float | None = None
    """Mean absolute difference (0..255) between the thumbnail and the image shrunk to its size."""
    jpeg_encoder: str | None = None
    """The encoder whose quantisation tables the JPEG uses, when they match one exactly (``libjpeg quality 90``,
    ``Adobe Photoshop (high)``); None for tables in neither group (most camera and phone firmware)."""
    jpeg_quality: int | None = None
    """The libjpeg quality whose luminance table is closest (an estimate unless jpeg_encoder names libjpeg)."""

    @property
    def present(self) -> bool:
        return bool(self.make or self.model)


def clean_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def user_comment(raw: Any) -> str | None:
    """EXIF UserComment: 8 bytes naming the character code, then the text (A1111 writes UTF-16 as ``UNICODE``)."""
    if not isinstance(raw, bytes) or len(raw) < 8:
        return clean_text(raw)
    code, body = raw[:8], raw[8:]
    if code.startswith(b"UNICODE"):
        # Big-endian unless the first characters are ASCII with their zero byte second.
        big = not (len(body) > 1 and body[1] == 0 and body[0] != 0)
        return clean_text(body.decode("utf-16-be" if big else "utf-16-le", "replace"))
    return clean_text(body.decode("utf-8" if code.startswith(b"ASCII") or code == b"\0" * 8 else "latin-1", "replace"))


@functools.lru_cache(maxsize=1)
def ijg_tables() -> np.ndarray:
    """libjpeg's tables for quality 1..100 (jcparam.c: jpeg_quality_scaling, baseline): shape (100, 2, 64), row
    ``q - 1`` holding (luminance, chrominance)."""
    q = np.arange(1, 101)[:, None, None]
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    base = np.array([ANNEX_K_LUMINANCE, ANNEX_K_CHROMINANCE])[None]
    return np.clip((base * scale + 50) // 100, 1, 255)


def _same(reference: np.ndarray, table: np.ndarray) -> Any:
    return (reference == table).all(axis=-1)


def match_encoder(tables: dict[int, Any]) -> tuple[str | None, int | None]:
    """(encoder whose tables these are exactly, nearest libjpeg quality) for Pillow's ``img.quantization``."""
    lum = np.asarray(tables.get(0, ()), dtype=np.int64)
    if lum.shape != (64,):
        return None, None
    chrom = np.asarray(tables[1], dtype=np.int64) if 1 in tables else None
    chrom = chrom if chrom is not None and chrom.shape == (64,) else None
    ijg = ijg_tables()
    nearest = int(np.abs(ijg[:, 0] - lum).sum(axis=1).argmin()) + 1
    same = _same(ijg[:, 0], lum) & (_same(ijg[:, 1], chrom) if chrom is not None else True)
    if same.any():
        q = int(same.argmax()) + 1
        return f"libjpeg quality {q}", q
    for name, preset in JpegPresets.presets.items():
        ps = np.asarray(preset["quantization"])
        if _same(ps[0], lum) and (chrom is None or _same(ps[1], chrom)):
            return f"Adobe Photoshop ({name})", nearest
    return None, nearest


def _thumbnail_bytes(img: Image.Image) -> bytes | None:
    exif = img.getexif()
    ifd1 = exif.get_ifd(ExifTags.IFD.IFD1)
    offset, length = ifd1.get(THUMB_OFFSET), ifd1.get(THUMB_LENGTH)
    raw = img.info.get("exif") or b""
    raw = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    if not isinstance(offset, int) or not isinstance(length, int) or not 0 < offset < offset + length <= len(raw):
        return None
    data = raw[offset:offset + length]
    return data if data.startswith(b"\xff\xd8") else None


def _trim_bars(gray: np.ndarray) -> np.ndarray:
    """Drop the black bars a camera adds to fit a 3:2 picture in a 4:3 (160x120) thumbnail."""
    rows, cols = np.where(gray.max(axis=1) > 16)[0], np.where(gray.max(axis=0) > 16)[0]
    if len(rows) < 4 or len(cols) < 4:
        return gray
    return gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def thumbnail_check(img: Image.Image, data: bytes) -> tuple[str | None, float | None]:
    """(``consistent``/``inconsistent``, mean abs difference) of a JPEG's EXIF thumbnail against its pixels.

    The image is decoded at reduced size (libjpeg's DCT scaling, ``draft``), so the check costs a fraction of a
    full decode; both are compared in stored orientation (the thumbnail is not rotated either)."""
    thumb_bytes = _thumbnail_bytes(img)
    if thumb_bytes is None or img.format != "JPEG":
        return None, None
    with Image.open(io.BytesIO(thumb_bytes)) as t:
        thumb = _trim_bars(np.asarray(t.convert("L"), dtype=np.float32))
    with Image.open(io.BytesIO(data)) as main:
        main.draft("L", (thumb.shape[1], thumb.shape[0]))
        w, h = main.size
        small = main.convert("L").resize((thumb.shape[1], thumb.shape[0]), Image.Resampling.BOX)
    aspect_gap = abs((w / h) / (thumb.shape[1] / thumb.shape[0]) - 1)
    diff = float(np.abs(np.asarray(small, dtype=np.float32) - thumb).mean())
    ok = aspect_gap <= ASPECT_TOLERANCE and diff <= THUMBNAIL_TOLERANCE
    return ("consistent" if ok else "inconsistent"), round(diff, 2)


def camera_evidence(img: Image.Image, data: bytes) -> CameraEvidence | None:
    """EXIF fields, thumbnail check and encoder match of an opened image whose file bytes are ``data`` (None when
    there is none of them)."""
    exif = img.getexif()
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    lens = " ".join(v for v in (clean_text(sub.get(LENS_MAKE)), clean_text(sub.get(LENS_MODEL))) if v) or None
    found = CameraEvidence(make=clean_text(exif.get(MAKE)), model=clean_text(exif.get(MODEL)), lens=lens,
                           taken_at=clean_text(sub.get(DATETIME_ORIGINAL)), software=clean_text(exif.get(SOFTWARE)))
    if img.format == "JPEG":
        found.jpeg_encoder, found.jpeg_quality = match_encoder(getattr(img, "quantization", None) or {})
        found.thumbnail, found.thumbnail_difference = thumbnail_check(img, data)
    return found if any(v is not None for v in asdict(found).values()) else None


def exif_texts(img: Image.Image) -> dict[str, str]:
    """EXIF text fields that generators write settings or their name into (UserComment, ImageDescription)."""
    exif = img.getexif()
    texts = {"UserComment": user_comment(exif.get_ifd(ExifTags.IFD.Exif).get(USER_COMMENT)),
             "ImageDescription": clean_text(exif.get(DESCRIPTION))}
    return {k: v for k, v in texts.items() if v}
