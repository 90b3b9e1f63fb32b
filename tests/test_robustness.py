"""Robustness sweeps: picklable perturbations that really perturb, the sweep, its table, plot and command."""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from PIL import Image
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.data.discovery import Sample, discover_samples
from fakescope.evaluation.robustness import (
    PERTURBATIONS,
    downscale,
    gaussian_blur,
    jpeg,
    robustness_markdown,
    robustness_sweep,
    subsample,
    write_robustness,
)
from fakescope.inference.detector import Detector

runner = CliRunner()


def test_perturbations_are_picklable_and_cover_the_sweep() -> None:
    for name, fn in PERTURBATIONS.items():
        restored = pickle.loads(pickle.dumps(fn))
        if fn is not None:
            img = make_image((40, 32))
            assert np.array_equal(np.asarray(restored(img)), np.asarray(fn(img))), name
    names = set(PERTURBATIONS)
    assert {"clean", "jpeg q95", "jpeg q75", "jpeg q50", "jpeg q30", "blur sigma 1", "blur sigma 2",
            "downscale 0.5", "downscale 0.25"} <= names
    assert any(n.startswith("shortcut") for n in names)


def test_perturbations_do_what_they_say() -> None:
    img = make_image((64, 48), seed=2)
    exif = Image.Exif()
    exif[271] = "Canon"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, exif=exif)
    with_exif = Image.open(buf)
    assert with_exif.getexif().get(271) == "Canon"
    out = jpeg(with_exif, 90)
    assert not out.getexif() and out.mode == "RGB"
    diffs = [np.abs(np.asarray(jpeg(img, q), dtype=int) - np.asarray(img, dtype=int)).mean() for q in (95, 50, 30)]
    assert 0 < diffs[0] < diffs[1] < diffs[2]
    gray = np.asarray(img.convert("L"), dtype=float)
    assert np.asarray(gaussian_blur(img, 2.0).convert("L"), dtype=float).std() < gray.std()
    assert downscale(img, 0.5).size == (32, 24) and downscale(img, 0.25).size == (16, 12)
    assert downscale(Image.new("RGB", (3, 2)), 0.25).size == (1, 1)


def test_subsample_keeps_class_shares_and_is_seeded() -> None:
    samples = [Sample(Path(f"r{i}.jpg"), 0) for i in range(30)] + [Sample(Path(f"f{i}.jpg"), 1) for i in range(10)]
    picked = subsample(samples, 8)
    assert sum(s.label == 0 for s in picked) == 6 and sum(s.label == 1 for s in picked) == 2
    assert picked == subsample(samples, 8) and subsample(samples, None) == samples


@pytest.fixture
def labelled(tiny_images) -> Path:
    tiny_images(3, folder="data/real", size=(64, 56), seed=1)
    return tiny_images(3, folder="data/fake", size=(64, 56), seed=2)[0].parents[1]


def test_sweep_applies_each_perturbation(labelled: Path, tiny_ela_checkpoint: Path) -> None:
    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    seen: list = []
    rows = robustness_sweep(detector, discover_samples(labelled), ["clean", "jpeg q30", "downscale 0.25"],
                            on_result=seen.append)
    assert [r["perturbation"] for r in rows] == ["clean", "jpeg q30", "downscale 0.25"]
    assert all(r["n"] == 6 and r["n_errors"] == 0 and r["roc_auc"] is not None for r in rows)
    by_run = [{r.path: r.fake_probability for r in seen[i * 6:(i + 1) * 6]} for i in range(3)]
    assert by_run[0].keys() == by_run[1].keys()
    # the ELA-CNN's input changes when the image is re-compressed or shrunk, so its scores must too
    assert any(abs(by_run[0][p] - by_run[1][p]) > 1e-6 for p in by_run[0])
    assert any(abs(by_run[0][p] - by_run[2][p]) > 1e-6 for p in by_run[0])
    with pytest.raises(ValueError, match="unknown perturbation"):
        robustness_sweep(detector, discover_samples(labelled), ["sepia"])


def test_table_and_files(tmp_path: Path) -> None:
    rows = [{"perturbation": "clean", "n": 10, "accuracy": 0.9, "roc_auc": 0.95, "eer": 0.1, "ece": 0.05,
             "accuracy_real": 1.0, "accuracy_fake": 0.8},
            {"perturbation": "jpeg q50", "n": 10, "accuracy": 0.7, "roc_auc": None, "eer": None, "ece": 0.2,
             "accuracy_real": 0.6, "accuracy_fake": 0.8}]
    md = robustness_markdown(rows)
    assert "| jpeg q50 | 10 | 0.700 | -0.200 | - | - |" in md
    paths = write_robustness(rows, tmp_path / "rob", title="t")
    assert json.loads(paths["json"].read_text())[1]["accuracy"] == 0.7
    assert Image.open(paths["plot"]).format == "PNG"


def test_robustness_command(tmp_path: Path, labelled: Path, tiny_ela_checkpoint: Path) -> None:
    out = tmp_path / "rob"
    res = runner.invoke(app, ["robustness", "--data", str(labelled), "--model", str(tiny_ela_checkpoint),
                              "--perturbation", "clean", "--perturbation", "shortcut: q90, no metadata",
                              "--out", str(out), "--limit", "4"])
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "robustness.json").read_text())
    assert [r["n"] for r in rows] == [4, 4]
    assert "shortcut" in (out / "robustness.md").read_text() and (out / "robustness.png").is_file()
    res = runner.invoke(app, ["robustness", "--data", str(labelled), "--perturbation", "sepia"])
    assert res.exit_code == 2


def test_score_samples_follow_the_samples_order_and_leave_out_unreadable_files(labelled: Path,
                                                                               tiny_ela_checkpoint: Path) -> None:
    # scan yields in its own order; callers that pair scores with file names (benches, paired comparisons) rely on this
    from fakescope.evaluation.evaluate import score_samples

    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    broken = labelled / "fake" / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    samples = sorted(discover_samples(labelled), key=lambda s: s.path.name, reverse=True)
    labels, probs, failed = score_samples(detector, samples, workers=2)
    assert [r.path for r in failed] == [str(broken)]
    readable = [s for s in samples if s.path != broken]
    assert labels == [s.label for s in readable]
    one_by_one = [score_samples(detector, [s], workers=0)[1][0] for s in readable]
    np.testing.assert_allclose(probs, one_by_one, rtol=0, atol=1e-6)
