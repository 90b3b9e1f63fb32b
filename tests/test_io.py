"""Every bad input of issue 2: one clear ImageLoadError from load_image, one error entry from `fakescope scan`."""
from __future__ import annotations

import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from PIL import Image
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.data.discovery import iter_image_files
from fakescope.forensics.io import ImageLoadError, load_image, open_image


def load_error(path: Path, **kwargs) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(path, **kwargs)
    err = info.value
    message = str(err)
    assert "\n" not in message, "an error message must be one line"
    assert str(path) in message and err.path == str(path), "an error message must name the file"
    return err


def write_png16_rgb(path: Path, rgb16: np.ndarray) -> None:
    """A 48-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    """One file per way of being unreadable, plus a good one."""
    d = tmp_path / "bad"
    d.mkdir()
    files = {"empty": d / "empty.jpg", "text": d / "notes.jpg", "truncated": d / "truncated.jpg",
             "good": d / "good.jpg"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not an image\n")
    make_image((64, 64)).save(files["good"], quality=90)
    data = files["good"].read_bytes()
    files["truncated"].write_bytes(data[: len(data) * 2 // 3])
    return files


def test_zero_byte_file(bad_files):
    assert "empty" in load_error(bad_files["empty"]).reason


def test_text_file_named_jpg(bad_files):
    assert "not a recognised image" in load_error(bad_files["text"]).reason


@pytest.mark.parametrize("keep", [0.3, 0.9, -2])  # -2: only the end-of-image marker missing
def test_truncated_jpeg_is_an_error_not_grey_pixels(tmp_path, keep):
    good = tmp_path / "good.jpg"
    make_image((64, 64)).save(good, quality=90)
    data = good.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:keep] if isinstance(keep, int) else data[: int(len(data) * keep)])
    assert "truncated" in load_error(cut).reason


def test_truncated_png(tmp_path):
    good = tmp_path / "good.png"
    make_image((64, 64)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:-200])
    load_error(cut)


def test_png_with_alpha_is_composited_on_white(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 200  # red everywhere
    arr[:2, :, 3] = 0  # top half transparent
    arr[2:, :, 3] = 255  # bottom half opaque
    arr[3, 0, 3] = 128  # one half-transparent pixel
    Image.fromarray(arr, "RGBA").save(tmp_path / "alpha.png")
    out = np.asarray(load_image(tmp_path / "alpha.png"))
    assert out.shape == (4, 4, 3)
    assert (out[:2] == 255).all()
    assert out[2, 0].tolist() == [200, 0, 0]
    assert out[3, 0, 0] in (227, 228) and out[3, 0, 1] in (127, 128)  # blended half-way with white


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.save(tmp_path / "pal.png", transparency=0)
    out = np.asarray(load_image(tmp_path / "pal.png"))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[1, 1].tolist() == [10, 20, 30]


def test_one_by_one_image(tmp_path):
    Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "dot.png")
    img = load_image(tmp_path / "dot.png")
    assert img.size == (1, 1) and img.getpixel((0, 0)) == (1, 2, 3)
    from fakescope.data.preprocess import Preprocess

    assert Preprocess().to_array(img).shape == (128, 128, 3)  # a 1x1 image still becomes a model input


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 257, 1000], [32768, 60000, 65535]], np.uint16)
    Image.fromarray(arr).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    out = np.asarray(load_image(tmp_path / "gray16.png"))
    expected = np.round(arr / 65535 * 255).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert len(np.unique(out)) == 6  # clipping at 255 would merge everything above 255


def test_16bit_rgb_png_keeps_its_range(tmp_path):
    arr = np.zeros((2, 2, 3), np.uint16)
    arr[0, 0] = (65535, 32768, 0)
    arr[1, 1] = (1000, 20000, 50000)
    write_png16_rgb(tmp_path / "rgb16.png", arr)
    out = np.asarray(load_image(tmp_path / "rgb16.png")).astype(int)
    np.testing.assert_allclose(out, arr / 65535 * 255, atol=1)


def test_cmyk_jpeg(tmp_path):
    rgb = make_image((48, 40))
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    out = load_image(tmp_path / "cmyk.jpg")
    assert out.mode == "RGB" and out.size == (48, 40)
    assert np.abs(np.asarray(out, int) - np.asarray(rgb, int)).mean() < 12  # colours survive, not inverted


def test_grayscale_and_palette_images(tmp_path):
    make_image(mode="L").save(tmp_path / "gray.png")
    make_image(mode="P").save(tmp_path / "pal.gif")
    gray = np.asarray(load_image(tmp_path / "gray.png"))
    assert gray.shape == (40, 48, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_array_equal(gray[..., 0], np.asarray(make_image(mode="L")))
    pal = load_image(tmp_path / "pal.gif")
    assert pal.mode == "RGB" and pal.size == (48, 40)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red, as stored
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "rotated.jpg")
    assert out.size == (20, 40)  # transposed
    top, bottom = np.asarray(out)[2, 10], np.asarray(out)[-3, 10]
    assert top[0] > 200 and top[1] < 60  # the stored left edge is now on top
    assert bottom[0] < 60


def test_decompression_bomb_limit_argument(tmp_path):
    make_image((64, 64)).save(tmp_path / "big.png")
    err = load_error(tmp_path / "big.png", max_pixels=64 * 64 - 1)
    assert "4,096 pixels" in err.reason and "limit" in err.reason
    assert load_image(tmp_path / "big.png", max_pixels=64 * 64).size == (64, 64)


def test_decompression_bomb_pillow_limit(tmp_path, monkeypatch):
    """Over 2x Pillow's limit (an error in Pillow) is refused and says so; over 1x (a warning) is not: the
    limit that applies is max_pixels (tests/test_decode.py)."""
    make_image((64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)
    assert "decompression bomb" in load_error(tmp_path / "big.png").reason
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    assert load_image(tmp_path / "big.png").size == (64, 64)


def test_pillows_bomb_warning_stays_quiet_under_fakescopes_limit(tmp_path, tiny_ela_checkpoint, monkeypatch):
    """Between Pillow's warning level and max_pixels an image is scored with nothing on stderr: no decode fakescope
    makes (the pixels, the provenance header, the ELA re-save, the report's pictures) lets the warning out."""
    make_image((64, 64)).save(tmp_path / "big.jpg", quality=90)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4,096 pixels: over Pillow's warning level, under its error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, rows = scan_json(str(tmp_path / "big.jpg"), "--model", str(tiny_ela_checkpoint), "--report",
                                 str(tmp_path / "report.html"))
    assert result.exit_code == 0, result.output
    assert rows[0]["error"] is None and rows[0]["provenance"]["errors"] == []
    assert [str(w.message) for w in caught if issubclass(w.category, Image.DecompressionBombWarning)] == []


