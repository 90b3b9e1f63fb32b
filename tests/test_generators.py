"""Generators: registry-generated shape/range/gradient checks, learning, checkpoints, CLI and seeded determinism."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fakescope.checkpoint import CheckpointError
from fakescope.cli import app
from fakescope.generators import (
    create_generator,
    get_generator_spec,
    list_generators,
    load_generator,
    save_generator,
)
from fakescope.generators.sample import generate_images
from fakescope.generators.train import (
    GeneratorTrainConfig,
    labelled_files,
    train_generator,
)

SMALL = {"width": 8}
runner = CliRunner()


def _batch(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth images in [-1, 1] (gradients plus blobs), learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        a, b, c = (torch.rand(3, generator=g) * 2 - 1)
        out.append(torch.stack([a * xx, b * yy, c * (xx * yy)]).clamp(-1, 1))
    return torch.stack(out)


def test_registry_lists_the_four_families():
    assert list_generators() == ["ae", "cgan", "dcgan", "vae"]
    assert get_generator_spec("cgan").conditional and not get_generator_spec("dcgan").conditional
    with pytest.raises(KeyError, match="unknown generator"):
        create_generator("stylegan9")


@pytest.mark.parametrize("name", list_generators())
@pytest.mark.parametrize("size", [32, 64])
def test_sample_shape_range_and_train_step(name: str, size: int):
    model = create_generator(name, size=size, num_classes=3 if name == "cgan" else 1, **SMALL)
    images = model.sample(5, torch.Generator().manual_seed(1))
    assert images.shape == (5, 3, size, size)
    assert images.min() >= -1.0 and images.max() <= 1.0 and torch.isfinite(images).all()
    before = [p.detach().clone() for p in model.parameters()]
    losses = model.train_step(_batch(4, size), torch.tensor([0, 1, 2, 0]) % model.num_classes,
                              model.configure_optimizers())
    assert losses and all(np.isfinite(v) for v in losses.values())
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed >= len(before) // 2  # every network that has a loss got a gradient step


def test_dcgan_64_is_the_classic_architecture():
    model = create_generator("dcgan", size=64)
    convt = [m for m in model.generator if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in convt] == [512, 256, 128, 64, 3]
    assert isinstance(model.generator[-1], torch.nn.Tanh)
    assert sum(p.numel() for p in model.generator.parameters()) == 3_576_704  # the PyTorch DCGAN example's G
    assert model.discriminator(torch.zeros(2, 3, 64, 64)).shape == (2,)


@pytest.mark.parametrize("size", [8, 48, 100])
def test_bad_sizes_are_refused(size: int):
    with pytest.raises(ValueError, match="power of two"):
        create_generator("dcgan", size=size)


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_a_few_steps_lower_reconstruction_error(name: str):
    model = create_generator(name, size=32, latent_dim=16, **SMALL)
    x = _batch(8, 32)
    opts = model.configure_optimizers(3e-3)
    start = model.reconstruction_error(x)
    for _ in range(40):
        model.train_step(x, torch.zeros(8, dtype=torch.long), opts)
    assert model.reconstruction_error(x) < 0.7 * start  # measured: about 0.35-0.45 x


def test_vae_loss_parts_and_reparameterisation():
    model = create_generator("vae", size=32, latent_dim=16, **SMALL)
    losses = model.loss(_batch(4, 32))
    assert losses["kl"] >= 0 and torch.isclose(losses["loss"], losses["recon"] + losses["kl"])
    mu, logvar = torch.zeros(1000, 4), torch.full((1000, 4), np.log(4.0))
    z = model.reparameterize(mu, logvar)
    assert abs(float(z.std()) - 2.0) < 0.15  # sigma = exp(0.5 * logvar) = 2


def test_conditional_labels_change_the_output_and_are_checked():
    model = create_generator("cgan", size=32, num_classes=2, **SMALL)
    a = model.sample(3, torch.Generator().manual_seed(0), labels=0)
    b = model.sample(3, torch.Generator().manual_seed(0), labels=1)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="labels must be in"):
        model.sample(2, labels=5)
    with pytest.raises(ValueError, match="not conditional"):
        create_generator("dcgan", size=32, **SMALL).sample(2, labels=0)


def test_checkpoint_round_trip_gives_identical_samples(tmp_path: Path):
    model = create_generator("vae", size=32, latent_dim=8, **SMALL)
    path = save_generator(tmp_path / "g.safetensors", model, "vae", {"latent_dim": 8, **SMALL, "num_classes": 1})
    loaded, meta = load_generator(path)
    assert meta.info["kind"] == "generator" and meta.architecture == "vae"
    def g() -> torch.Generator:
        return torch.Generator().manual_seed(3)

    assert torch.equal(model.eval().sample(4, g()), loaded.sample(4, g()))


def test_detector_checkpoints_are_not_generators(tiny_ela_checkpoint: Path):
    with pytest.raises(CheckpointError, match="not a generator checkpoint"):
        load_generator(tiny_ela_checkpoint)


def test_labels_from_layouts(tiny_images, tmp_path: Path):
    tiny_images(2, "rf/real"), tiny_images(3, "rf/fake", seed=1)
    files, labels, names = labelled_files(tmp_path / "rf", conditional=True)
    assert names == ["real", "fake"] and sorted(labels) == [0, 0, 1, 1, 1]
    tiny_images(2, "cls/cats"), tiny_images(1, "cls/dogs", seed=2)
    files, labels, names = labelled_files(tmp_path / "cls", conditional=True)
    assert names == ["cats", "dogs"] and labels == [0, 0, 1]
    files, labels, names = labelled_files(tmp_path / "cls", conditional=False)
    assert len(files) == 3 and names == []


def test_train_generator_writes_checkpoint_grids_and_curves(tiny_images, tmp_path: Path):
    tiny_images(6, "faces", size=(40, 48))
    cfg = GeneratorTrainConfig(model="dcgan", data=str(tmp_path / "faces"), out=str(tmp_path / "run"), epochs=2,
                               size=32, batch_size=4, grid=16, model_kwargs=SMALL)
    result = train_generator(cfg)
    run = tmp_path / "run"
    assert [h["epoch"] for h in result.history] == [1, 2]
    grid = Image.open(run / "samples_epoch002.png")
    assert grid.size == (8 * 34 + 2, 2 * 34 + 2)  # 8 x 2 tiles of 32 px with torchvision's 2 px padding
    rows = list(csv.DictReader((run / "losses.csv").read_text().splitlines()))
    assert len(rows) == 4 and {"loss_d", "loss_g"} <= set(rows[0])  # 2 epochs x 2 steps of 4 + 2 images
    assert (run / "losses.png").stat().st_size > 0
    model, meta = load_generator(result.checkpoint)
    assert meta.info["epochs"] == 2 and model.size == 32


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_cli_train_and_generate_is_deterministic(tiny_images, tmp_path: Path):
    tiny_images(3, "data/real"), tiny_images(3, "data/fake", seed=1)
    res = runner.invoke(app, ["train-generator", "--model", "cgan", "--data", str(tmp_path / "data"), "--epochs", "1",
                              "--size", "32", "--batch-size", "3", "--width", "8", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    ckpt = str(tmp_path / "run" / "generator.safetensors")
    for out, seed in (("a", 7), ("b", 7), ("c", 8)):
        res = runner.invoke(app, ["generate", "--model", ckpt, "-n", "5", "--out", str(tmp_path / out), "--seed",
                                  str(seed), "--label", "fake"])
        assert res.exit_code == 0, res.output
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert len(a) == 5 and all(n.startswith("gen_fake_") and n.endswith(".png") for n in a)
    assert a == b and a != c
    assert Image.open(tmp_path / "a" / "gen_fake_00000.png").size == (32, 32)
    res = runner.invoke(app, ["generate", "--model", ckpt, "--out", str(tmp_path / "d"), "--label", "dogs"])
    assert res.exit_code == 1 and "unknown label" in res.output


def test_generate_resize_and_jpeg(tmp_path: Path):
    model = create_generator("ae", size=16, latent_dim=4, **SMALL)
    ckpt = save_generator(tmp_path / "ae.safetensors", model, "ae", {"latent_dim": 4, **SMALL, "num_classes": 1})
    paths = generate_images(ckpt, 3, tmp_path / "out", image_format="jpg", quality=75, resize=64)
    assert [p.suffix for p in paths] == [".jpg"] * 3
    assert Image.open(paths[0]).size == (64, 64) and Image.open(paths[0]).format == "JPEG"
    with pytest.raises(ValueError, match="not conditional"):
        generate_images(ckpt, 1, tmp_path / "x", label="real")
