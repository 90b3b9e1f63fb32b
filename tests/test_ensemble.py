"""Ensembles: combiners, the NumPy re-evaluation of the stacker, the checkpoint format and the CLI."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fakescope.checkpoint import CheckpointMeta, read_meta, save_checkpoint
from fakescope.data.preprocess import Preprocess
from fakescope.ensemble.combine import Combiner, Stacker, accuracy_weights, fit_stacker, stack_inputs
from fakescope.ensemble.fit import MemberScores, fit_ensemble, out_of_fold, score_members, validation_samples
from fakescope.inference.detector import Detector, DetectorError
from fakescope.inference.kinds.ensemble import EnsembleDetector, EnsemblePreparer
from fakescope.registry import create_detector


def test_numpy_stacker_reproduces_sklearn_predict_proba() -> None:
    rng = np.random.default_rng(0)
    scale = np.array([1, 10, 0.1, 1, 1, 5, 1])  # unequal feature scales: the scaler matters
    x = rng.normal(size=(60, 7)) * scale
    y = (x[:, 0] + 0.3 * x[:, 1] / 10 + rng.normal(0, 0.3, 60) > 0).astype(int)
    stacker, (scaler, pca, calibrated) = fit_stacker(x, y, n_components=4, seed=0)
    x_new = rng.normal(size=(25, 7)) * scale
    z = pca.transform(scaler.transform(x_new))
    svc = calibrated.calibrated_classifiers_[0].estimator
    np.testing.assert_allclose(stacker.decision_function(x_new), svc.decision_function(z), rtol=1e-9, atol=1e-12)
    expected = calibrated.predict_proba(z)[:, 1]
    np.testing.assert_allclose(stacker.predict_proba(x_new), expected, rtol=1e-9, atol=1e-12)
    assert expected.min() < 0.3 and expected.max() > 0.7  # a real fit, not a constant
    again = Stacker.from_arrays(stacker.arrays())
    np.testing.assert_array_equal(again.predict_proba(x_new), stacker.predict_proba(x_new))
    assert stacker.pca_components.shape == (4, 7)


def test_mean_majority_and_weighted_votes() -> None:
    probs = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.7], [0.6, 0.4, 0.45], [0.6, 0.1, 0.3]])
    thr = [0.5, 0.5, 0.5]
    np.testing.assert_allclose(Combiner("mean", thr).predict(probs), probs.mean(1))
    np.testing.assert_allclose(Combiner("majority", thr).predict(probs), [2 / 3, 1 / 3, 1 / 3, 1 / 3])
    weighted = Combiner("weighted", thr, weights=np.array([2.0, 1.0, 1.0])).predict(probs)
    # row 0: members 0 and 1 vote fake -> 3/4; row 2: only member 0 (weight 2 of 4) -> tie -> weighted mean prob
    np.testing.assert_allclose(weighted, [0.75, 0.25, (2 * 0.6 + 0.4 + 0.45) / 4, (2 * 0.6 + 0.1 + 0.3) / 4])
    two = Combiner("majority", [0.5, 0.5]).predict(np.array([[0.9, 0.2], [0.6, 0.3]]))
    np.testing.assert_allclose(two, [0.55, 0.45])  # ties broken by the mean probability
    with pytest.raises(ValueError, match="unknown ensemble method"):
        Combiner("median", thr)


def test_accuracy_weights_favour_accurate_members_and_zero_chance() -> None:
    labels = np.array([0, 1] * 10)
    perfect = labels * 0.8 + 0.1
    chance = np.tile([0.9, 0.9, 0.1, 0.1], 5)  # right half of the time
    good = perfect.copy()
    good[:3] = 1 - good[:3]  # 17 of 20 right
    w = accuracy_weights(np.stack([perfect, chance, good], 1), labels, np.full(3, 0.5))
    assert w[0] > w[2] > w[1] == 0.0


def test_out_of_fold_never_scores_a_sample_with_a_combiner_fitted_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 40
    labels = np.array([0, 1] * (n // 2))
    ids = np.arange(n) / n  # member 0's "probability" doubles as the row id
    scores = MemberScores(np.stack([ids, (labels + ids) / 2], 1), None, labels)
    seen: list[tuple[set, set]] = []
    original_fitted, original_predict = Combiner.fitted, Combiner.predict

    def fitted(self, probs, feats, y, seed=0):
        out = original_fitted(self, probs, feats, y, seed)
        out.train_ids = set(np.round(probs[:, 0] * n).astype(int))
        return out

    def predict(self, probs, feats=None):
        if hasattr(self, "train_ids"):
            seen.append((self.train_ids, set(np.round(probs[:, 0] * n).astype(int))))
        return original_predict(self, probs, feats)

    monkeypatch.setattr(Combiner, "fitted", fitted)
    monkeypatch.setattr(Combiner, "predict", predict)
    oof, how = out_of_fold(Combiner("stacking", [0.5, 0.5], n_components=2), scores)
    assert how.startswith("5-fold") and len(seen) == 5 and oof.shape == (n,)
    assert all(not (train & test) for train, test in seen)
    assert set().union(*(test for _, test in seen)) == set(range(n))


def test_preparer_shares_equal_preprocessing_and_pickles() -> None:
    from conftest import make_image

    ela, rgb = Preprocess(size=16), Preprocess.for_mode("rgb", 16, imagenet_norm=True)
    prep = pickle.loads(pickle.dumps(EnsemblePreparer([ela, rgb, Preprocess(size=16)])))
    arrays = prep.to_array(make_image((40, 30)))
    assert len(arrays) == 3 and arrays[0] is arrays[2] and arrays[0].shape == (16, 16, 3)
    assert not np.array_equal(arrays[0], arrays[1])


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two untrained members of different families and inputs: scratch-cnn on ELA, resnet18 on RGB."""
    out = tmp_path_factory.mktemp("members")
    paths = []
    for name, size in (("scratch-cnn", 24), ("resnet18", 32)):
        torch.manual_seed(1)
        model, pre = create_detector(name, size=size)
        paths.append(str(save_checkpoint(out / f"{name}.safetensors", model.eval(),
                                         CheckpointMeta(name, pre, temperature=1.5))))
    return paths


