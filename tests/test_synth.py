"""Tampering synthesis: masks equal the changed pixels exactly, the layout is one `fakescope train` reads."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.data.discovery import discover_samples
from fakescope.data.synth import SynthConfig, paste, region_alpha, synthesize

runner = CliRunner()


def _arr(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def _reals(tiny_images, n: int = 5) -> Path:
    paths = tiny_images(n, "reals", fmt="png", size=(64, 48))
    return paths[0].parent


@pytest.mark.parametrize("kind", ["splice", "copy-move"])
@pytest.mark.parametrize("blend_p", [0.0, 1.0])
def test_mask_is_exactly_the_changed_pixels(tiny_images, tmp_path: Path, kind: str, blend_p: float):
    cfg = SynthConfig(kind=kind, count=8, seed=1, blend_p=blend_p, image_format="png")
    result = synthesize(_reals(tiny_images), tmp_path / "out", cfg)
    assert result.n_fake == 8 and not result.skipped
    rows = list(csv.DictReader((tmp_path / "out" / "manifest.csv").read_text().splitlines()))
    assert len(rows) == 8
    for row in rows:
        fake = tmp_path / "out" / "fake" / row["name"]
        real = tmp_path / "out" / "real" / f"{Path(row['source']).stem}.png"
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{fake.stem}_mask.png"))
        changed = (_arr(fake) != _arr(real)).any(axis=2)
        assert set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask == 255, changed)
        assert changed.sum() == int(row["changed_pixels"]) > 0
        top, left, h, w = map(int, row["box"].split())
        outside = changed.copy()
        outside[top:top + h, left:left + w] = False
        assert not outside.any()  # nothing changes outside the pasted box
        assert (float(row["feather_sigma"]) > 0) == (blend_p == 1.0)


def test_layout_is_discovered_and_masks_skipped(tiny_images, tmp_path: Path):
    result = synthesize(_reals(tiny_images, 4), tmp_path / "out", SynthConfig(kind="splice", seed=0))
    assert (result.n_real, result.n_fake) == (4, 4)
    samples = discover_samples(tmp_path / "out")
    assert sorted(s.label for s in samples) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert all(s.path.suffix == ".jpg" and "masks" not in s.path.parts for s in samples)
    assert len(list((tmp_path / "out" / "masks").glob("*_mask.png"))) == 4
    for row in csv.DictReader((tmp_path / "out" / "manifest.csv").read_text().splitlines()):
        assert row["donor"] and row["donor"] != row["source"]  # spliced from another image


def test_same_seed_same_output(tiny_images, tmp_path: Path):
    reals = _reals(tiny_images)
    cfg = SynthConfig(kind="copy-move", count=4, seed=3, recompress_p=0.5, image_format="png")
    for out in ("a", "b"):
        synthesize(reals, tmp_path / out, cfg)
    a = sorted((tmp_path / "a" / "fake").iterdir())
    assert [p.name for p in a] == [p.name for p in sorted((tmp_path / "b" / "fake").iterdir())]
    assert all(p.read_bytes() == (tmp_path / "b" / "fake" / p.name).read_bytes() for p in a)


def test_copy_move_moves_content_from_the_same_image():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    alpha = region_alpha(10, 10, "rectangle", rng)
    out, mask = paste(target, target[0:10, 0:10], alpha, 20, 25)
    assert np.array_equal(out[20:30, 25:35], target[0:10, 0:10])
    assert mask.sum() == np.any(target[0:10, 0:10] != target[20:30, 25:35], axis=2).sum()


@pytest.mark.parametrize("shape", ["rectangle", "ellipse", "polygon"])
def test_region_alpha_shapes(shape: str):
    rng = np.random.default_rng(0)
    hard = region_alpha(30, 40, shape, rng)
    soft = region_alpha(30, 40, shape, np.random.default_rng(0), sigma=3.0)
    assert hard.shape == (30, 40) and set(np.unique(hard)) <= {0.0, 1.0} and hard.mean() > 0.2
    assert ((soft > 0) & (soft < 1)).sum() > ((hard > 0) & (hard < 1)).sum()  # feathered edge
    assert soft[0, 0] < 0.05  # the feather stays inside the box


def test_bad_config_and_cli(tiny_images, tmp_path: Path):
    with pytest.raises(ValueError, match="kind must be"):
        SynthConfig(kind="inpaint")
    reals = _reals(tiny_images, 3)
    res = runner.invoke(app, ["synth", "--data", str(reals), "--out", str(tmp_path / "cli"), "--kind", "copy-move",
                              "--count", "3", "--format", "png", "--shapes", "ellipse"])
    assert res.exit_code == 0, res.output
    assert "3 tampered images" in res.output
    assert len(discover_samples(tmp_path / "cli")) == 6
    res = runner.invoke(app, ["synth", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "no images found" in res.output


def test_splice_on_real_casia_images(data_root: Path, tmp_path: Path):
    result = synthesize(data_root / "casia1" / "real", tmp_path / "casia", SynthConfig(count=3, seed=0))
    assert result.n_fake == 3
    for mask in (tmp_path / "casia" / "masks").iterdir():
        m = np.asarray(Image.open(mask))
        assert 0 < (m == 255).mean() < 0.5
