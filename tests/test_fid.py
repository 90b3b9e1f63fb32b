"""Fréchet distance against closed forms, and FID on folders with named feature extractors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.generators.fid import (
    DetectorFeatures,
    InceptionFeatures,
    compute_fid,
    feature_stats,
    folder_features,
    frechet_distance,
)
from fakescope.inference.detector import Detector

runner = CliRunner()


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition (independent of sqrtm)."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _analytic(mu1, s1, mu2, s2) -> float:
    r1 = _psd_sqrt(s1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * _psd_sqrt(r1 @ s2 @ r1)))


def test_one_dimensional_gaussians():
    # W2^2 between N(m1, a^2) and N(m2, b^2) is (m1 - m2)^2 + (a - b)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])) == \
        pytest.approx(9.0 + 1.0)


def test_diagonal_gaussians_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_full_covariances_match_the_analytic_distance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_analytic(mu1, s1, mu2, s2), rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8)


def test_sample_estimate_converges_to_the_analytic_distance():
    rng = np.random.default_rng(1)
    mu1, mu2 = np.array([0.0, 0.0, 0.0]), np.array([1.0, -1.0, 0.5])
    s1 = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]])
    s2 = np.array([[1.0, -0.3, 0.1], [-0.3, 2.0, 0.0], [0.1, 0.0, 1.5]])
    fa = rng.multivariate_normal(mu1, s1, size=40_000)
    fb = rng.multivariate_normal(mu2, s2, size=40_000)
    assert frechet_distance(*feature_stats(fa), *feature_stats(fb)) == pytest.approx(_analytic(mu1, s1, mu2, s2), rel=0.03)


def test_bad_inputs():
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_stats(np.zeros((1, 4)))


def _folders(tiny_images, tmp_path: Path) -> tuple[Path, Path]:
    a = tiny_images(6, "a", fmt="png", size=(48, 48))[0].parent
    rng = np.random.default_rng(0)
    b = tmp_path / "b"
    b.mkdir()
    from PIL import Image

    for i in range(6):  # noise images: far from the smooth gradients in a/
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(b / f"n{i}.png")
    return a, b


def test_detector_features_fid_on_folders(tiny_images, tmp_path: Path, tiny_ela_checkpoint: Path):
    a, b = _folders(tiny_images, tmp_path)
    extractor = DetectorFeatures(Detector.load(str(tiny_ela_checkpoint), device="cpu"))
    assert extractor.name.startswith("detector:") and "ela-cnn" in extractor.name
    same = compute_fid(a, a, extractor)
    diff = compute_fid(a, b, extractor)
    assert (diff.n_a, diff.n_b, diff.dim) == (6, 6, 64)
    assert diff.fid > 0 and abs(same.fid) < 1e-3 * diff.fid
    assert diff.features == extractor.name


def test_cli_fid_names_the_features(tiny_images, tmp_path: Path, tiny_ela_checkpoint: Path):
    a, b = _folders(tiny_images, tmp_path)
    res = runner.invoke(app, ["fid", str(a), str(b), "--features", str(tiny_ela_checkpoint), "--format", "json",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["features"].startswith("detector:") and out["fid"] > 0 and out["n_a"] == 6
    res = runner.invoke(app, ["fid", str(a), str(b), "--inception-weights", str(tmp_path / "none.pth")])
    assert res.exit_code == 1 and "does not exist" in res.output


def test_inception_features_from_a_local_file(tiny_images, tmp_path: Path):
    from safetensors.torch import save_file
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    weights = tmp_path / "inception.safetensors"  # random weights stand in for a real file; nothing downloads
    save_file(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), str(weights))
    extractor = InceptionFeatures(weights)
    assert "inception_v3" in extractor.name and "inception.safetensors" in extractor.name
    a, _ = _folders(tiny_images, tmp_path)
    # Features only: a 2048-d sqrtm takes minutes on this CPU; the distance itself is tested above.
    feats = folder_features(a, extractor, max_images=2)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1], rtol=1e-3, atol=0)  # random weights: tiny but image-dependent
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(wrong))
    with pytest.raises(RuntimeError, match="Missing key"):
        InceptionFeatures(wrong)