def test_unreadable_file_chmod(tmp_path):
    path = tmp_path / "locked.jpg"
    make_image().save(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading (see the monkeypatched test)")
        assert "permission denied" in load_error(path).reason
    finally:
        path.chmod(0o644)


def test_unreadable_file_permission_error(tmp_path, monkeypatch):
    path = tmp_path / "locked.jpg"
    make_image().save(path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    assert load_error(path).reason == "permission denied"


def test_path_that_does_not_exist(tmp_path):
    assert "does not exist" in load_error(tmp_path / "missing.jpg").reason


def test_folder_instead_of_file(tmp_path):
    assert "directory" in load_error(tmp_path).reason


def test_folder_with_no_images_yields_nothing(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no images here")
    assert list(iter_image_files([tmp_path])) == []


def test_open_image_from_bytes():
    import io

    buf = io.BytesIO()
    make_image().save(buf, "PNG")
    assert open_image(buf.getvalue()).size == (48, 40)
    with pytest.raises(ImageLoadError, match="<bytes>"):
        open_image(b"garbage")


# --- the same bad files through `fakescope scan` -------------------------------------------------------------

runner = CliRunner()


def scan_json(*args: str):
    result = runner.invoke(app, ["scan", *args, "--format", "json"])
    return result, (json.loads(result.stdout) if result.exit_code == 0 else None)


def test_scan_reports_each_bad_file_and_scores_the_good_one(bad_files, tmp_path, tiny_ela_checkpoint):
    missing = tmp_path / "missing.jpg"
    result, rows = scan_json(str(bad_files["empty"].parent), str(missing), "--model", str(tiny_ela_checkpoint))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    by_name = {Path(r["path"]).name: r for r in rows}
    assert set(by_name) == {"empty.jpg", "notes.jpg", "truncated.jpg", "good.jpg", "missing.jpg"}
    for name, row in by_name.items():
        if name == "good.jpg":
            assert row["error"] is None and 0.0 <= row["fake_probability"] <= 1.0 and row["label"] in ("real", "fake")
        else:
            assert row["error"] and "\n" not in row["error"], name
            assert row["fake_probability"] is None and row["label"] is None, name
    assert "truncated" in by_name["truncated.jpg"]["error"]
    assert "does not exist" in by_name["missing.jpg"]["error"]


def test_scan_unreadable_and_oversized_files(tmp_path, tiny_ela_checkpoint, monkeypatch):
    d = tmp_path / "imgs"
    d.mkdir()
    make_image((64, 64)).save(d / "locked.jpg")
    make_image((64, 64)).save(d / "huge.jpg")
    make_image((32, 32)).save(d / "ok.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # 64x64 is "huge", 32x32 is not
    real_open = Image.open

    def guarded(fp, *args, **kwargs):
        if str(fp).endswith("locked.jpg"):
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", guarded)
    real_read = Path.read_bytes  # the scan reads a file's bytes once (provenance and pixels), then decodes them

    def guarded_read(self: Path) -> bytes:
        if self.name == "locked.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", guarded_read)
    result, rows = scan_json(str(d), "--model", str(tiny_ela_checkpoint))
    assert result.exit_code == 0 and "Traceback" not in result.output
    errors = {Path(r["path"]).name: r["error"] for r in rows}
    assert errors.pop("locked.jpg") == "permission denied"
    assert "decompression bomb" in errors.pop("huge.jpg")
    assert errors == {"ok.jpg": None}


def test_folder_scan_includes_gifs_scored_on_the_first_frame(tmp_path, tiny_ela_checkpoint):
    d = tmp_path / "memes"
    d.mkdir()
    make_image((64, 48), seed=1).save(d / "anim.GIF", save_all=True, append_images=[make_image((64, 48), seed=2)])
    first_frame = load_image(d / "anim.GIF")
    assert first_frame.size == (64, 48)
    first_frame.save(d / "first_frame.png")
    result, rows = scan_json(str(d), "--model", str(tiny_ela_checkpoint))
    assert result.exit_code == 0, result.output
    scores = {Path(r["path"]).name: r["fake_probability"] for r in rows}
    assert set(scores) == {"anim.GIF", "first_frame.png"} and None not in scores.values()
    assert scores["anim.GIF"] == pytest.approx(scores["first_frame.png"], abs=1e-6)


def test_scan_of_folder_without_images_warns_and_exits_zero(tmp_path, tiny_ela_checkpoint):
    (tmp_path / "empty_dir").mkdir()
    result, rows = scan_json(str(tmp_path / "empty_dir"), "--model", str(tiny_ela_checkpoint))
    assert result.exit_code == 0 and rows == []
    assert "holds no image" in result.stderr


def test_declared_bit_depth_sets_white_not_the_pixel_values():
    """A dark 12-bit TIFF (values <= 255 of 4095) stays dark instead of being read as a bright 8-bit image."""
    from fakescope.forensics.io import _to_rgb

    img = Image.fromarray(np.array([[0, 100, 200], [255, 200, 100]], np.int32))  # mode "I"
    img.tag_v2 = {258: (12,)}
    out = np.asarray(_to_rgb(img))
    assert out.shape == (2, 3, 3) and out.max() == round(255 * 255 / 4095)
    img.tag_v2 = {}
    assert np.asarray(_to_rgb(img)).max() == 255  # no declared depth: 8-bit range


def test_float_image_in_unit_range():
    from fakescope.forensics.io import _to_rgb

    img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))  # mode "F"
    assert np.asarray(_to_rgb(img))[0, :, 0].tolist() == [0, 128, 255]
