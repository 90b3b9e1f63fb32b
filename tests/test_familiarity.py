"""Familiarity: the description of a detector's training features, stored with its weights, and the label rule."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fakescope.checkpoint import CheckpointMeta, read_header, read_meta, save_checkpoint
from fakescope.data.discovery import Sample
from fakescope.engine.familiarity import add_familiarity, capped, describable
from fakescope.familiarity import FAMILIAR_CUT, FeatureModel, decide, fit_feature_model
from fakescope.inference.detector import Detector
from fakescope.registry import create_detector
from tests.conftest import make_image

#: How 8 latent factors show in 48 correlated features (a network's channel statistics move together).
MIX = np.random.default_rng(99).normal(size=(8, 48))


def clustered(n: int, centres: list[int], seed: int) -> np.ndarray:
    """Features of images around the given latent factors (scaled by 5), as a trained network's classes cluster,
    mixed into correlated features with a little independent noise."""
    rng = np.random.default_rng(seed)
    latent = 5 * np.eye(len(MIX))[rng.choice(centres, n)] + rng.normal(scale=0.7, size=(n, len(MIX)))
    return latent @ MIX + rng.normal(scale=0.1, size=(n, MIX.shape[1]))


def test_validation_like_images_are_familiar_and_far_ones_are_not():
    model = fit_feature_model(clustered(600, [0, 1, 2], 0), clustered(400, [0, 1, 2], 1))
    fresh = model.familiarity(clustered(2000, [0, 1, 2], 2))  # new images of the kinds seen
    assert 0.02 < np.mean(fresh < FAMILIAR_CUT) < 0.09  # about 5% by construction
    assert 0.35 < np.median(fresh) < 0.65  # a conformal p-value: uniform on familiar data
    far = model.familiarity(clustered(200, [7], 3))  # a kind never seen
    assert np.mean(far < FAMILIAR_CUT) > 0.9


def test_feature_model_round_trips_through_json():
    model = fit_feature_model(clustered(100, [0, 1], 0), clustered(50, [0, 1], 1))
    again = FeatureModel.from_dict(json.loads(json.dumps(model.to_dict())))
    x = clustered(20, [0, 1, 3], 5)
    np.testing.assert_allclose(again.familiarity(x), model.familiarity(x), atol=1e-3)


def test_a_description_with_classes_scores_by_the_nearest_training_images():
    """Described with its images' classes, the description makes a fake probability from the ratio of the distances
    to the nearest training reals and fakes; it survives the checkpoint's JSON; without classes it does not score."""
    from sklearn.metrics import roc_auc_score

    reals, fakes = [0, 1], [2, 3]
    train = np.concatenate([clustered(300, reals, 0), clustered(300, fakes, 1)])
    val = np.concatenate([clustered(100, reals, 2), clustered(100, fakes, 3)])
    labels = (np.repeat([0, 1], 300), np.repeat([0, 1], 100))
    model = fit_feature_model(train, val, labels=labels)
    y, x = np.repeat([0, 1], 200), np.concatenate([clustered(200, reals, 4), clustered(200, fakes, 5)])
    p = model.fake_probability(x)
    assert model.scores and np.all((p > 0) & (p < 1)) and roc_auc_score(y, p) > 0.95
    assert model.ratio[0] > 0  # nearer the fakes than the reals reads as more fake
    again = FeatureModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_allclose(again.fake_probability(x), p, atol=1e-3)
    plain = fit_feature_model(train, val)
    assert not plain.scores and "classes" not in plain.to_dict()
    np.testing.assert_allclose(plain.familiarity(x), model.familiarity(x))  # the classes do not change familiarity


@pytest.mark.parametrize("p, familiarity, label", [
    (0.5, 0.01, "uncertain"),  # unfamiliar and undecided
    (0.95, 0.01, "fake"),  # unfamiliar, but decisive
    (0.05, 0.01, "real"),
    (0.5, 0.5, "real"),  # familiar: the threshold decides
    (0.8, 0.5, "fake"),
    (0.5, None, "real"),  # no description: the threshold decides
])
def test_label_rule(p, familiarity, label):
    assert decide(p, familiarity, threshold=0.7) == label


def test_capped_keeps_every_cell():
    samples = [Sample(Path(f"{src}-{y}-{i}.jpg"), y) for src in range(2) for y in (0, 1) for i in range(10)]
    kept = capped(samples, [int(s.path.name[0]) for s in samples], per_cell=3)
    assert len(kept) == 12 and {(s.path.name[0], s.label) for s in kept} == {(a, b) for a in "01" for b in (0, 1)}


