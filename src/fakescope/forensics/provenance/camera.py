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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, JpegPresets

from fakescope.forensics.io import image_header

#: ITU-T T.81 Annex K tables K.1 (luminance) and K.2 (chrominance), natural order, as libjpeg's jcparam.c has them.
ANNEX_K_LUMINANCE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                     92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
ANNEX_K_CHROMINANCE = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                       47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32
#: Correlation of grey levels (at thumbnail size) below which the thumbnail does not show this image.
THUMBNAIL_CORRELATION = 0.8
#: Pixels an EXIF thumbnail may declare before it is decoded: the standard's is 160 x 120, and the 64 KB EXIF block
#: can hide a header declaring a hundred million (allocated before the data runs out).
THUMB_MAX_PIXELS = 1_000_000
#: Relative aspect-ratio difference within which the thumbnail shows the whole picture without bars.
ASPECT_TOLERANCE = 0.04
#: Mean grey level (0..255) under which the strips beside the picture count as the black bars cameras add.
BAR_LEVEL = 24.0
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
    thumbnail_correlation: float | None = None
    """Correlation (-1..1) of the thumbnail's grey levels with the image shrunk to its size (None: the aspect
    ratios differ, so the thumbnail shows another framing)."""
    jpeg_encoder: str | None = None
    """The encoder whose quantisation tables the JPEG uses, when they match one exactly (``libjpeg quality 90``,
    ``Adobe Photoshop (high)``); None for tables in neither group (most camera and phone firmware)."""
    jpeg_quality: int | None = None
    """The libjpeg quality whose luminance table is closest (an estimate unless jpeg_encoder names libjpeg)."""

    @property
    def present(self) -> bool:
        return bool(self.make or self.model)

    @property
    def device(self) -> str | None:
        """The device EXIF names: ``Apple iPhone 4``, or the model alone when it already starts with the make
        (``Canon EOS 5D``, not ``Canon Canon EOS 5D``); None without either."""
        if self.make and self.model and self.model.startswith(self.make):
            return self.model
        return " ".join(v for v in (self.make, self.model) if v) or None


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


def _gray(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """``img`` as grey levels at ``size``: reduced by whole factors first (one cheap pass over the pixels)."""
    factor = max(1, min(img.width // size[0], img.height // size[1]))
    small = img.reduce(factor) if factor > 1 else img
    return np.asarray(small.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float32)


def _content(thumb: np.ndarray, aspect: float) -> np.ndarray | None:
    """The part of the thumbnail that shows a picture of ``aspect`` (width / height): all of it when the aspects
    agree, else the centre between black bars (a 3:2 photo in a 4:3 thumbnail); None when the aspects differ and
    there are no bars (a crop, or a rotation the thumbnail did not follow)."""
    h, w = thumb.shape
    gap = (w / h) / aspect - 1
    if abs(gap) <= ASPECT_TOLERANCE:
        return thumb
    if gap < 0:  # a wider picture: bars above and below
        keep = round(w / aspect)
        lo = (h - keep) // 2
        inner, bars = thumb[lo:lo + keep], np.concatenate([thumb[:lo], thumb[lo + keep:]])
    else:  # a taller picture: bars left and right
        keep = round(h * aspect)
        lo = (w - keep) // 2
        inner, bars = thumb[:, lo:lo + keep], np.concatenate([thumb[:, :lo], thumb[:, lo + keep:]], axis=1)
    return inner if bars.size and bars.mean() < BAR_LEVEL and min(inner.shape) >= 8 else None


def thumbnail_check(img: Image.Image, data: bytes, decoded: Image.Image | None = None) -> tuple[str | None, float | None]:
    """(``consistent``/``inconsistent``, correlation) of a JPEG's EXIF thumbnail with its pixels.

    ``decoded``: the image already decoded with its EXIF orientation applied (as a scan has it); the thumbnail is
    turned the same way. Without it the JPEG is decoded at reduced size (libjpeg's DCT scaling, ``draft``) in
    stored orientation. Both are compared in grey at the thumbnail's size by correlation, which tolerates the
    camera's own tone and sharpening differences between the two."""
    thumb_bytes = _thumbnail_bytes(img)
    if thumb_bytes is None or img.format != "JPEG":
        return None, None
    with image_header(thumb_bytes, THUMB_MAX_PIXELS, name="EXIF thumbnail") as t:
        if decoded is not None:
            t.getexif()[ORIENTATION] = img.getexif().get(ORIENTATION, 1)
            t = ImageOps.exif_transpose(t)
        thumb = np.asarray(t.convert("L"), dtype=np.float32)
    if decoded is not None:
        return _thumbnail_verdict(thumb, decoded)
    with image_header(data) as full:  # the file's own bounds; then decoded at reduced size
        full.draft("L", (thumb.shape[1], thumb.shape[0]))
        return _thumbnail_verdict(thumb, full)


def _thumbnail_verdict(thumb: np.ndarray, decoded: Image.Image) -> tuple[str, float | None]:
    inner = _content(thumb, decoded.width / decoded.height)
    if inner is None:
        return "inconsistent", None
    a = _gray(decoded, (inner.shape[1], inner.shape[0])).ravel()
    a, b = a - a.mean(), inner.ravel() - inner.mean()
    corr = float(a @ b / np.sqrt((a @ a) * (b @ b))) if (a @ a) * (b @ b) > 0 else 0.0
    return ("consistent" if corr >= THUMBNAIL_CORRELATION else "inconsistent"), round(corr, 3)


def camera_evidence(img: Image.Image, data: bytes, decoded: Image.Image | None = None) -> CameraEvidence | None:
    """EXIF fields, thumbnail check and encoder match of an opened image whose file bytes are ``data`` (None when
    there is none of them); ``decoded``: its pixels, if already decoded (see :func:`thumbnail_check`)."""
    exif = img.getexif()
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    lens = " ".join(v for v in (clean_text(sub.get(LENS_MAKE)), clean_text(sub.get(LENS_MODEL))) if v) or None
    found = CameraEvidence(make=clean_text(exif.get(MAKE)), model=clean_text(exif.get(MODEL)), lens=lens,
                           taken_at=clean_text(sub.get(DATETIME_ORIGINAL)), software=clean_text(exif.get(SOFTWARE)))
    if img.format == "JPEG":
        found.jpeg_encoder, found.jpeg_quality = match_encoder(getattr(img, "quantization", None) or {})
        found.thumbnail, found.thumbnail_correlation = thumbnail_check(img, data, decoded)
    return found if any(v is not None for v in asdict(found).values()) else None


def exif_texts(img: Image.Image) -> dict[str, str]:
    """EXIF text fields that generators write settings or their name into (UserComment, ImageDescription)."""
    exif = img.getexif()
    texts = {"UserComment": user_comment(exif.get_ifd(ExifTags.IFD.Exif).get(USER_COMMENT)),
             "ImageDescription": clean_text(exif.get(DESCRIPTION))}
    return {k: v for k, v in texts.items() if v}
