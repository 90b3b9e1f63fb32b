"""A tiny real training run through ``fit()`` and ``fakescope train``: loss goes down, the run folder is complete,
the checkpoint carries its metadata, and ``last.pt`` resumes at the next epoch.

Recipe: ELA-CNN on 24 + 24 images of faces140k, batch 4, Adam 1e-5, 2 epochs, no augmentation, workers 0. With
these settings the epoch-2 training loss was below epoch 1 for 12 of 12 seeds tried (0-11); the test uses seed 0.
"""
from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from fakescope import __version__
from fakescope.checkpoint import load_checkpoint, read_meta
from fakescope.cli import app
from fakescope.config import TrainConfig, load_config, to_dict
from fakescope.engine.train import HISTORY_FIELDS, FitResult, fit
from fakescope.inference.detector import Detector
from fakescope.registry import create_detector

pytestmark = [pytest.mark.slow, pytest.mark.data]

OVERRIDES = {"model.name": "ela-cnn", "data.max_per_class": "24", "data.workers": "0", "augment.enabled": "false",
             "optim.lr": "1e-5", "batch_size": "4", "epochs": "2", "seed": "0", "device": "cpu"}


@pytest.fixture(scope="module")
def faces(data_root: Path) -> Path:
    folder = data_root / "faces140k"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def run(faces, cache_dir, tmp_path_factory) -> tuple[TrainConfig, FitResult]:
    out = tmp_path_factory.mktemp("run") / "ela"
    cfg = load_config(None, {**OVERRIDES, "data.path": [str(faces)], "data.cache_dir": str(cache_dir), "out": str(out)})
    return cfg, fit(cfg)


def read_history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fit_lowers_training_loss(run):
    _, result = run
    assert [row["epoch"] for row in result.history] == [1, 2]
    first, second = (row["train_loss"] for row in result.history)
    assert second < first


def test_run_folder_has_history_config_and_metrics(run):
    cfg, result = run
    out = Path(cfg.out)
    with open(out / "history.csv", newline="") as f:
        assert next(csv.reader(f)) == HISTORY_FIELDS
    rows = read_history(out / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["train_loss"]) == pytest.approx(result.history[1]["train_loss"])
    assert load_config(out / "config.yaml") == cfg
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "roc_auc", "ece", "ece_uncalibrated", "temperature", "confusion_matrix"):
        assert key in metrics["validation"], key
    counts = metrics["counts"]
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == 48
    assert counts["val"] == {"real": 5, "fake": 5}
    assert (out / "last.pt").is_file()


def test_best_checkpoint_metadata(run):
    cfg, result = run
    assert result.checkpoint == Path(cfg.out) / "best.safetensors"
    meta = read_meta(result.checkpoint)
    assert meta.architecture == "ela-cnn"
    assert meta.preprocess == create_detector("ela-cnn")[1]
    assert meta.class_names == ["real", "fake"]
    assert meta.info["data"]["path"] == cfg.data.path
    assert meta.info["data"]["counts"] == json.loads((Path(cfg.out) / "metrics.json").read_text())["counts"]
    assert meta.info["metrics"]["accuracy"] == result.metrics["accuracy"]
    assert meta.temperature == pytest.approx(result.metrics["temperature"])
    assert meta.info["fakescope_version"] == __version__
    assert meta.info["config"] == to_dict(cfg)
    with safe_open(str(result.checkpoint), framework="pt") as f:
        header = json.loads(f.metadata()["fakescope"])
    assert header["fakescope_version"] == __version__ and header["format_version"] == 1


