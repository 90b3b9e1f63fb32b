"""Explanations: CAMs for every registered detector, model-free views, overlays and the explain command."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_grad_cam
import torch
import tqdm
from conftest import make_image
from PIL import Image
from typer.testing import CliRunner

from fakescope.checkpoint import CheckpointMeta
from fakescope.cli import app
from fakescope.explain import (
    ExplainError,
    cam_heatmap,
    ela_view,
    explain_image,
    heatmap,
    noise_view,
    overlay,
)
from fakescope.explain.cam import target_layer
from fakescope.forensics.noise import noise_map
from fakescope.inference.detector import Detector
from fakescope.progress import reporting
from fakescope.registry import create_detector, get_spec, list_detectors

runner = CliRunner()
IMAGE_SIZE = (48, 40)  # width, height: not square, so a map left at the model's input size would be caught
# Test-only speed-ups that keep the explained layer as registered: VGG's 7x7 fc6 convolution holds 100M
# parameters whose initialisation alone takes ~15 s on this machine; a narrower fc6 leaves ``features`` alone.
FAST_KWARGS = {"vgg16": {"mlp_ratio": 1 / 16}}


def tiny_detector(name: str, seed: int = 0, input_mode: str | None = None) -> Detector:
    """An untrained, seeded detector at the smallest input its registry entry allows."""
    torch.manual_seed(seed)
    spec = get_spec(name)
    model, pre = create_detector(name, input_mode=input_mode, size=None if spec.fixed_size else 64,
                                 **FAST_KWARGS.get(name, {}))
    return Detector(model, CheckpointMeta(name, pre), name, device="cpu")


def _check_map(m: np.ndarray) -> None:
    assert m.shape == (IMAGE_SIZE[1], IMAGE_SIZE[0])
    assert m.dtype == np.float32 and np.isfinite(m).all()
    assert 0.0 <= m.min() and m.max() <= 1.0


@pytest.mark.parametrize("name", list_detectors())
def test_cam_of_every_registered_detector(name: str) -> None:
    img = make_image(IMAGE_SIZE)
    det = tiny_detector(name)
    plus = cam_heatmap(det, img, "gradcam++")
    _check_map(plus)
    assert plus.std() > 1e-3, f"{name}: Grad-CAM++ map is constant; is target_layer {get_spec(name).target_layer!r} spatial?"
    # Grad-CAM keeps only positive evidence for "fake": an untrained head can have none for every pixel, so
    # the map must vary for at least one of a few seeded initialisations.
    varying = False
    for seed in range(3):
        grad = cam_heatmap(det if seed == 0 else tiny_detector(name, seed), img, "gradcam")
        _check_map(grad)
        if grad.std() > 1e-3:
            varying = True
            break
    assert varying, f"{name}: Grad-CAM map constant for seeds 0-2"
    assert not target_layer(det.model, name)._forward_hooks, "CAM hooks were not released"


def test_cam_on_rgb_plus_ela_input_overlays_the_rgb_image() -> None:
    img = make_image(IMAGE_SIZE, seed=3)
    det = tiny_detector("resnet18", input_mode="rgb+ela")
    assert det.preprocess.channels == 6
    heat = cam_heatmap(det, img, "gradcam++")
    _check_map(heat)
    picture = overlay(img, heat)
    assert picture.size == img.size and picture.mode == "RGB"
    assert np.abs(np.asarray(picture, dtype=int) - np.asarray(img, dtype=int)).mean() > 5


def test_score_cam_on_the_ela_cnn_reports_to_fakescope_progress_and_prints_no_bar(capfd) -> None:
    """pytorch-grad-cam's Score-CAM loops with a bare tqdm bar on stderr; fakescope routes that loop to its own
    (silent unless a caller installed a tracker) and leaves the user's tqdm alone."""
    det = tiny_detector("ela-cnn")
    reported: list[tuple[int | None, str]] = []

    def tracker(steps, total, description):
        reported.append((total, description))
        return steps

    with reporting(tracker):
        heat = cam_heatmap(det, make_image(IMAGE_SIZE), "scorecam")
    _check_map(heat)
    assert heat.std() > 1e-3
    assert reported == [(64 // 16, "Score-CAM")]  # features.5's 64 channels in pytorch-grad-cam's batches of 16
    _check_map(cam_heatmap(det, make_image(IMAGE_SIZE), "scorecam"))  # no tracker: nothing at all
    assert capfd.readouterr() == ("", "")
    assert pytorch_grad_cam.score_cam.tqdm is tqdm
    assert not det.model._forward_pre_hooks, "the channels-last input hook was not removed"


def test_cam_works_inside_inference_mode_and_with_frozen_weights() -> None:
    det = tiny_detector("ela-cnn")
    img = make_image(IMAGE_SIZE)
    expected = cam_heatmap(det, img, "gradcam++")
    det.model.requires_grad_(False)
    with torch.inference_mode():
        got = cam_heatmap(det, img, "gradcam++")
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert all(p.grad is None for p in det.model.parameters())


def test_explain_errors() -> None:
    img = make_image(IMAGE_SIZE)
    with pytest.raises(ExplainError, match="unknown method"):
        heatmap(img, "lime")
    with pytest.raises(ExplainError, match="needs a detector"):
        explain_image(img, "gradcam")

    det = tiny_detector("ela-cnn")
    det.model = None  # an ONNX detector loaded from its .onnx file alone
    with pytest.raises(ExplainError, match="no single model"):
        cam_heatmap(det, img)
    det = tiny_detector("ela-cnn")
    det.meta.architecture = "not-registered"
    with pytest.raises(ExplainError, match="unknown detector"):
        cam_heatmap(det, img)


def _spliced(seed: int = 1) -> tuple[Image.Image, np.ndarray]:
    """A JPEG-q75 photo-like image with a never-compressed noisy square pasted in, and the square's mask."""
    base = make_image((96, 80), seed=seed)
    import io

    buf = io.BytesIO()
    base.save(buf, format="JPEG", quality=75)
    img = np.asarray(Image.open(buf).convert("RGB")).copy()
    rng = np.random.default_rng(seed)
    img[24:56, 32:72] = np.clip(img[24:56, 32:72] + rng.normal(0, 30, (32, 40, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros(img.shape[:2], bool)
    mask[24:56, 32:72] = True
    return Image.fromarray(img), mask


@pytest.mark.parametrize("method", ["ela", "noise"])
def test_model_free_maps_light_up_the_pasted_region(method: str) -> None:
    img, mask = _spliced()
    m = heatmap(img, method)
    assert m.shape == mask.shape and 0 <= m.min() and m.max() <= 1
    assert m[mask].mean() > 2 * m[~mask].mean()


def test_views_are_rgb_images_of_the_input_size() -> None:
    img, _ = _spliced()
    for view in (ela_view(img), noise_view(img), explain_image(img, "noise")):
        assert view.size == img.size and view.mode == "RGB"
    assert noise_map(Image.new("RGB", (20, 10), (128, 128, 128))).max() == 0.0


def test_explain_command(tmp_path: Path, tiny_images, tiny_ela_checkpoint: Path) -> None:
    paths = tiny_images(2, folder="in")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    res = runner.invoke(app, ["explain", str(tmp_path / "in"), "--method", "gradcam", "--model",
                              str(tiny_ela_checkpoint), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{p.stem}_gradcam.png" for p in paths)
    assert Image.open(tmp_path / "out" / written[0]).size == Image.open(paths[0]).size
    assert "2 gradcam images written" in res.output and "; 1 error\n" in res.output
    res = runner.invoke(app, ["explain", str(paths[0]), "--method", "noise", "--out", str(tmp_path / "n")])
    assert res.exit_code == 0 and (tmp_path / "n" / f"{paths[0].stem}_noise.png").is_file()
    res = runner.invoke(app, ["explain", str(paths[0]), "--method", "lime"])
    assert res.exit_code == 2


def test_explain_scorecam_into_a_pipe_prints_only_its_result_line(tmp_path: Path, tiny_images,
                                                                   tiny_ela_checkpoint: Path) -> None:
    paths = tiny_images(1)
    res = runner.invoke(app, ["explain", str(paths[0]), "--method", "scorecam", "--model", str(tiny_ela_checkpoint),
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert res.output == f"1 scorecam image written to {tmp_path / 'out'}; 0 errors\n"
    assert (tmp_path / "out" / f"{paths[0].stem}_scorecam.png").is_file()


def test_explain_says_which_file_a_numbered_picture_shows(tmp_path: Path) -> None:
    """Two inputs called photo.png cannot both become photo_ela.png: the second is numbered, and the command says so."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        make_image(seed=len(folder)).save(tmp_path / folder / "photo.png")
    res = runner.invoke(app, ["explain", str(tmp_path / "a" / "photo.png"), str(tmp_path / "b" / "photo.png"),
                              "--method", "ela", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo-2_ela.png", "photo_ela.png"]
    assert f"{tmp_path / 'b' / 'photo.png'} -> photo-2_ela.png" in res.output
    assert "2 ela images written" in res.output and "; 0 errors" in res.output
