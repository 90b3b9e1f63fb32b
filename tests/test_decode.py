"""Issue 33, decoding: every way Pillow fails on malformed bytes is one ImageLoadError, only the formats fakescope
reads are tried, and fakescope's pixel limit (not Pillow's) is the one that applies."""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import make_image
from PIL import Image, ImageOps

from fakescope.forensics import io as fio
from fakescope.forensics.io import MAX_PIXELS, ImageLoadError, load_image, open_image

#: The reproducers of issue 33 (copied from ../shared/fixtures/malformed) and what bench/fuzz.py found since.
MALFORMED = Path(__file__).parent / "fixtures" / "malformed"
REPRODUCERS = sorted(MALFORMED.glob("*.bin"))


def one_line_error(path: Path, **kwargs) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(path, **kwargs)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")
    return info.value


def png_header(width: int, height: int) -> bytes:
    """A grey PNG declaring ``width`` x ``height`` with almost no pixel data (cheap to open, huge to decode)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(width + 1)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("path", REPRODUCERS, ids=lambda p: p.name)
def test_reproducers_are_one_line_errors(path: Path) -> None:
    one_line_error(path)


@pytest.mark.parametrize("name", ["DDS_NotImplementedError.bin", "SPIDER_AttributeError.bin"])
def test_other_pillow_formats_are_not_tried(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "not a recognised image file" in one_line_error(MALFORMED / name).reason
    # and were they allowed, their decoders' own exceptions would still be one line naming the kind
    monkeypatch.setattr(fio, "decoder_formats", lambda: ("DDS", "SPIDER"))
    assert name.split("_")[1].removesuffix(".bin") in one_line_error(MALFORMED / name).reason


def test_formats_follow_the_extensions_fakescope_reads(tmp_path: Path) -> None:
    assert set(fio.decoder_formats()) >= {"JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"}
    assert not {"EPS", "DDS", "SPIDER", "PPM"} & set(fio.decoder_formats())
    make_image((16, 16)).save(tmp_path / "a.ppm")
    assert "not a recognised image file" in one_line_error(tmp_path / "a.ppm").reason


def test_decoder_formats_import_only_their_plugins_and_match_pillows_full_registry() -> None:
    """Start-up: the formats come without importing Pillow's 45 plugins, and equal what the full registry says."""
    code = ("import sys\n"
            "from fakescope.forensics.io import decoder_formats\n"
            "mine = decoder_formats()\n"
            "from PIL import Image\n"
            "others = sorted(m for m in ('PIL.EpsImagePlugin', 'PIL.PdfImagePlugin', 'PIL.DdsImagePlugin') if m in sys.modules)\n"
            "print(mine == tuple(sorted({Image.registered_extensions()[e] for e in __import__('fakescope.forensics.io', "
            "fromlist=['x']).IMAGE_EXTENSIONS if e in Image.registered_extensions()})), others)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "[]"]


@pytest.mark.parametrize("kind", [NotImplementedError, AttributeError, TypeError, struct.error, IndexError, KeyError])
def test_exceptions_from_exif_transpose_are_one_line(kind: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_image((16, 16)).save(tmp_path / "a.jpg")

    def broken(img: Image.Image, **kwargs):
        raise kind("bad EXIF\nsecond line")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    assert kind.__name__ in one_line_error(tmp_path / "a.jpg").reason


def test_the_project_pixel_limit_fires_not_pillows(tmp_path: Path) -> None:
    """Pillow warns over 89.5 Mpx and refuses over 179 Mpx; MAX_PIXELS (100 Mpx) is the limit that applies."""
    path = tmp_path / "big.png"
    path.write_bytes(png_header(10001, 10000))
    assert one_line_error(path).reason == (f"image is 10001x10000 = 100,010,000 pixels, over the limit of "
                                           f"{MAX_PIXELS:,}")
    path.write_bytes(png_header(20000, 10000))  # over Pillow's error level too: still this module's message
    assert one_line_error(path).reason == f"image is 200,000,000 pixels, over the limit of {MAX_PIXELS:,}"


def test_under_the_limit_pillows_warning_level_does_not_refuse(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_header(3000, 2000))  # 6 Mpx of one grey level
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Image, "MAX_IMAGE_PIXELS", 5_000_000)  # 6 Mpx is over Pillow's warning level, under its error
        assert load_image(path).size == (3000, 2000)
        assert "over the limit of 5,999,999" in one_line_error(path, max_pixels=5_999_999).reason


def test_bytes_source_names_the_upload() -> None:
    with pytest.raises(ImageLoadError) as info:
        open_image(b"GIF89a" + bytes(20), name="up.gif")
    assert str(info.value).startswith("up.gif: ") and "\n" not in str(info.value)


def test_unusable_file_names_are_one_line_errors(tmp_path: Path) -> None:
    assert one_line_error(tmp_path / ("x" * 300 + ".jpg")).reason  # longer than any file system allows
    with pytest.raises(ImageLoadError):
        load_image(str(tmp_path / "nul\x00.jpg"))