def test_best_checkpoint_loads_as_detector(run, faces):
    _, result = run
    detector = Detector.load(str(result.checkpoint), device="cpu")
    from fakescope.forensics.io import load_image

    images = [load_image(p) for p in sorted((faces / "fake").iterdir())[:3]]
    probs = detector.predict_images(images)
    assert probs.shape == (3,) and ((probs >= 0) & (probs <= 1)).all()
    model, meta = load_checkpoint(result.checkpoint)
    with torch.no_grad():
        logits = model(meta.preprocess.to_tensor(np.stack([meta.preprocess.to_array(im) for im in images])))
    expected = torch.softmax(logits / meta.temperature, 1)[:, 1].numpy()
    assert probs == pytest.approx(expected, abs=1e-6)


def test_resume_from_last_continues_at_next_epoch(run, tmp_path):
    cfg, result = run
    resumed = tmp_path / "resumed"
    shutil.copytree(cfg.out, resumed)
    state = torch.load(resumed / "last.pt", weights_only=True)
    assert state["epoch"] == 2
    again = fit(replace(cfg, epochs=3, out=str(resumed), resume=str(resumed / "last.pt")))
    assert [row["epoch"] for row in again.history] == [1, 2, 3]
    assert again.history[:2] == result.history  # the first two epochs come from the saved state, not retrained
    assert [int(r["epoch"]) for r in read_history(resumed / "history.csv")] == [1, 2, 3]
    assert torch.load(resumed / "last.pt", weights_only=True)["epoch"] == 3
    assert read_meta(resumed / "best.safetensors").architecture == "ela-cnn"


def test_resume_into_a_new_folder(run, tmp_path):
    """Forking a finished run into another folder must not lose its best checkpoint."""
    cfg, _ = run
    forked = fit(replace(cfg, epochs=3, out=str(tmp_path / "fork"), resume=str(Path(cfg.out) / "last.pt")))
    assert [row["epoch"] for row in forked.history] == [1, 2, 3]
    assert forked.checkpoint.is_file()


def test_train_cli_matches_fit(run, faces, cache_dir, tmp_path):
    _, result = run
    out = tmp_path / "cli-run"
    args = ["train", "--data", str(faces), "--model", "ela-cnn", "--epochs", "2", "--batch-size", "4",
            "--out", str(out), "--device", "cpu"]
    for key, value in OVERRIDES.items():
        if key not in ("model.name", "epochs", "batch_size", "device"):
            args += [f"--{key}", value]
    args += ["--data.cache_dir", str(cache_dir), "--target_fpr", "0.2"]  # the threshold does not change the losses
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "epoch   1" in res.stdout and "epoch   2" in res.stdout and "best checkpoint" in res.stdout
    held_out = json.loads((out / "metrics.json").read_text())["validation"]["fpr_held_out"]
    assert f"{held_out:.1%} when chosen on the others" in " ".join(res.stdout.split())
    assert "Traceback" not in res.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 1e-5 and saved["augment"]["enabled"] is False
    cli_losses = [float(r["train_loss"]) for r in read_history(out / "history.csv")]
    assert cli_losses == pytest.approx([row["train_loss"] for row in result.history], rel=1e-5)
    assert (out / "best.safetensors").is_file() and (out / "metrics.json").is_file()


def test_epoch_order_depends_on_seed_and_epoch_only():
    """A resumed run must draw epoch k as an uninterrupted run does, not repeat epoch 1's order."""
    from torch.utils.data import DataLoader, WeightedRandomSampler

    from fakescope.engine.loaders import seed_epoch

    def order(epoch: int, warm_up: int = 0) -> list[int]:
        sampler = WeightedRandomSampler([1.0] * 20, 20, generator=torch.Generator().manual_seed(0))
        dl = DataLoader(list(range(20)), sampler=sampler, batch_size=20, generator=torch.Generator().manual_seed(0))
        for _ in range(warm_up):  # a run that has already drawn earlier epochs
            next(iter(dl))
        seed_epoch(dl, 0, epoch)
        return next(iter(dl)).tolist()

    assert order(2) == order(2, warm_up=1)  # resumed at epoch 2 == second epoch of one run
    assert order(1) != order(2)


