"""Shortcut baselines: compression history read from pixels and headers, and the tests that should remove it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from PIL import Image
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.data.discovery import discover_samples
from fakescope.data.splits import stratified_split
from fakescope.evaluation.robustness import SHORTCUT, SHORTCUT_RESAMPLED, jpeg, resample_resave
from fakescope.evaluation.shortcuts import AS_STORED, CONDITIONS, shortcut_baselines
from fakescope.forensics.compression import (
    GHOST_QUALITIES,
    compression_history,
    grid_crop,
    header_numbers,
    jpeg_ghost_curve,
)

runner = CliRunner()


def ghost_dip_at(img: Image.Image, quality: int) -> bool:
    """Whether the JPEG ghost curve has a local minimum at ``quality``."""
    curve = dict(zip(GHOST_QUALITIES, jpeg_ghost_curve(img)))
    return curve[quality] < min(curve[quality - 5], curve[quality + 5])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_resave_keeps_the_first_quality_and_resampling_removes_it(seed: int) -> None:
    first = jpeg(make_image((128, 96), seed=seed), 60)
    assert ghost_dip_at(first, 60)
    assert ghost_dip_at(jpeg(first, 90), 60), "the q90 shortcut test should leave the q60 ghost (the leak it measures)"
    resampled = resample_resave(first)
    assert resampled.size == (96, 72) and not resampled.getexif()
    assert not ghost_dip_at(resampled, 60)


def test_compression_history_is_finite_and_bounded_in_cost() -> None:
    feats = compression_history(make_image((64, 48)))
    assert feats.shape == (27,) and feats.dtype == np.float32 and np.isfinite(feats).all()
    big = make_image((1203, 901))
    crop = grid_crop(big)
    assert crop.size == (512, 512)
    left, top = (1203 - 512) // 2 // 8 * 8, (901 - 512) // 2 // 8 * 8
    assert np.array_equal(np.asarray(crop), np.asarray(big)[top:top + 512, left:left + 512])
    assert compression_history(big).shape == (27,)
    with pytest.raises(ValueError, match="at least 9x9"):
        compression_history(make_image((8, 30)))


def test_header_numbers_read_what_the_file_says(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[305] = "Photoshop"
    make_image((40, 30)).save(tmp_path / "a.jpg", quality=60, exif=exif)
    make_image((40, 30)).save(tmp_path / "b.jpg", quality=95)
    make_image((40, 30)).save(tmp_path / "c.png")
    with Image.open(tmp_path / "a.jpg") as a, Image.open(tmp_path / "b.jpg") as b, Image.open(tmp_path / "c.png") as c:
        ha, hb, hc = header_numbers(a), header_numbers(b), header_numbers(c)
    assert ha[0] > hb[0] > 0 and ha[1] == 1 and hb[1] == 0 and list(ha[2:]) == [40, 30]
    assert list(hc) == [0, 0, 40, 30]


@pytest.fixture(scope="module")
def split_by_compression(tmp_path_factory) -> Path:
    """Reals saved at q60 without EXIF, fakes at q95 with an editor's EXIF tag: the same kind of content, so only
    the files' history tells them apart (CASIA's bias, exaggerated). Plus one corrupt file."""
    root = tmp_path_factory.mktemp("shortcut-data")
    for label, quality, offset in (("real", 60, 0), ("fake", 95, 1000)):
        (root / label).mkdir()
        for i in range(50):
            exif = Image.Exif()
            if label == "fake":
                exif[305] = "Photoshop"
            make_image((96, 80), seed=offset + i).save(root / label / f"{label}{i:02d}.jpg", quality=quality, exif=exif)
    (root / "real" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


def test_baselines_read_the_history_and_the_one_resave_test_leaves_it(split_by_compression: Path) -> None:
    train, val = stratified_split(discover_samples(split_by_compression), 0.3, 0)
    out = shortcut_baselines(train, val, workers=0)
    rows = {r["condition"]: r for r in out["rows"]}
    assert list(rows) == list(CONDITIONS)
    assert rows[AS_STORED]["metadata"] >= 0.9 and rows[AS_STORED]["compression history"] >= 0.9
    assert rows[SHORTCUT]["metadata"] <= 0.6, "one re-save from pixels leaves no EXIF and one quantisation table"
    assert rows[SHORTCUT]["compression history"] >= 0.9, "but the pixels still carry the first compression"
    assert rows[SHORTCUT_RESAMPLED]["metadata"] <= 0.6
    assert len(out["errors"]) == 1 and "broken.jpg" in out["errors"][0]
    assert rows[AS_STORED]["n_train"] + rows[AS_STORED]["n_val"] == 100
    assert "validation images" in out["warning"]


def test_unknown_condition_is_refused(split_by_compression: Path) -> None:
    samples = discover_samples(split_by_compression)
    with pytest.raises(ValueError, match="unknown condition"):
        shortcut_baselines(samples[:4], samples[4:8], conditions=["jpeg q75"], workers=0)


def test_shortcuts_command(split_by_compression: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["shortcuts", "--data", str(split_by_compression), "--format", "json", "--workers", "0"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["condition"] for r in out["rows"]] == list(CONDITIONS)
    assert out["rows"][0]["compression history"] >= 0.9 and len(out["errors"]) == 1
    table = runner.invoke(app, ["shortcuts", "--data", str(split_by_compression), "--workers", "0", "--limit", "60"])
    assert table.exit_code == 0 and "metadata" in table.stdout and SHORTCUT_RESAMPLED in table.stdout
    limited = runner.invoke(app, ["shortcuts", "--data", str(split_by_compression), "--limit", "60", "--format", "json"])
    assert limited.exit_code == 0, limited.output  # automatic workers: the scan pipeline's worker processes
    rows = json.loads(limited.stdout)["rows"]
    skipped = len(json.loads(limited.stdout)["errors"])
    assert all(r["n_train"] + r["n_val"] + skipped == 60 for r in rows)
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["shortcuts", "--data", str(tmp_path / "empty")])
    assert empty.exit_code == 1 and "error:" in empty.output
