"""Native-resolution crops, patch grids, score aggregation and the PatchDetector through scan, load and fit."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image
from PIL import Image

from fakescope.checkpoint import CheckpointMeta, read_meta, save_checkpoint
from fakescope.config import TrainConfig
from fakescope.data.dataset import ImageDataset
from fakescope.data.discovery import Sample
from fakescope.data.preprocess import Preprocess, grid_origins, native_crop
from fakescope.inference.detector import Detector
from fakescope.inference.kinds.patch import PatchConfig, PatchDetector, PatchPreparer, aggregate, patch_info
from fakescope.inference.scan import scan
from fakescope.registry import create_detector


@pytest.mark.parametrize("h,w,size", [(40, 48, 32), (128, 128, 32), (100, 37, 16), (20, 20, 32), (384, 256, 128)])
def test_grid_covers_the_image_with_windows_inside_it(h, w, size):
    hp, wp = max(h, size), max(w, size)
    covered = np.zeros((hp, wp), dtype=int)
    for top, left in grid_origins(hp, wp, size):
        assert 0 <= top <= hp - size and 0 <= left <= wp - size
        covered[top:top + size, left:left + size] += 1
    assert covered.min() >= 1


def test_grid_minimal_count_and_capped_subset():
    assert len(grid_origins(384, 256, 128)) == 6
    assert len(grid_origins(130, 128, 64)) == 3 * 2
    capped = grid_origins(512, 512, 128, max_patches=4)
    assert capped == [(0, 0), (128, 128), (256, 256), (384, 384)]


def test_aggregation_functions():
    s = np.array([0.1, 0.9, 0.2, 0.6])
    assert aggregate(s, "mean") == pytest.approx(0.45)
    assert aggregate(s, "max") == pytest.approx(0.9)
    assert aggregate(s, "topk", 2) == pytest.approx(0.75)
    assert aggregate(s, "topk", 10) == pytest.approx(0.45)
    with pytest.raises(ValueError):
        aggregate(s, "median")
    with pytest.raises(ValueError):
        aggregate(np.array([]), "mean")


def test_existing_preprocess_keys_are_unchanged():
    # Hashes of the default configurations before the ``resize`` field existed: cached arrays stay valid.
    assert Preprocess().key() == "e5b1458c707ee5e6"
    assert Preprocess(input_mode="rgb", size=224).key() == "ea7a910de932fdc2"
    assert Preprocess(resize="crop").key() != Preprocess().key()
    assert Preprocess.from_dict({k: v for k, v in Preprocess().to_dict().items() if k != "resize"}).resize == "squash"


def test_crop_preprocess_keeps_native_pixels():
    img = make_image((48, 40))
    native = np.asarray(img)
    pre = Preprocess.for_mode("rgb", 32, imagenet_norm=False, resize="crop")
    centre = pre.to_array(img)
    assert np.array_equal(centre, native[4:36, 8:40])
    rng = np.random.default_rng(0)
    crops = [pre.to_array(img, rng) for _ in range(6)]
    assert all(c.shape == (32, 32, 3) for c in crops)
    assert len({c.tobytes() for c in crops}) > 1
    small = native_crop(native[:20, :10], 32)
    assert small.shape == (32, 32, 3) and np.array_equal(small[:20, :10], native[:20, :10])


def test_patch_preparer_stacks_native_windows_and_pickles():
    img = make_image((48, 40))
    pre = Preprocess.for_mode("rgb", 32, imagenet_norm=False, resize="crop")
    prep = PatchPreparer(pre, PatchConfig())
    patches = prep.to_array(img)
    native = np.asarray(img)
    assert patches.shape == (4, 32, 32, 3)
    assert np.array_equal(patches[0], native[:32, :32]) and np.array_equal(patches[-1], native[8:, 16:])
    assert np.array_equal(pickle.loads(pickle.dumps(prep)).to_array(img), patches)
    rand = PatchPreparer(pre, PatchConfig(layout="random", max_patches=5, seed=3))
    assert rand.to_array(img).shape == (5, 32, 32, 3)
    assert np.array_equal(rand.to_array(img), rand.to_array(img))


def test_training_dataset_draws_random_crops_without_cache(tmp_path, tiny_images):
    path = tiny_images(1, size=(48, 40))[0]
    pre = Preprocess.for_mode("rgb", 32, imagenet_norm=False, resize="crop")
    ds = ImageDataset([Sample(path, 1)], pre, augment=None, cache_dir=tmp_path / "cache", random_crop=True)
    assert ds.cache is None
    draws = {ds[0][0].tobytes() for _ in range(8)}
    assert len(draws) > 1
    val = ImageDataset([Sample(path, 1)], pre, augment=None, cache_dir=tmp_path / "cache")
    assert val.cache is not None and np.array_equal(val[0][0], val[0][0])


@pytest.fixture(scope="module")
def patch_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model, pre = create_detector("srm", size=32)
    meta = CheckpointMeta("srm", pre, info=patch_info(pre, PatchConfig(aggregate="mean")))
    return save_checkpoint(tmp_path_factory.mktemp("patch") / "srm.safetensors", model.eval(), meta)


def test_load_builds_patch_detector(patch_checkpoint):
    det = Detector.load(str(patch_checkpoint), device="cpu")
    assert isinstance(det, PatchDetector)
    assert det.config == PatchConfig(aggregate="mean")
    assert patch_info(Preprocess()) == {}
    with pytest.raises(ValueError):
        PatchDetector(det.model, CheckpointMeta("srm", Preprocess()), "x", "cpu")


def test_scan_scores_images_by_aggregating_patches(patch_checkpoint, tiny_images):
    paths = tiny_images(3, size=(48, 40))
    det = Detector.load(str(patch_checkpoint), device="cpu")
    results = {r.path: r for r in scan(paths, det, batch_size=2, workers=0)}
    assert len(results) == 3 and all(r.error is None for r in results.values())
    for path in paths:
        patches = det.preparer.to_array(Image.open(path).convert("RGB"))
        per_patch = det.predict_arrays(patches)
        assert len(per_patch) == 4
        assert results[str(path)].fake_probability == pytest.approx(per_patch.mean(), abs=1e-6)
    top = PatchDetector.from_checkpoint(patch_checkpoint, "srm", "cpu", aggregate="max")
    for r in scan(paths, top, workers=0):
        assert r.fake_probability >= results[r.path].fake_probability - 1e-9


def test_patch_map_has_image_size(patch_checkpoint):
    det = Detector.load(str(patch_checkpoint), device="cpu")
    img = make_image((48, 40))
    heat = det.patch_map(img)
    assert heat.shape == (40, 48) and 0.0 <= heat.min() <= heat.max() <= 1.0


def test_gradcam_of_a_patch_detector_explains_every_patch(patch_checkpoint):
    """Each native 32-px patch of a 64x64 image gets its own CAM, weighted by the patch's fake probability."""
    from fakescope.explain.cam import cam_heatmap, model_cam

    det = Detector.load(str(patch_checkpoint), device="cpu")
    img = make_image((64, 64), seed=5)
    heat = cam_heatmap(det, img, "gradcam")
    assert heat.shape == (64, 64)
    arr = np.asarray(img.convert("RGB"))
    for t, l in [(0, 0), (0, 32), (32, 0), (32, 32)]:
        patch = arr[t:t + 32, l:l + 32][None]
        p = det.patch_probabilities([patch])[0][0]
        expected = model_cam(det.model, "srm", det.preprocess.to_tensor(patch), "gradcam") * p
        np.testing.assert_allclose(heat[t:t + 32, l:l + 32], expected, atol=1e-5)