def test_tensorboard_logs_every_epoch(tmp_path, tiny_images):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for label in ("real", "fake"):
        tiny_images(6, folder=tmp_path / "data" / label, prefix=label, seed=int(label == "fake"))
    cfg = load_config(None, {"model.name": "srm", "model.size": 32, "epochs": 2, "batch_size": 4, "device": "cpu",
                             "data.path": [str(tmp_path / "data")], "data.workers": 0, "data.cache": False,
                             "tensorboard": "true", "out": str(tmp_path / "run")})
    fit(cfg)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("val_loss")] == [1, 2]
    assert {"train_loss", "val_roc_auc", "lr"} <= set(events.Tags()["scalars"])


def test_keep_last_ships_the_final_epoch(tmp_path, tiny_images):
    """``keep: last`` keeps the end of the schedule whatever the validation loss did; other values are refused."""
    for label in ("real", "fake"):
        tiny_images(6, folder=tmp_path / "data" / label, prefix=label, seed=int(label == "fake"))
    cfg = load_config(None, {"model.name": "srm", "model.size": 32, "epochs": 3, "patience": 10, "batch_size": 4,
                             "device": "cpu", "data.path": [str(tmp_path / "data")], "data.workers": 0,
                             "data.cache": False, "keep": "last", "out": str(tmp_path / "run")})
    result = fit(cfg)
    assert len(result.history) == 3
    final = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    kept, _ = load_checkpoint(result.checkpoint)
    assert all(torch.equal(v, final[k]) for k, v in kept.state_dict().items())
    with pytest.raises(ValueError, match="config key keep: 'final' is not one of best, last"):
        fit(replace(cfg, keep="final"))


@pytest.mark.parametrize("model", ["srm", "resnet18"])  # a patch detector (scored by scan) and a whole-image one
def test_threshold_bound_holds_in_every_data_folder(tmp_path, tiny_images, model):
    """``target_fpr`` is met on each folder's validation reals: the shipped threshold is the strictest folder's."""
    from fakescope.engine.loaders import folder_splits
    from fakescope.evaluation.evaluate import score_samples
    from fakescope.evaluation.metrics import held_out_fpr, threshold_at_fpr

    roots = [tmp_path / name for name in ("a", "b")]
    for k, root in enumerate(roots):
        for label in ("real", "fake"):
            tiny_images(25, folder=root / label, prefix=label, seed=10 * k + int(label == "fake"))
    cfg = load_config(None, {"model.name": model, "model.size": 32, "epochs": 1, "batch_size": 4, "device": "cpu",
                             "data.path": [str(r) for r in roots], "data.workers": 0, "data.cache": False,
                             "target_fpr": "0.5", "out": str(tmp_path / "run")})
    result = fit(cfg)
    detector = Detector.load(str(result.checkpoint), device="cpu")
    per_folder = [v for _, v in folder_splits(cfg)]
    scored = [score_samples(detector, v, workers=0) for v in per_folder]
    labels = [y for ys, _, _ in scored for y in ys]
    probs = [p for _, ps, _ in scored for p in ps]
    groups = [i for i, (ys, _, _) in enumerate(scored) for _ in ys]
    assert detector.threshold == pytest.approx(threshold_at_fpr(labels, probs, 0.5, groups), abs=1e-6)
    # and the checkpoint records the rate a threshold chosen the same way flags on reals it was not chosen on
    recorded = detector.meta.info["metrics"]["fpr_held_out"]
    assert recorded == pytest.approx(held_out_fpr(labels, probs, 0.5, groups)["fpr"], abs=1e-9)
    for ys, ps, _ in scored:
        reals = [p for y, p in zip(ys, ps) if y == 0]
        assert np.mean(np.array(reals) >= detector.threshold) <= 0.5


