"""The Python API at the package top: fakescope.detect / fakescope.scan score as `fakescope scan` does."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_image
from PIL import Image
from typer.testing import CliRunner

import fakescope
from fakescope.cli import app

ORIENTATION = 0x0112  # EXIF tag: 6 = the stored pixels must be turned 90 degrees clockwise to be seen upright


def cli_rows(*args: str | Path) -> list[dict]:
    res = CliRunner().invoke(app, ["scan", *map(str, args), "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture
def phone_jpeg(tmp_path: Path) -> Path:
    """A portrait photo stored as a phone stores it: landscape pixels plus an EXIF Orientation tag."""
    upright = make_image((48, 64), seed=3)
    stored = upright.rotate(90, expand=True)  # counter-clockwise: what orientation 6 undoes
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "Apple"  # Make
    path = tmp_path / "IMG_0001.JPG"
    stored.save(path, quality=92, exif=exif)
    return path


def test_import_is_light():
    code = "import sys, fakescope; fakescope.__version__; print('torch' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}).stdout
    assert out.split() == ["False", "False"]
    assert {"detect", "scan", "Result", "load_image"} <= set(dir(fakescope))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fakescope.nope  # noqa: B018


def same_row(api: dict, cli: dict) -> bool:
    """The API's result equals the CLI's row: the same provenance, the numbers to float precision."""
    api, cli = dict(api), dict(cli)
    return api.pop("provenance", None) == cli.pop("provenance", None) and api == pytest.approx(cli)


def test_rotated_phone_jpeg_scores_the_same_in_the_api_and_the_cli(phone_jpeg, tiny_ela_checkpoint):
    assert fakescope.load_image(phone_jpeg).size == (48, 64)  # turned upright
    (row,) = cli_rows(phone_jpeg, "--model", tiny_ela_checkpoint)
    from_path = fakescope.detect(phone_jpeg, model=tiny_ela_checkpoint)
    assert isinstance(from_path, fakescope.Result)
    assert same_row(from_path.to_dict(), row)
    with Image.open(phone_jpeg) as opened:  # a notebook's Image.open: orientation is applied all the same
        from_pil = fakescope.detect(opened, model=tiny_ela_checkpoint)
        sideways = np.asarray(opened.convert("RGB"))  # an array carries no EXIF: scored as stored
    assert from_pil.fake_probability == pytest.approx(row["fake_probability"], abs=1e-6)
    assert from_pil.path == str(phone_jpeg)
    from_sideways = fakescope.detect(sideways, model=tiny_ela_checkpoint)
    assert from_sideways.path == "<array>"
    assert abs(from_sideways.fake_probability - row["fake_probability"]) > 1e-6  # orientation changes the score


def test_arrays_of_any_dtype_score_as_the_same_pixels(tiny_ela_checkpoint):
    pixels = np.asarray(make_image((40, 32), seed=5))
    scores = [fakescope.detect(a, model=tiny_ela_checkpoint).fake_probability
              for a in (pixels, pixels.astype(np.float32) / 255.0, pixels.astype(np.uint16) * 257,
                        np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)]))]
    assert scores == pytest.approx([scores[0]] * 4, abs=1e-6)
    with pytest.raises(ValueError, match="shape"):
        fakescope.detect(np.zeros((4, 4, 2), np.uint8), model=tiny_ela_checkpoint)
    with pytest.raises(TypeError, match="not int"):
        fakescope.detect(3, model=tiny_ela_checkpoint)


def test_float_arrays_outside_0_1_are_refused_not_clipped(tiny_ela_checkpoint):
    """Floats in 0..255 used to be clipped to white and scored; they, and NaN, are a clear error instead."""
    pixels = np.asarray(make_image((40, 32), seed=5))
    with pytest.raises(ValueError, match=r"0\.\.1, not 0\.\.255: pass uint8 .* or scale to 0\.\.1"):
        fakescope.detect(pixels.astype(np.float32), model=tiny_ela_checkpoint)
    with pytest.raises(ValueError, match="0..1, not -0.5"):
        fakescope.detect(pixels / 255.0 - 0.5, model=tiny_ela_checkpoint)
    nan = pixels / 255.0
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fakescope.detect(nan, model=tiny_ela_checkpoint)
    edges = np.zeros((32, 40, 3), np.float64)
    edges[:, 20:] = 1.0  # 0 and 1 themselves are pixels
    assert 0.0 <= fakescope.detect(edges, model=tiny_ela_checkpoint).fake_probability <= 1.0


def test_scan_matches_the_cli_and_reports_errors_per_file(tiny_images, tiny_ela_checkpoint, tmp_path):
    paths = tiny_images(3, "folder")
    broken = tmp_path / "folder" / "broken.png"
    broken.write_bytes(b"not a png")
    rows = {r["path"]: r for r in cli_rows(tmp_path / "folder", "--model", tiny_ela_checkpoint)}
    results = list(fakescope.scan(tmp_path / "folder", model=tiny_ela_checkpoint, workers=0))
    assert {r.path for r in results} == set(rows)
    for r in results:
        assert same_row(r.to_dict(), rows[r.path])
    assert len(rows) == len(paths) + 1 and "not a recognised image" in rows[str(broken)]["error"]
    missing = fakescope.detect(tmp_path / "missing.jpg", model=tiny_ela_checkpoint)
    assert missing.fake_probability is None and "does not exist" in missing.error
