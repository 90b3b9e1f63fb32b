"""Parallel training on torch.distributed with 2 CPU processes (gloo), against single-process references.

One launch of 2 processes (through torchrun's API, as ``--nproc`` does) runs everything distributed: a tiny
``fit`` with the ddp strategy, then the mechanism checks (DDP, local SGD, pipeline and tensor parallelism, the
scan shards); the references are computed here, in one process. Starting the 2 processes (importing torch, timm
and fakescope in each) is most of the wall time.

BatchNorm and dropout: the models have dropout 0. DDP normalises each rank's half-batch with its own statistics
(SyncBatchNorm is GPU-only), so the DDP comparison runs BatchNorm in eval mode (running statistics) on both sides.
The pipeline reference runs its micro-batches one after another in train mode, which is what the pipeline does;
tensor parallelism sees the whole batch on every rank, so its BatchNorm is in train mode as in the reference.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from fakescope.checkpoint import load_checkpoint
from fakescope.cli import app
from fakescope.config import TrainConfig, load_config
from fakescope.distributed import launch
from fakescope.engine.loops import EpochOptions, predict_loader
from fakescope.evaluation.metrics import compute_metrics
from fakescope.forensics.io import load_image
from fakescope.inference.detector import Detector
from fakescope.inference.distributed import RankShare
from fakescope.inference.scan import scan
from fakescope.models.ela_cnn import ELACNN
from fakescope.registry import create_detector

pytestmark = pytest.mark.slow

LR = 0.05
DDP_STEPS, DDP_BATCH = 3, 8
LOCALSGD_PERIOD, LOCALSGD_STEPS = 2, 4
SOURCE_EPOCHS = 20


# ---- shared by the workers and the references -------------------------------------------------------------------

def _model(name: str, size: int) -> nn.Module:
    torch.manual_seed(0)
    if name == "ela-cnn":
        return ELACNN(size=size, dropout=0.0)
    return create_detector(name, size=size)[0]


def _batch(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    arrays = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)
    return arrays, torch.arange(n) % 2


def _to_input(arrays: torch.Tensor) -> torch.Tensor:
    return arrays.permute(0, 3, 1, 2).float().div(255).sub(0.5)


def _freeze_bn(model: nn.Module) -> None:
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in module.named_parameters():
        g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
        out[name] = g.detach().clone()
    return out


# ---- what each of the 2 processes runs ---------------------------------------------------------------------------

def _everything(cfg: TrainConfig, checkpoint: str, images: str, scan_out: str,
                source_cfgs: dict[str, TrainConfig]) -> dict:
    import torch.distributed as dist

    from fakescope.distributed import init_distributed
    from fakescope.engine.train import fit

    torch.set_num_threads(1)
    info = init_distributed("cpu")
    out = {"fit": fit(cfg), "source_fit": {k: fit(c) for k, c in source_cfgs.items()},
           "source_draws": _draws(source_cfgs["ddp"], info), "ddp": _ddp(info), "localsgd": _localsgd(info),
           "tensor": _tensor(info),
           "pipeline": {name: _pipeline(info, name, size) for name, size in (("ela-cnn", 64), ("resnet18", 32))},
           "scan": _scan(checkpoint, images, scan_out)}
    dist.destroy_process_group()
    return out


def _draws(cfg: TrainConfig, info=None) -> list[list[int]]:
    """The training indices each of ``SOURCE_EPOCHS`` epochs draws (this rank's share with ``info``)."""
    from fakescope.engine.loaders import build_loaders, seed_epoch

    train_dl, _, _ = build_loaders(cfg, create_detector(cfg.model.name)[1], info)
    draws = []
    for epoch in range(1, SOURCE_EPOCHS + 1):
        seed_epoch(train_dl, cfg.seed, epoch)
        draws.append(list(train_dl.sampler))
    return draws


def _ddp(info) -> dict:
    from fakescope.engine.parallel.ddp import DDPStrategy

    model = _model("ela-cnn", 32)
    strategy = DDPStrategy(model, TrainConfig(strategy="ddp"), torch.device("cpu"), info)
    optimizer = torch.optim.SGD(strategy.parameters(), lr=LR, momentum=0.9)
    strategy.attach(optimizer)
    half = DDP_BATCH // info.world_size
    for step in range(DDP_STEPS):
        arrays, labels = _batch(DDP_BATCH, 32, seed=step)
        mine = slice(info.rank * half, (info.rank + 1) * half)  # this rank's share of the global batch
        _freeze_bn(strategy.train_module)
        loss = nn.functional.cross_entropy(strategy.train_module(_to_input(arrays[mine])), labels[mine])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "bytes": strategy.bytes_per_step()}


