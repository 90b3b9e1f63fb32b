"""Phone and web formats: HEIC (pillow-heif) and AVIF (Pillow's own plugin) in the folder walk, the CLI and the API."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from PIL import Image
from typer.testing import CliRunner

import fakescope
from fakescope.cli import app
from fakescope.inference.inputs import walk_image_files

FORMATS = {"heic": "HEIF", "avif": "AVIF"}


@pytest.fixture
def phone_folder(tmp_path: Path) -> tuple[Path, Image.Image]:
    """A folder holding the same picture as HEIC and as AVIF (made here with the encoders the wheels carry)."""
    folder = tmp_path / "phone"
    folder.mkdir()
    img = make_image((64, 48), seed=7)
    for ext in FORMATS:
        img.save(folder / f"IMG_0001.{ext}", quality=90)
    return folder, img


def test_heic_and_avif_decode_to_the_picture(phone_folder):
    folder, img = phone_folder
    for ext, fmt in FORMATS.items():
        path = folder / f"IMG_0001.{ext}"
        with Image.open(path) as opened:
            assert opened.format == fmt  # really the HEIF / AVIF decoder, not a renamed file
        pixels = np.asarray(fakescope.load_image(path), dtype=np.float64)
        assert pixels.shape == (48, 64, 3)
        assert np.abs(pixels - np.asarray(img)).mean() < 12  # lossy, but the same picture (noise sigma is 12)


def test_folder_scan_and_api_score_heic_and_avif(phone_folder, tiny_ela_checkpoint):
    folder, _ = phone_folder
    assert sorted(p.suffix for p in walk_image_files([folder])) == [".avif", ".heic"]
    res = CliRunner().invoke(app, ["scan", str(folder), "--model", str(tiny_ela_checkpoint), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {Path(r["path"]).suffix: r for r in json.loads(res.stdout)}
    assert set(rows) == {".heic", ".avif"}
    for ext in FORMATS:
        row = rows[f".{ext}"]
        assert row["error"] is None and 0.0 <= row["fake_probability"] <= 1.0
        api = fakescope.detect(folder / f"IMG_0001.{ext}", model=tiny_ela_checkpoint)
        assert api.fake_probability == pytest.approx(row["fake_probability"], abs=1e-6)