def test_layer_decay_trains_early_blocks_slower(tmp_path, tiny_images):
    """``optim.layer_decay``: timm's layer-wise groups, each parameter once, the head and any training-only head
    at ``lr``, the stem at ``lr * decay ** (layers - 1)``; weight decay unchanged; ``fit`` trains with it."""
    from fakescope.config import OptimConfig
    from fakescope.engine.optim import parameter_groups
    from fakescope.engine.pixel import MaskSupervised
    from fakescope.registry import get_spec

    model, pre = create_detector("efficientnet_lite0")
    wrapped = MaskSupervised(model, get_spec("efficientnet_lite0").target_layer, torch.zeros(1, 3, 64, 64))
    cfg = OptimConfig(name="adamw", lr=1e-3, weight_decay=0.01, layer_decay=0.8)
    groups = parameter_groups(cfg, wrapped, wrapped.parameters())
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in wrapped.parameters())  # each parameter exactly once
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(model.get_classifier().weight)] == lr_of[id(wrapped.head.weight)] == pytest.approx(1e-3)
    n_layers = len({g["lr"] for g in groups})
    assert lr_of[id(model.conv_stem.weight)] == pytest.approx(1e-3 * 0.8 ** (n_layers - 1))
    assert all(g.get("weight_decay", cfg.weight_decay) == 0.01 for g in groups)
    assert parameter_groups(replace(cfg, layer_decay=None), model, model.parameters())[0] is next(model.parameters())
    with pytest.raises(ValueError, match="timm backbone"):
        parameter_groups(cfg, torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        parameter_groups(replace(cfg, layer_decay=1.5), model, model.parameters())

    for label in ("real", "fake"):
        tiny_images(6, folder=tmp_path / "data" / label, prefix=label, seed=int(label == "fake"))
    run = load_config(None, {"model.name": "resnet18", "model.size": 32, "epochs": 1, "batch_size": 4, "device": "cpu",
                             "data.path": [str(tmp_path / "data")], "data.workers": 0, "data.cache": False,
                             "optim.layer_decay": "0.7", "optim.schedule": "none", "out": str(tmp_path / "run")})
    result = fit(run)
    assert float(result.history[0]["lr"]) == pytest.approx(run.optim.lr)  # the top group's rate is the one logged
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["optim"]["layer_decay"] == 0.7


def test_real_only_and_fake_only_folders_train_with_pseudo_fakes_and_familiarity(tmp_path, tiny_images):
    """A real-only folder (camera originals) and a fake-only folder join the mix; with ``data.pseudo_fakes`` the
    real-only folder's fakes are made from its reals, the threshold bound counts its reals, and the checkpoint
    describes its training features, so its scans report familiarity."""
    tiny_images(12, folder=tmp_path / "cams" / "real", prefix="cam", size=(72, 64))
    tiny_images(12, folder=tmp_path / "gen" / "fake", prefix="gen", size=(72, 64), seed=5)
    cfg = load_config(None, {"model.name": "efficientnet_lite0", "model.size": 64, "epochs": 1, "batch_size": 4,
                             "device": "cpu", "data.path": [str(tmp_path / "cams"), str(tmp_path / "gen")],
                             "data.workers": 0, "data.cache": False, "data.pseudo_fakes": 0.5,
                             "data.balance": "source", "mask_loss": 1.0, "target_fpr": 0.5,
                             "out": str(tmp_path / "run")})
    loads = []
    with pytest.MonkeyPatch.context() as mp:  # the features are described from the model in memory
        mp.setattr(Detector, "load", lambda *a, **k: loads.append(a) or pytest.fail("fit read the checkpoint back"))
        result = fit(cfg)
    assert not loads
    counts = read_meta(result.checkpoint).info["data"]["counts"]["train"]
    assert counts["pseudo_fake"] == counts["real"] > 0
    detector = Detector.load(str(result.checkpoint), device="cpu")
    assert detector.feature_model is not None
    _, familiar, _ = detector.score_batch([detector.prepare(Image.open(p).convert("RGB"))
                                           for p in sorted((tmp_path / "cams" / "real").iterdir())[:3]])
    assert familiar is not None and familiar.shape == (3,)