@pytest.fixture(scope="module")
def tiny_timm_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model, pre = create_detector("efficientnet_lite0", size=64)
    path = tmp_path_factory.mktemp("fam") / "lite0.safetensors"
    return save_checkpoint(path, model.eval(), CheckpointMeta("efficientnet_lite0", pre))


def test_checkpoint_gets_familiarity_and_every_backend_reports_it(tmp_path, tiny_timm_checkpoint):
    paths = []
    for i in range(24):
        p = tmp_path / f"{i}.png"
        make_image((72, 64), seed=i).save(p)
        paths.append(p)
    samples = [Sample(p, i % 2) for i, p in enumerate(paths)]
    add_familiarity(tiny_timm_checkpoint, [(samples[:16], samples[16:])], per_cell=8, workers=0)
    assert "familiarity" in read_meta(tiny_timm_checkpoint).info
    torch_det = Detector.load(str(tiny_timm_checkpoint), device="cpu")
    items = [torch_det.prepare(make_image((72, 64), seed=100 + i)) for i in range(3)]
    probs, familiar, _ = torch_det.score_batch(items)
    assert familiar.shape == (3,) and np.all((familiar >= 0) & (familiar <= 1))
    np.testing.assert_allclose(probs, torch_det.predict_batch(items), atol=1e-6)  # one pass, same scores
    pytest.importorskip("onnxruntime")
    onnx_det = Detector.load(str(tiny_timm_checkpoint), backend="onnx")
    onnx_probs, onnx_familiar, _ = onnx_det.score_batch(items)
    np.testing.assert_allclose(onnx_probs, probs, atol=1e-4)
    np.testing.assert_allclose(onnx_familiar, familiar, atol=1e-3)


def test_in_memory_model_writes_the_same_header_as_the_file(tmp_path):
    """``fit`` describes the model it holds instead of reading the checkpoint back: the file comes out the same."""
    torch.manual_seed(0)
    model, pre = create_detector("efficientnet_lite0", size=64)
    meta = CheckpointMeta("efficientnet_lite0", pre, threshold=0.4, temperature=1.3, info={"note": "kept"})
    from_file, in_memory = tmp_path / "file.safetensors", tmp_path / "memory.safetensors"
    save_checkpoint(from_file, model.eval(), meta)
    in_memory.write_bytes(from_file.read_bytes())
    samples = []
    for i in range(20):
        samples.append(Sample(tmp_path / f"{i}.png", i % 2))
        make_image((72, 64), seed=300 + i).save(samples[-1].path)
    splits = [(samples[:8], samples[8:12]), (samples[12:18], samples[18:])]
    before = read_header(from_file)
    add_familiarity(from_file, splits, per_cell=3, workers=0)
    add_familiarity(in_memory, splits, per_cell=3, workers=0,
                    detector=Detector(model, meta, str(in_memory), device="cpu"))
    header = read_header(from_file)
    assert header == read_header(in_memory) and header != before
    assert json.loads(header["fakescope"])["info"]["note"] == "kept" and "familiarity" in read_meta(in_memory).info
    assert from_file.read_bytes() == in_memory.read_bytes() and not list(tmp_path.glob("*.tmp"))


def test_stage_statistics_are_each_stage_channels_mean_and_spread():
    from fakescope.inference.detector import logits_and_stage_statistics

    torch.manual_seed(0)
    model, _ = create_detector("efficientnet_lite0", pretrained=False, size=64)
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        logits, stats = logits_and_stage_statistics(model.eval(), x)
        torch.testing.assert_close(logits, model(x))  # the same pass gives the model's own logits
        first = model.forward_intermediates(x, indices=[0], intermediates_only=True)[0]
    assert stats.shape == (3, 2 * sum(stage["num_chs"] for stage in model.feature_info))
    channels = first.shape[1]
    torch.testing.assert_close(stats[:, :channels], first.mean((2, 3)))
    torch.testing.assert_close(stats[:, channels:2 * channels], first.std((2, 3), correction=0))