def _localsgd(info) -> dict:
    from fakescope.engine.parallel.localsgd import LocalSGDStrategy

    cfg = TrainConfig(strategy="localsgd")
    cfg.parallel.localsgd_period = LOCALSGD_PERIOD
    model = _model("ela-cnn", 32)
    strategy = LocalSGDStrategy(model, cfg, torch.device("cpu"), info)
    optimizer = torch.optim.SGD(strategy.parameters(), lr=LR)
    before: list[torch.Tensor] = []
    optimizer.register_step_post_hook(lambda *_: before.append(_flat(model)))  # runs before the averaging hook
    strategy.attach(optimizer)
    after = []
    for step in range(LOCALSGD_STEPS):
        arrays, labels = _batch(4, 32, seed=100 + 10 * step + info.rank)  # every replica its own data
        loss = nn.functional.cross_entropy(strategy.train_module(_to_input(arrays)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after.append(_flat(model))
    return {"before": before, "after": after}


def _pipeline(info, name: str, size: int) -> dict:
    from fakescope.engine.parallel.pipeline import PipelineStrategy

    cfg = TrainConfig(strategy="pipeline", batch_size=4)
    cfg.parallel.microbatches = 2
    strategy = PipelineStrategy(_model(name, size), cfg, torch.device("cpu"), info, torch.zeros(1, 3, size, size))
    optimizer = torch.optim.SGD(strategy.parameters(), lr=LR)
    loader = [_batch(4, size, seed=7)] if info.rank == 0 else None
    stats = strategy.train_one_epoch(loader, EpochOptions(optimizer, nn.CrossEntropyLoss(), _to_input), total=1)
    grads = _grads(strategy.train_module)
    return {"loss": stats["loss"], "grads": grads, "splits": strategy.splits,
            "after": {k: v.clone() for k, v in strategy.eval_model().state_dict().items()}}


def _tensor(info) -> dict:
    from torch.distributed.tensor import DTensor

    from fakescope.engine.parallel.tensor import TensorStrategy

    strategy = TensorStrategy(_model("ela-cnn", 128), TrainConfig(strategy="tensor"), torch.device("cpu"), info)
    optimizer = torch.optim.SGD(strategy.parameters(), lr=LR)
    loader = [_batch(4, 128, seed=11)] if info.rank == 0 else None  # rank 0 reads, every rank gets the batch
    stats = strategy.train_one_epoch(loader, EpochOptions(optimizer, nn.CrossEntropyLoss(), _to_input), total=1)
    weight = strategy.train_module.head[1].weight
    return {"loss": stats["loss"], "grads": _grads(strategy.train_module),
            "local_rows": weight.to_local().shape[0] if isinstance(weight, DTensor) else -1,
            "after": {k: v.clone() for k, v in strategy.eval_model().state_dict().items()}}


def _scan(checkpoint: str, images: str, out: str):
    from fakescope.inference.distributed import scan_distributed

    detector = Detector.load(checkpoint, device="cpu")
    return scan_distributed([images], detector, Path(out), "csv", batch_size=4, workers=0)


# ---- the launches -------------------------------------------------------------------------------------------------

def _ddp_config(tmp: Path) -> TrainConfig:
    """ELA-CNN on 11 real + 10 fake tiny images: 16 for training (8 per rank), 5 for validation (uneven shards)."""
    data = tmp / "data"
    _write_images(data / "real", 11, seed=1)
    _write_images(data / "fake", 10, seed=2, size=40)
    return load_config(None, {"data.path": [str(data)], "model.name": "ela-cnn", "strategy": "ddp", "epochs": "2",
                              "batch_size": "4", "out": str(tmp / "run"), "device": "cpu", "data.workers": "0",
                              "augment.enabled": "false", "data.cache_dir": str(tmp / "cache"), "optim.lr": "1e-4"})


def _source_folders(tmp: Path) -> tuple[Path, Path]:
    """Two folders of unequal size: 40 real + 40 fake, and 6 reals only (a real-only folder: its fakes are all
    pseudo-fakes)."""
    big, small = tmp / "source_big", tmp / "source_small"
    _write_images(big / "real", 40, seed=4)
    _write_images(big / "fake", 40, seed=5, size=40)
    _write_images(small / "real", 6, seed=6)
    return big, small


def _source_config(tmp: Path, big: Path, small: Path, strategy: str) -> TrainConfig:
    """Per-source balance with pseudo-fakes over ``big`` and ``small`` (:func:`_source_folders`), with a source
    adversary, which DDP and local SGD must carry."""
    return load_config(None, {"data.path": [str(big), str(small)], "model.name": "ela-cnn", "strategy": strategy,
                              "epochs": "1", "batch_size": "8", "out": str(tmp / f"source_run_{strategy}"),
                              "device": "cpu",
                              "data.workers": "0", "augment.enabled": "false", "data.cache_dir": str(tmp / "cache"),
                              "data.balance": "source", "data.pseudo_fakes": "0.5", "source_adversary": "0.3"})


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_ela_checkpoint) -> dict:
    tmp = tmp_path_factory.mktemp("distributed")
    folders = _source_folders(tmp)
    cfg, source_cfgs = _ddp_config(tmp), {s: _source_config(tmp, *folders, s) for s in ("ddp", "localsgd")}
    _write_images(tmp / "imgs", 9, seed=3)
    out = launch(_everything, 2, cfg, str(tiny_ela_checkpoint), str(tmp / "imgs"), str(tmp / "merged.csv"),
                 source_cfgs)
    return {"ranks": out, "folder": tmp, "checkpoint": tiny_ela_checkpoint, "cfg": cfg, "source_cfgs": source_cfgs}


def _write_images(folder: Path, n: int, seed: int, size: int = 48) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = np.clip(rng.normal(128, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        path = folder / f"img{i:03d}.jpg"
        Image.fromarray(arr).save(path, quality=70 + 3 * (i % 10))
        paths.append(path)
    return paths


# ---- DDP ----------------------------------------------------------------------------------------------------------

def test_ddp_matches_single_process_on_the_global_batch(results):
    model = _model("ela-cnn", 32)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    for step in range(DDP_STEPS):
        arrays, labels = _batch(DDP_BATCH, 32, seed=step)
        _freeze_bn(model)
        loss = nn.functional.cross_entropy(model(_to_input(arrays)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    initial = _model("ela-cnn", 32).state_dict()
    for rank in (0, 1):
        state = results["ranks"][rank]["ddp"]["state"]
        for k, v in model.state_dict().items():
            torch.testing.assert_close(state[k], v, atol=1e-5, rtol=0, msg=f"rank {rank} {k}")
    assert not torch.allclose(initial["head.1.weight"], model.state_dict()["head.1.weight"])  # it did train
    sent = results["ranks"][0]["ddp"]["bytes"]
    grads = sum(p.numel() * 4 for p in model.parameters())
    assert sent["gradient all-reduce (measured by comm hook)"] == sent["gradient all-reduce (model)"] == grads


# ---- per-source balance on data-parallel ranks ------------------------------------------------------------------

def test_ranks_together_draw_the_single_process_sample(results):
    """Each rank keeps every other item of the seeded weighted draw: interleaved, the ranks' shares are exactly
    what one process draws, epoch by epoch (the last rank's share padded with the draw's first item)."""
    single = _draws(results["source_cfgs"]["ddp"])
    ranks = [results["ranks"][r]["source_draws"] for r in (0, 1)]
    for epoch, draw in enumerate(single):
        mine = ranks[0][epoch], ranks[1][epoch]
        assert len(mine[0]) == len(mine[1]) == -(-len(draw) // 2)
        interleaved = [i for pair in zip(*mine) for i in pair]
        assert interleaved[:len(draw)] == draw and interleaved[len(draw):] == draw[:len(interleaved) - len(draw)]
    assert single[0] != single[1]  # a new draw each epoch


def test_ranks_draw_each_source_and_pseudo_fake_share_by_the_weights(results):
    from fakescope.data.splits import source_sample_weights
    from fakescope.engine.loaders import image_datasets

    cfg = results["source_cfgs"]["ddp"]
    ds, _ = image_datasets(cfg, create_detector(cfg.model.name)[1])
    src, y, pseudo = np.asarray(ds.sources), np.asarray(ds.labels), np.asarray(ds.pseudo)
    cell = src * 3 + np.where(pseudo, 2, y)  # (source, real / fake / pseudo-fake)
    weights = source_sample_weights(ds.sources, ds.labels, ds.pseudo, cfg.data.pseudo_fakes)
    expected = np.bincount(cell, weights, minlength=6) / weights.sum()
    uniform = np.bincount(cell, minlength=6) / len(cell)  # what a DistributedSampler shuffle would give
    assert expected[3:].sum() > 2 * uniform[3:].sum() and expected[2] < 0.8 * uniform[2]  # the check can fail
    drawn = np.array([i for r in (0, 1) for epoch in results["ranks"][r]["source_draws"] for i in epoch])
    shares = np.bincount(cell[drawn], minlength=6) / len(drawn)
    assert len(drawn) > 1000 and np.abs(shares - expected).max() < 0.04, (shares, expected)


@pytest.mark.parametrize("strategy", ["ddp", "localsgd"])
def test_parallel_fit_with_pseudo_fakes_source_balance_and_adversary(results, strategy):
    cfg = results["source_cfgs"][strategy]
    fits = results["ranks"][0]["source_fit"][strategy], results["ranks"][1]["source_fit"][strategy]
    assert fits[0].metrics and np.isfinite(fits[0].history[0]["train_loss"])
    saved = yaml.safe_load((Path(cfg.out) / "config.yaml").read_text())
    assert saved["strategy"] == strategy and saved["data"]["balance"] == "source"
    assert saved["data"]["pseudo_fakes"] == 0.5 and saved["source_adversary"] == 0.3
    Detector.load(str(fits[0].checkpoint), device="cpu")  # the plain detector: the source head was not saved
    counts = json.loads((Path(cfg.out) / "metrics.json").read_text())["counts"]["train"]
    assert counts["pseudo_fake"] == counts["real"] > 0  # one pseudo-fake entry per training real


# ---- local SGD ----------------------------------------------------------------------------------------------------

def test_localsgd_replicas_equal_after_averaging_and_apart_between(results):
    r0, r1 = results["ranks"][0]["localsgd"], results["ranks"][1]["localsgd"]
    for step in range(LOCALSGD_STEPS):
        if step % LOCALSGD_PERIOD == 0:  # PeriodicModelAverager averages after steps 0, k, 2k, ...
            assert torch.equal(r0["after"][step], r1["after"][step]), step
            torch.testing.assert_close(r0["after"][step], (r0["before"][step] + r1["before"][step]) / 2)
            assert (r0["before"][step] - r1["before"][step]).abs().max() > 1e-5  # they had drifted apart
        else:
            assert (r0["after"][step] - r1["after"][step]).abs().max() > 1e-5, step


# ---- pipeline and tensor parallelism ------------------------------------------------------------------------------

def _reference_step(name: str, size: int, arrays, labels, microbatches: int) -> tuple[float, dict, dict]:
    """Loss, gradients and post-SGD-step state of the unsplit model, micro-batch by micro-batch (mean loss)."""
    model = _model(name, size).train()
    losses = []
    for x, y in zip(_to_input(arrays).chunk(microbatches), labels.chunk(microbatches)):
        loss = nn.functional.cross_entropy(model(x), y)
        (loss / microbatches).backward()
        losses.append(float(loss.detach()))
    grads = _grads(model)
    torch.optim.SGD(model.parameters(), lr=LR).step()
    return float(np.mean(losses)), grads, model.state_dict()


@pytest.mark.parametrize(("name", "size"), [("ela-cnn", 64), ("resnet18", 32)])
def test_pipeline_matches_unsplit_model(results, name, size):
    arrays, labels = _batch(4, size, seed=7)
    loss, grads, after = _reference_step(name, size, arrays, labels, microbatches=2)
    r0, r1 = (results["ranks"][r]["pipeline"][name] for r in (0, 1))
    assert r0["splits"] == r1["splits"] and len(r0["splits"]) == 1
    assert r0["loss"] == pytest.approx(loss, abs=1e-5) and r1["loss"] == pytest.approx(loss, abs=1e-5)
    assert set(r0["grads"]).isdisjoint(r1["grads"]) and set(r0["grads"]) | set(r1["grads"]) == set(grads)
    for k, g in {**r0["grads"], **r1["grads"]}.items():  # the traced stages add up in another order: ~1e-4
        torch.testing.assert_close(g, grads[k], rtol=1e-3, atol=1e-5 + 1e-4 * float(grads[k].abs().max()), msg=k)
    for k, v in after.items():  # the stages put back together: weights and BatchNorm statistics
        torch.testing.assert_close(r0["after"][k], v, atol=1e-5, rtol=1e-4, msg=k)


def test_tensor_parallel_matches_unsplit_model(results):
    arrays, labels = _batch(4, 128, seed=11)
    loss, grads, after = _reference_step("ela-cnn", 128, arrays, labels, microbatches=1)
    for rank in (0, 1):
        r = results["ranks"][rank]["tensor"]
        assert r["local_rows"] == 64  # Dense(57600 -> 128) split by output units across the 2 ranks
        assert r["loss"] == pytest.approx(loss, abs=1e-5)
        for k, g in grads.items():
            torch.testing.assert_close(r["grads"][k], g, atol=1e-5, rtol=1e-4, msg=k)
        for k, v in after.items():
            torch.testing.assert_close(r["after"][k], v, atol=1e-5, rtol=1e-4, msg=k)


# ---- scan --distributed -------------------------------------------------------------------------------------------

def test_rank_share_partitions_the_files(tmp_path):
    paths = [str(tmp_path / f"f{i}.jpg") for i in range(200)]
    mine = [[p for p in paths if p not in RankShare(rank, 3)] for rank in range(3)]
    assert sorted(p for m in mine for p in m) == sorted(paths) and all(len(m) > 40 for m in mine)


def test_distributed_scan_merges_one_result_per_file(results):
    folder = results["folder"]
    with open(folder / "merged.csv") as f:
        rows = list(csv.DictReader(f))
    assert not list(folder.glob("*.part*"))  # the ranks' parts were merged and removed
    single = {r.path: r.fake_probability for r in scan([folder / "imgs"], Detector.load(results["checkpoint"]),
                                                          batch_size=4, workers=0)}
    assert sorted(r["path"] for r in rows) == sorted(single) and len(single) == 9
    for r in rows:
        assert float(r["fake_probability"]) == pytest.approx(single[r["path"]], abs=1e-6)
    assert sum(results["ranks"][0]["scan"].values()) == 9 and results["ranks"][1]["scan"] is None


# ---- a ddp fit: checkpoint, validation metrics, CLI checks ----------------------------------------------------------

def test_ddp_run_checkpoint_loads_in_one_process_and_scores_the_same(results):
    out = Path(results["cfg"].out)
    fits = results["ranks"][0]["fit"], results["ranks"][1]["fit"]
    assert fits[0].metrics and not fits[1].metrics  # rank 0 calibrates and reports
    same = [{k: v for k, v in row.items() if k != "seconds"} for row in fits[0].history]
    assert same == [{k: v for k, v in row.items() if k != "seconds"} for row in fits[1].history]  # one decision
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["strategy"] == "ddp" and saved["data"]["balance"] == "sampler"  # the single-process draw
    with open(out / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in history] == [1, 2]  # written once, by rank 0

    model, meta = load_checkpoint(out / "best.safetensors")  # a plain model: no "module." prefixes
    from fakescope.engine.loaders import build_loaders

    _, val_dl, counts = build_loaders(load_config(out / "config.yaml"), meta.preprocess)
    logits, labels = predict_loader(model, val_dl, torch.device("cpu"), meta.preprocess.to_tensor)
    assert len(labels) == counts["val"]["real"] + counts["val"]["fake"] == 5  # 3 + 2 on the two ranks
    best = min(float(r["val_loss"]) for r in history)  # all-gathered across the 2 ranks during training
    assert float(nn.functional.cross_entropy(logits, labels)) == pytest.approx(best, abs=1e-5)

    detector = Detector.load(str(out / "best.safetensors"), device="cpu")
    probs = detector.predict_images([load_image(s.path) for s in val_dl.dataset.samples])
    recorded = json.loads((out / "metrics.json").read_text())["validation"]
    scored = compute_metrics(labels.numpy(), np.asarray(probs))
    for key in ("n", "accuracy", "roc_auc", "average_precision", "ece"):
        if recorded.get(key) is not None:
            assert scored[key] == pytest.approx(recorded[key], abs=1e-6), key


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "tensor", "--nproc", "2", "--ema", "0.99"], "does not support ema"),
    (["--strategy", "ddp", "--nproc", "2", "--batch-size", "5"], "not divisible by 2 ranks"),
    (["--nproc", "2"], "--nproc needs a parallel --strategy"),
    (["--strategy", "ddp"], "runs under torchrun or with --nproc N"),
])
def test_train_refuses_what_a_strategy_cannot_run(tmp_path, args, message):
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output


def test_distributed_scan_needs_an_output_file(tmp_path):
    result = CliRunner().invoke(app, ["scan", str(tmp_path), "--distributed"])
    assert result.exit_code == 2 and "--output" in result.output


def test_torchrun_scan_exports_the_onnx_model_once(tmp_path, tiny_images, tiny_ela_checkpoint):
    """Under torchrun, rank 0 loads first: one export into the shared cache, which the other rank then reads."""
    import os
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    tiny_images(6, folder="imgs")
    cache, out = tmp_path / "cache", tmp_path / "scores.jsonl"
    cmd = [str(bin_dir / "torchrun"), "--nproc-per-node", "2", "--no-python", str(bin_dir / "fakescope"), "scan",
           str(tmp_path / "imgs"), "--distributed", "--format", "jsonl", "--output", str(out),
           "--model", str(tiny_ela_checkpoint), "--backend", "onnx", "--workers", "0"]
    env = {**os.environ, "FAKESCOPE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and all(r["threshold"] == Detector.load(tiny_ela_checkpoint).threshold for r in rows)
    assert len(list((cache / "onnx").glob("*.onnx"))) == 1
    assert (proc.stdout + proc.stderr).count("exported") == 1, proc.stderr[-2000:]
