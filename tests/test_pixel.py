"""Pixel-level supervision from tampering masks (``mask_loss``): mask discovery, augmentation that keeps image and
mask aligned, the loss, the training-only head on every registered image detector, and a tiny ``fit``."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image
from PIL import Image
from torch import nn

from fakescope.checkpoint import load_checkpoint, unwrap
from fakescope.config import AugmentConfig, load_config
from fakescope.data.augment import build_augment
from fakescope.data.dataset import ImageDataset
from fakescope.data.discovery import discover_samples
from fakescope.data.masks import CLEAN, find_masks, load_mask, pixel_targets
from fakescope.data.preprocess import Preprocess
from fakescope.engine.parallel import check_config
from fakescope.engine.pixel import DetectorLoss, MaskSupervised, pixel_loss
from fakescope.engine.train import fit
from fakescope.forensics.io import ImageLoadError
from fakescope.registry import create_detector, get_spec, list_detectors
from fakescope.video.clips import clip_spec


def spliced_set(root: Path, n: int = 6, size: tuple[int, int] = (64, 48), masks_for: int | None = None) -> Path:
    """real/ + fake/ + masks/: each fake has a bright square pasted at a random place, its mask marks it."""
    rng = np.random.default_rng(0)
    for sub in ("real", "fake", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_image(size, seed=i).save(root / "real" / f"r{i}.png")
        arr = np.asarray(make_image(size, seed=100 + i)).copy()
        mask = np.zeros(arr.shape[:2], np.uint8)
        top, left = int(rng.integers(0, size[1] - 16)), int(rng.integers(0, size[0] - 16))
        arr[top:top + 16, left:left + 16] = 250
        mask[top:top + 16, left:left + 16] = 255
        Image.fromarray(arr).save(root / "fake" / f"f{i}.png")
        if masks_for is None or i < masks_for:
            Image.fromarray(mask).save(root / "masks" / f"f{i}_gt.png")
    return root


def test_pixel_targets_follow_the_sets_masks(tmp_path):
    root = spliced_set(tmp_path / "set", n=3, masks_for=2)
    samples = discover_samples(root)  # masks/ is never read as images
    assert len(samples) == 6
    assert set(find_masks(root)) == {"f0", "f1"}
    targets = dict(zip((s.path.stem for s in samples), pixel_targets(samples, root)))
    assert targets["r0"] == CLEAN and targets["f0"] == root / "masks" / "f0_gt.png" and targets["f2"] is None
    plain = tmp_path / "plain"
    for sub in ("real", "fake"):
        (plain / sub).mkdir(parents=True)
        make_image().save(plain / sub / "x.png")
    assert pixel_targets(discover_samples(plain), plain) == [None, None]  # no masks: no pixel target at all


def test_load_mask_binarises_and_fits_the_image(tmp_path):
    Image.fromarray(np.array([[0, 200], [100, 255]], np.uint8)).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", (4, 4))  # (width, height) of the image: resized with nearest neighbours
    assert mask.shape == (4, 4) and set(np.unique(mask)) == {0, 255}
    assert mask[0, 3] == 255 and mask[3, 0] == 0
    assert not load_mask(CLEAN, (5, 3)).any() and load_mask(CLEAN, (5, 3)).shape == (3, 5)
    assert load_mask(None, (5, 3)) is None


def test_augmented_mask_stays_on_the_pasted_region(tmp_path):
    root = spliced_set(tmp_path / "set", n=4)
    samples = [s for s in discover_samples(root) if s.label == 1]
    aug = build_augment(AugmentConfig(flip_p=1.0, rescale_p=1.0, rescale=(0.6, 0.6), blur_p=0.0, jpeg_p=0.0,
                                      color_p=0.0))
    pre = Preprocess.for_mode("rgb", 32, imagenet_norm=False)
    ds = ImageDataset(samples, pre, aug, pixel_targets=pixel_targets(samples, root))
    for i in range(len(ds)):
        arr, label, mask, known = ds[i]
        assert (arr.shape, mask.shape, label, known) == ((32, 32, 3), (32, 32), 1, 1.0)
        inside, outside = arr[mask > 200].mean(), arr[mask == 0].mean()
        assert inside > 200 and inside > outside + 60  # the bright square is where the mask says, after the flip


def test_shuffled_squares_take_their_mask_with_them(tmp_path):
    root = spliced_set(tmp_path / "set", n=4, size=(64, 64))
    samples = [s for s in discover_samples(root) if s.label == 1]
    pre = Preprocess.for_mode("rgb", 64, imagenet_norm=False)
    plain = ImageDataset(samples, pre, None, pixel_targets=pixel_targets(samples, root))
    shuffled = ImageDataset(samples, pre, None, pixel_targets=pixel_targets(samples, root), patch_shuffle=(1.0, 16))
    torch.manual_seed(0)
    for i in range(len(samples)):
        (a, _, m, _), (b, _, n, _) = plain[i], shuffled[i]
        assert not np.array_equal(a, b) and m.sum() == n.sum()

        def squares(x: np.ndarray) -> list[bytes]:
            return sorted(x[r:r + 16, c:c + 16].tobytes() for r in range(0, 64, 16) for c in range(0, 64, 16))

        assert squares(a) == squares(b) and squares(m) == squares(n)  # the same squares, in another order
        assert b[n > 200].mean() > 200  # and the mask still marks the pasted square's pixels


def test_a_patch_shuffle_detector_reads_its_squares_in_one_fixed_order(tmp_path):
    root = spliced_set(tmp_path / "set", n=2, size=(64, 64))
    samples = [s for s in discover_samples(root) if s.label == 1]
    plain, arranged = (Preprocess.for_mode("rgb", 64, imagenet_norm=False, shuffle=cell) for cell in (0, 16))
    assert plain.key() != arranged.key() and Preprocess.from_dict(arranged.to_dict()) == arranged
    with pytest.raises(ValueError, match="shuffle needs the whole image"):
        Preprocess.for_mode("rgb", 64, imagenet_norm=False, shuffle=16, resize="crop")
    img = Image.open(samples[0].path)
    assert np.array_equal(arranged.to_array(img), arranged.to_array(img))  # scoring: the same order every time
    assert not np.array_equal(arranged.to_array(img), plain.to_array(img))
    heat = np.random.default_rng(0).random((64, 64))
    assert np.array_equal(arranged.arranged(arranged.arranged(heat), inverse=True), heat)  # a CAM goes back in place
    for arr, _, mask, _ in ImageDataset(samples, arranged, None, pixel_targets=pixel_targets(samples, root)):
        assert arr[mask > 200].mean() > 200  # the mask is arranged with its image


def test_pixel_loss_values():
    cells = torch.zeros(2, 1, 2, 2, requires_grad=True)
    masks = torch.zeros(2, 8, 8, dtype=torch.uint8)
    masks[0, :4, :4] = 255
    known = torch.tensor([1.0, 0.0])
    loss = pixel_loss(cells, masks, known)
    assert loss.item() == pytest.approx(math.log(2))  # logits 0 against any target share: log 2
    loss.backward()
    assert cells.grad[1].abs().sum() == 0 and cells.grad[0].abs().sum() > 0  # the unknown sample adds nothing
    right = torch.full((2, 1, 2, 2), -8.0)
    right[0, 0, 0, 0] = 8.0
    assert pixel_loss(right, masks, known) < 0.01
    nothing = pixel_loss(cells, masks, torch.zeros(2))
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_detector_loss_adds_the_weighted_pixel_term():
    logits, labels = torch.tensor([[2.0, -1.0]]), torch.tensor([0])
    cells, masks, known = torch.zeros(1, 1, 2, 2), torch.full((1, 4, 4), 255, dtype=torch.uint8), torch.ones(1)
    ce = nn.functional.cross_entropy(logits, labels)
    loss = DetectorLoss(nn.CrossEntropyLoss(), 0.5)
    assert loss(logits, labels).item() == pytest.approx(ce.item())
    assert loss((logits, cells), labels, masks, known).item() == pytest.approx(ce.item() + 0.5 * math.log(2))


IMAGE_DETECTORS = [n for n in list_detectors() if clip_spec(get_spec(n).preprocess) is None]


@pytest.mark.parametrize("name", IMAGE_DETECTORS)
def test_every_image_detector_takes_the_mask_head(name):
    spec = get_spec(name)
    size = spec.preprocess.size if spec.fixed_size else (32 if name == "vgg16" else 64)
    torch.manual_seed(0)
    detector, pre = create_detector(name, size=size)
    x = torch.randn(2, pre.channels, size, size)
    model = MaskSupervised(detector, spec.target_layer, x[:1])
    logits, cells = model.train()(x)
    assert logits.shape == (2, 2) and cells.ndim == 4 and cells.shape[:2] == (2, 1)
    masks = torch.zeros(2, size, size, dtype=torch.uint8)
    masks[0, : size // 2] = 255
    DetectorLoss(nn.CrossEntropyLoss(), 1.0)((logits, cells), torch.tensor([1, 0]), masks, torch.ones(2)).backward()
    assert model.head.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), detector(x))
    assert unwrap(model) is detector  # what save_checkpoint writes
    assert set(model.state_dict()) == {f"module.{k}" for k in detector.state_dict()} | {"head.weight", "head.bias"}


@pytest.mark.slow
def test_fit_with_mask_loss_saves_the_plain_detector(tmp_path):
    root = spliced_set(tmp_path / "set", n=8)
    cfg = load_config(None, {"model.name": "efficientnet_lite0", "model.size": "64", "data.path": [str(root)],
                             "data.workers": "0", "data.cache": "false", "batch_size": "4", "epochs": "1",
                             "mask_loss": "1.0", "ema": "0.9", "device": "cpu", "out": str(tmp_path / "run")})
    result = fit(cfg)  # with EMA: the averaged copy of the wrapper validates and is saved as the plain detector
    model, meta = load_checkpoint(result.checkpoint)
    plain, _ = create_detector("efficientnet_lite0", size=64)
    assert set(model.state_dict()) == set(plain.state_dict())  # no head in the checkpoint
    assert meta.info["config"]["mask_loss"] == 1.0
    assert math.isfinite(result.history[0]["train_loss"])


def test_a_patch_shuffle_recipe_ships_its_order_with_the_detector(tmp_path):
    from fakescope.inference import Detector

    root = spliced_set(tmp_path / "set", n=6, size=(64, 64))
    cfg = load_config(None, {"model.name": "efficientnet_lite0", "model.size": "64", "model.patch_shuffle": "16",
                             "augment.patch_shuffle_p": "1.0", "augment.patch_shuffle_size": "16",
                             "data.path": [str(root)], "data.workers": "0", "batch_size": "4", "epochs": "1", "mask_loss": "1.0", "device": "cpu",
                             "out": str(tmp_path / "run")})
    with pytest.raises(ValueError, match="must equal model.patch_shuffle"):  # the random squares are not its squares
        load_config(None, {"model.patch_shuffle": "16", "augment.patch_shuffle_p": "1.0"})
    detector = Detector.load(str(fit(cfg).checkpoint), device="cpu")
    assert detector.preprocess.shuffle == 16  # scan, evaluate and serve read the input in the order it trained on
    img = Image.open(next((root / "fake").iterdir()))
    assert detector.explain_map(img).shape == (64, 64)  # the map is put back in the image's own layout


def test_mask_loss_is_refused_where_it_cannot_work(tmp_path):
    plain = tmp_path / "plain"
    for sub in ("real", "fake"):
        (plain / sub).mkdir(parents=True)
        for i in range(3):
            make_image(seed=i).save(plain / sub / f"x{i}.png")
    base = {"model.name": "efficientnet_lite0", "model.size": "64", "data.path": [str(plain)], "data.workers": "0",
            "epochs": "1", "mask_loss": "1", "device": "cpu", "out": str(tmp_path / "run")}
    with pytest.raises(ValueError, match="masks/ folder"):
        fit(load_config(None, base))
    with pytest.raises(ValueError, match="whole-image detector"):
        fit(load_config(None, {**base, "model.resize": "crop"}))
    for strategy in ("pipeline", "tensor"):  # the model is split across ranks: no whole layer for the head
        with pytest.raises(ValueError, match="does not support mask_loss"):
            check_config(load_config(None, {**base, "strategy": strategy}), 2)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "localsgd"])
def test_data_parallel_mask_loss_on_two_processes(tmp_path, strategy):
    """The head lives inside the DDP module: its gradients are all-reduced (ddp) or its weights averaged (localsgd)
    like the backbone's, with no unused-parameter error on batches without masks; rank 0's checkpoint is the plain
    detector."""
    from fakescope.engine.launch import launch_fit

    root = spliced_set(tmp_path / "set", n=8)
    cfg = load_config(None, {"model.name": "efficientnet_lite0", "model.size": "64", "data.path": [str(root)],
                             "data.workers": "0", "data.cache": "false", "batch_size": "4", "epochs": "1",
                             "mask_loss": "1.0", "device": "cpu", "strategy": strategy, "out": str(tmp_path / "run")})
    result = launch_fit(cfg, 2)
    model, meta = load_checkpoint(result.checkpoint)
    assert set(model.state_dict()) == set(create_detector("efficientnet_lite0", size=64)[0].state_dict())
    assert meta.info["config"]["strategy"] == strategy and math.isfinite(result.history[0]["train_loss"])


@pytest.mark.parametrize("known", [1.0, 0.0])
def test_training_loop_hands_the_masks_to_the_loss(known):
    """``train_one_epoch`` passes a batch's masks to the loss: the zero-initialised head learns from known masks and,
    with SGD and no known mask, gets no gradient at all, so it stays exactly zero."""
    from fakescope.engine.loops import EpochOptions, train_one_epoch

    torch.manual_seed(0)
    detector, pre = create_detector("efficientnet_lite0", size=64)
    arrays = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    model = MaskSupervised(detector, get_spec("efficientnet_lite0").target_layer, pre.to_tensor(arrays[:1]))
    masks = torch.zeros(4, 64, 64, dtype=torch.uint8)
    masks[:2, :32] = 255
    batch = (arrays, torch.tensor([1, 1, 0, 0]), masks, torch.full((4,), known))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(model, [batch], torch.device("cpu"),
                    EpochOptions(optimizer, DetectorLoss(nn.CrossEntropyLoss(), 1.0), pre.to_tensor))
    moved = model.head.weight.abs().sum() > 0
    assert bool(moved) == bool(known)


def test_mask_is_decoded_as_its_image_is(tmp_path):
    """A mask goes through the one decode function: turned by its EXIF orientation as the image is (not stretched
    to fit), and a malformed file is one line naming it, whatever Pillow raised (a TypeError here)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    stored = np.array([[255, 255, 0, 0], [255, 255, 0, 0]], np.uint8)  # 4 wide, 2 high: left half tampered
    Image.fromarray(stored).save(tmp_path / "turned.png", exif=exif)
    assert load_mask(tmp_path / "turned.png", (2, 4)).tolist() == [[255, 255], [255, 255], [0, 0], [0, 0]]
    bad = tmp_path / "bad_mask.webp"
    bad.write_bytes((Path(__file__).parent / "fixtures" / "malformed" / "WEBP_TypeError.bin").read_bytes())
    with pytest.raises(ImageLoadError) as err:
        load_mask(bad, (4, 4))
    assert str(err.value).startswith(f"{bad}: unreadable mask (") and "\n" not in str(err.value)