def test_fit_records_patch_kind(tmp_path, tiny_images):
    from fakescope.engine.train import fit

    for label in ("real", "fake"):
        tiny_images(6, folder=tmp_path / "data" / label, size=(48, 40), prefix=label, seed=1 if label == "fake" else 0)
    cfg = TrainConfig(epochs=1, batch_size=4, device="cpu", out=str(tmp_path / "run"))
    cfg.model.name, cfg.model.size, cfg.model.patch_aggregate, cfg.model.max_patches = "srm", 32, "max", 4
    cfg.data.path, cfg.data.workers, cfg.data.cache = [str(tmp_path / "data")], 0, False
    result = fit(cfg)
    meta = read_meta(result.checkpoint)
    assert meta.info["kind"] == "patch" and meta.preprocess.resize == "crop"
    assert meta.info["patch"]["aggregate"] == "max" and meta.info["patch"]["max_patches"] == 4
    det = Detector.load(str(result.checkpoint), device="cpu")
    assert isinstance(det, PatchDetector) and det.config.aggregate == "max"
    assert len(det.predict_images([make_image((48, 40))])) == 1
    # the final validation scores whole images the way scan does (aggregated patches), not centre crops
    counts = meta.info["data"]["counts"]["val"]
    assert result.metrics["patch"]["aggregate"] == "max" and result.metrics["n"] == counts["real"] + counts["fake"]