def test_an_older_description_is_set_aside_with_a_warning(tmp_path, tiny_timm_checkpoint, caplog):
    """A checkpoint described by an older fakescope (pooled features, no ``features`` entry) cannot be read with
    stage statistics: its results carry no familiarity, and the log says why, instead of failing every scan."""
    from fakescope.checkpoint import write_meta

    path = tmp_path / "older.safetensors"
    path.write_bytes(tiny_timm_checkpoint.read_bytes())
    meta = read_meta(path)
    old = fit_feature_model(clustered(40, [0, 1], 0), clustered(20, [0, 1], 1)).to_dict()
    del old["features"], old["scale"]
    meta.info["familiarity"] = old
    write_meta(path, meta)
    det = Detector.load(str(path), device="cpu")
    with caplog.at_level("WARNING"):
        probs, familiar, _ = det.score_batch([det.prepare(make_image())])
    assert familiar is None and probs.shape == (1,)
    assert "familiarity description reads features this version does not compute" in caplog.text


def test_detector_without_description_reports_none(tiny_ela_checkpoint):
    det = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    probs, familiar, _ = det.score_batch([det.prepare(make_image())])
    assert familiar is None and probs.shape == (1,)


def test_scan_summary_counts_uncertain_results():
    from collections import Counter

    from fakescope.cli.scan import tally

    assert tally(Counter(fake=2, real=3, error=1)) == "2 flagged fake, 3 real, 1 error"
    assert tally(Counter(fake=2, real=3, uncertain=4)) == "2 flagged fake, 3 real, 4 uncertain, 0 errors"


@pytest.fixture(scope="module")
def described_checkpoint(tmp_path_factory, tiny_timm_checkpoint) -> Path:
    """The tiny Lite0 with a description of 'training' features from a few made-up images."""
    folder = tmp_path_factory.mktemp("described")
    samples = []
    for i in range(24):
        path = folder / f"{i}.png"
        make_image((72, 64), seed=200 + i).save(path)
        samples.append(Sample(path, i % 2))
    out = folder / "described.safetensors"
    out.write_bytes(tiny_timm_checkpoint.read_bytes())
    add_familiarity(out, [(samples[:16], samples[16:])], per_cell=8, workers=0)
    return out


def test_service_returns_the_detectors_familiarity(described_checkpoint, tmp_path):
    pytest.importorskip("fastapi")
    import io

    from fastapi.testclient import TestClient
    from test_serve import wait_ready

    from fakescope.serve import Settings, create_app

    img = make_image((72, 64), seed=7)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    detector = Detector.load(str(described_checkpoint), device="cpu")
    _, expected, _ = detector.score_batch([detector.prepare(img)])
    with TestClient(create_app(Settings(model=str(described_checkpoint)))) as client:
        assert wait_ready(client, timeout=300)["ready"]  # exporting the ONNX twin can take minutes on a loaded machine
        one = client.post("/v1/detect", files={"file": ("a.png", buf.getvalue(), "image/png")}).json()
        batch = client.post("/v1/detect/batch", files=[("files", ("a.png", buf.getvalue(), "image/png"))]).json()
    assert one["familiarity"] == pytest.approx(float(expected[0]), abs=1e-3)
    assert batch["results"][0]["familiarity"] == pytest.approx(one["familiarity"], abs=1e-6)
    assert one["label"] == decide(one["fake_probability"], one["familiarity"], one["threshold"])


def test_report_shows_familiarity_under_each_score(described_checkpoint, tmp_path):
    from fakescope.evaluation.report import write_report
    from fakescope.inference.scan import scan

    path = tmp_path / "a.png"
    make_image((72, 64), seed=8).save(path)
    detector = Detector.load(str(described_checkpoint), device="cpu")
    results = list(scan([path], detector, workers=0))
    page = write_report(results, detector, tmp_path / "report.html").read_text()
    assert f"familiarity {results[0].familiarity:.2f}" in page


def test_pseudo_fakes_need_per_source_draws():
    from fakescope.config import load_config

    with pytest.raises(ValueError, match="data.pseudo_fakes.*needs data.balance source"):
        load_config(None, {"data.pseudo_fakes": 0.5})
    with pytest.raises(ValueError, match="between 0 and 1"):
        load_config(None, {"data.pseudo_fakes": 1.5, "data.balance": "source"})
    assert load_config(None, {"data.pseudo_fakes": 0.5, "data.balance": "source"}).data.pseudo_fakes == 0.5


@pytest.mark.parametrize(("name", "resize", "expected"), [("efficientnet_lite0", "squash", True),
                                                           ("efficientnet_lite0", "crop", True),
                                                           ("ela-cnn", None, False)])