@pytest.fixture
def dataset(tiny_images, tmp_path: Path) -> Path:
    tiny_images(12, folder="data/real", prefix="real", seed=0)
    tiny_images(12, folder="data/fake", prefix="fake", seed=1, size=(40, 48))
    return tmp_path / "data"


@pytest.mark.parametrize("method,features", [("mean", False), ("weighted", False), ("stacking", True)])
def test_fit_save_load_scan_and_evaluate(members, dataset: Path, tmp_path: Path, method: str, features: bool) -> None:
    from fakescope.evaluation.evaluate import evaluate_detector
    from fakescope.forensics.io import load_image
    from fakescope.inference.scan import scan

    fit = fit_ensemble(members, method, [dataset], features=features, n_components=3, val_fraction=0.5,
                       workers=0, device="cpu")
    assert fit.report["split"]["n"] == 12 and len(fit.report["members"]) == 2
    path = fit.detector.save(tmp_path / "ens.safetensors")
    meta = read_meta(path)
    assert meta.info["kind"] == "ensemble" and meta.info["method"] == method
    assert [m["meta"]["architecture"] for m in meta.info["members"]] == ["scratch-cnn", "resnet18"]
    loaded = Detector.load(str(path), device="cpu")
    assert isinstance(loaded, EnsembleDetector) and loaded.combiner.method == method
    images = [load_image(p) for p in sorted(dataset.rglob("*.jpg"))[:6]]
    np.testing.assert_allclose(loaded.predict_images(images), fit.detector.predict_images(images), rtol=1e-6)
    if method == "mean":  # the mean of the members' own calibrated probabilities
        singles = [Detector.load(m, device="cpu").predict_images(images) for m in members]
        np.testing.assert_allclose(loaded.predict_images(images), np.mean(singles, 0), rtol=1e-6)
    results = list(scan(sorted(dataset.rglob("*.jpg")), loaded, batch_size=7, workers=0))
    assert len(results) == 24 and all(r.error is None for r in results)
    metrics = evaluate_detector(loaded, dataset, workers=0)
    assert metrics["n"] == 24 and 0.0 <= metrics["accuracy"] <= 1.0


def test_stacking_checkpoint_matches_sklearn_on_member_outputs(members, dataset: Path, tmp_path: Path) -> None:
    fit = fit_ensemble(members, "stacking", [dataset], features=True, n_components=3, val_fraction=0.5,
                       workers=0, device="cpu")
    loaded = Detector.load(str(fit.detector.save(tmp_path / "stack.safetensors")), device="cpu")
    scores = score_members(loaded, validation_samples([dataset], 0.5, 0), workers=0)
    assert scores.feats.shape == (12, 128 + 512)  # scratch-cnn's pre-logits + resnet18's pooled features
    x = stack_inputs(scores.probs, scores.feats, True)
    _, (scaler, pca, calibrated) = fit_stacker(x, scores.labels, 3, seed=0)  # the same deterministic fit
    expected = calibrated.predict_proba(pca.transform(scaler.transform(x)))[:, 1]
    np.testing.assert_allclose(loaded.combiner.predict(scores.probs, scores.feats), expected, rtol=1e-9, atol=1e-12)


def test_cli_ensemble_then_scan_and_evaluate(members, dataset: Path, tmp_path: Path) -> None:
    from fakescope.cli import app

    runner = CliRunner()
    out = tmp_path / "vote.safetensors"
    result = runner.invoke(app, ["ensemble", "--members", ",".join(members), "--method", "weighted",
                                 "--weights", "1,3", "--data", str(dataset), "--out", str(out),
                                 "--val-fraction", "0.5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "12 validation images" in result.output and out.is_file()
    info = read_meta(out).info
    assert info["weights"] == [1.0, 3.0] and info["metrics"]["validation"]["n"] == 12
    scanned = runner.invoke(app, ["scan", str(dataset), "--model", str(out), "--format", "json", "--workers", "0"])
    assert scanned.exit_code == 0, scanned.output
    rows = json.loads(scanned.stdout[scanned.stdout.index("["):])
    assert len(rows) == 24 and all(r["model"] == str(out) for r in rows)
    evaluated = runner.invoke(app, ["evaluate", "--data", str(dataset), "--model", str(out), "--format", "json"])
    assert evaluated.exit_code == 0, evaluated.output
    bad = runner.invoke(app, ["ensemble", "--members", members[0], "--data", str(dataset), "--out", str(out)])
    assert bad.exit_code != 0 and "at least two members" in bad.output


def test_members_must_be_single_models(members) -> None:
    single = Detector.load(members[0], device="cpu")
    nested = EnsembleDetector([single, single], Combiner("mean", [0.5, 0.5]), device="cpu")
    with pytest.raises(DetectorError, match="single-model"):
        EnsembleDetector([single, nested], Combiner("mean", [0.5, 0.5]), device="cpu")