def test_fit_refuses_unknown_patch_aggregate(tmp_path):
    from fakescope.engine.train import fit

    cfg = TrainConfig(epochs=1, device="cpu", out=str(tmp_path / "run"))
    cfg.model.name, cfg.model.patch_aggregate = "srm", "median"
    with pytest.raises(ValueError, match="config key model.patch_aggregate: 'median' is not one of mean, max, topk"):
        fit(cfg)


def test_a_content_backbone_becomes_a_patch_detector_with_resize_crop(tmp_path, tiny_images):
    """``--model.resize crop`` turns any squashing detector (here timm ResNet-18) into a native-crop patch model."""
    from fakescope.engine.train import fit

    _, pre = create_detector("resnet18", size=32, resize="crop")
    assert pre.resize == "crop" and pre.size == 32 and pre.mean == create_detector("resnet18")[1].mean
    with pytest.raises(ValueError, match="resize must be one of"):
        create_detector("resnet18", resize="stretch")
    for label in ("real", "fake"):
        tiny_images(4, folder=tmp_path / "data" / label, size=(48, 40), prefix=label, seed=1 if label == "fake" else 0)
    cfg = TrainConfig(epochs=1, batch_size=4, device="cpu", out=str(tmp_path / "run"))
    cfg.model.name, cfg.model.size, cfg.model.resize = "resnet18", 32, "crop"
    cfg.data.path, cfg.data.workers, cfg.data.cache = [str(tmp_path / "data")], 0, False
    checkpoint = fit(cfg).checkpoint
    meta = read_meta(checkpoint)
    assert meta.info["kind"] == "patch" and meta.preprocess.resize == "crop"
    # described like any timm model, from the mean of each image's patch features, and every score says how familiar
    assert "familiarity" in meta.info
    det = Detector.load(str(checkpoint), device="cpu")
    stacks = [det.prepare(make_image((48 + 20 * i, 40), seed=50 + i)) for i in range(3)]  # 2, 2 and 4 patches
    probs, familiar, _ = det.score_batch(stacks)
    np.testing.assert_allclose(probs, det.predict_batch(stacks), atol=1e-6)
    patch_means = np.stack([det.logits_and_features(s)[1].mean(0) for s in stacks])
    np.testing.assert_allclose(det.image_features(stacks), patch_means, atol=1e-5)
    np.testing.assert_allclose(familiar, det.feature_model.familiarity(patch_means), atol=1e-6)


def test_patch_validation_scores_each_image_once_for_both_temperatures(tmp_path, tiny_images):
    """The final validation of a patch model: calibrated metrics and the uncalibrated ECE from one pass."""
    from fakescope.engine.train import _patch_validation
    from fakescope.evaluation.evaluate import score_samples
    from fakescope.evaluation.metrics import compute_metrics

    samples = [Sample(p, label) for label, name in ((0, "real"), (1, "fake"))
               for p in tiny_images(3, folder=name, size=(70, 50), prefix=name, seed=label)]
    cfg = TrainConfig(device="cpu")
    cfg.model.name, cfg.model.size, cfg.data.workers = "srm", 32, 0
    torch.manual_seed(0)
    model, pre = create_detector("srm", size=32)
    model.eval()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    _, metrics = _patch_validation(cfg, model, pre, samples, temperature=2.0)
    patches_per_image = len(grid_origins(50, 70, 32))
    assert sum(calls) == len(samples) * patches_per_image  # one pass, not one per temperature
    plain = PatchDetector(model, CheckpointMeta("srm", pre, temperature=1.0, info=patch_info(pre)), "srm", "cpu")
    labels, probs, _ = score_samples(plain, samples, workers=0)
    assert metrics["ece_uncalibrated"] == pytest.approx(compute_metrics(labels, probs)["ece"], abs=1e-9)
    assert metrics["n"] == len(samples) and metrics["ece"] != metrics["ece_uncalibrated"]