def test_timm_models_are_described_whole_or_in_patches(name, resize, expected):
    """Training (fit) and the left-out bench describe the same checkpoints: a timm model whether it reads the
    resized image or native crops (tests/test_patches.py checks a crop model's familiarity); the ELA-CNN has no
    timm stages, so it gets no description (nor fails trying)."""
    model, pre = create_detector(name, pretrained=False, **({"size": 32, "resize": resize} if resize else {}))
    assert describable(model, pre) is expected


def test_evaluate_reports_how_familiar_the_labelled_images_are(described_checkpoint, tmp_path):
    """evaluate adds the share called unfamiliar, the uncertain shares and ROC-AUC on the familiar part, as the
    left-out benchmark reports them, for a detector with a description; its table shows them."""
    from test_cli import invoke

    for label, seed in (("real", 300), ("fake", 400)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(4):
            make_image((72, 64), seed=seed + i).save(tmp_path / "data" / label / f"{i}.png")
    res = invoke("evaluate", "--data", tmp_path / "data", "--model", described_checkpoint, "--format", "json")
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert 0.0 <= m["unfamiliar"] <= 1.0
    assert 0.0 <= m["uncertain_real"] <= 1.0 and 0.0 <= m["uncertain_fake"] <= 1.0
    assert m["roc_auc_familiar"] is None  # 8 images: too few to rank the familiar part
    table = invoke("evaluate", "--data", tmp_path / "data", "--model", described_checkpoint)
    assert table.exit_code == 0 and "uncertain_real" in table.stdout


def test_a_recipe_with_the_neighbour_score_scores_by_the_mean_and_ships_its_threshold(tmp_path):
    """Trained with ``neighbour_score: true``, the checkpoint's description keeps its images' classes; every way of
    scoring (score_batch, predict_batch, ONNX Runtime) gives the mean of the network's probability and the nearest
    training images', and the shipped threshold bounds the false alarms of those scores on the validation reals."""
    from fakescope.config import load_config
    from fakescope.engine.loaders import folder_splits
    from fakescope.engine.train import fit
    from fakescope.inference.scan import scan

    for label, seed in (("real", 0), ("fake", 100)):
        folder = tmp_path / "data" / label
        folder.mkdir(parents=True)
        for i in range(12):
            make_image((72, 64), seed=seed + i).save(folder / f"{label}{i}.png")
    cfg = load_config(None, {"model.name": "efficientnet_lite0", "model.size": 64, "epochs": 1, "batch_size": 4,
                             "device": "cpu", "data.path": [str(tmp_path / "data")], "data.workers": 0,
                             "data.cache": False, "data.val_fraction": 0.5, "target_fpr": 0.25,
                             "neighbour_score": True, "out": str(tmp_path / "run")})
    result = fit(cfg)
    detector = Detector.load(str(result.checkpoint), device="cpu")
    described = detector.feature_model
    assert described.scores and set(np.unique(described.classes)) == {0.0, 1.0}
    items = [detector.prepare(make_image((72, 64), seed=500 + i)) for i in range(3)]
    logits, features = detector.logits_and_features(np.stack(items))
    expected = (detector.probabilities(logits) + described.fake_probability(features)) / 2
    probs, familiar, _ = detector.score_batch(items)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_allclose(detector.predict_batch(items), expected, atol=1e-6)
    ((_, val),) = folder_splits(cfg)
    scored = list(scan([s.path for s in val if s.label == 0], detector, workers=0))
    assert np.mean([r.fake_probability >= detector.threshold for r in scored]) <= 0.25
    assert detector.meta.info["metrics"]["model_threshold"] == detector.threshold  # no copy-move check here
    pytest.importorskip("onnxruntime")
    onnx_probs, onnx_familiar, _ = Detector.load(str(result.checkpoint), backend="onnx").score_batch(items)
    np.testing.assert_allclose(onnx_probs, probs, atol=1e-3)


def test_the_neighbour_score_needs_a_whole_image_timm_detector(tmp_path):
    from fakescope.config import load_config
    from fakescope.engine.train import fit

    cfg = load_config(None, {"model.name": "ela-cnn", "epochs": 1, "device": "cpu", "neighbour_score": True,
                             "data.path": [str(tmp_path)], "out": str(tmp_path / "run")})
    with pytest.raises(ValueError, match="neighbour_score needs a whole-image detector with stage statistics"):
        fit(cfg)
