"""Pruning, distillation and dynamic quantization: each writes a loadable checkpoint and reports before/after."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from fakescope.checkpoint import CheckpointMeta, save_checkpoint
from fakescope.cli import app
from fakescope.compress.distill import DistillConfig, distill, distillation_loss
from fakescope.compress.prune import (
    global_l1_prune,
    make_permanent,
    prunable,
    weight_sparsity,
)
from fakescope.data.preprocess import Preprocess
from fakescope.inference.detector import Detector
from fakescope.inference.kinds.int8 import DynamicQuantDetector, quantize_linear_dynamic
from fakescope.models.ela_cnn import ELACNN

COLUMNS = ("size_mb", "accuracy", "roc_auc", "images_per_s")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKESCOPE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def ela32(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    meta = CheckpointMeta("ela-cnn", Preprocess("ela", size=32), temperature=1.3)
    return save_checkpoint(tmp_path / "ela32.safetensors", ELACNN(size=32).eval(), meta)


@pytest.fixture
def labelled(tiny_images, tmp_path: Path) -> Path:
    """real/ smooth images, fake/ images with a pasted noisy block saved at another JPEG quality."""
    from PIL import Image

    for p in tiny_images(14, "data/fake", size=(64, 48), seed=1):
        img = Image.open(p).convert("RGB")
        block = np.random.default_rng(len(p.name)).integers(0, 256, (20, 20, 3), dtype=np.uint8)
        img.paste(Image.fromarray(block), (10, 10))
        img.save(p, quality=70)
    tiny_images(14, "data/real", size=(64, 48))
    return tmp_path / "data"


def test_global_prune_reaches_amount_and_becomes_permanent() -> None:
    torch.manual_seed(0)
    model = ELACNN(size=32)
    global_l1_prune(model, 0.3)
    assert abs(weight_sparsity(model) - 0.3) < 0.005
    make_permanent(model)
    keys = model.state_dict().keys()
    assert not any(k.endswith(("_orig", "_mask")) for k in keys)
    assert not any(m._forward_pre_hooks for m, _ in prunable(model))
    # global ranking: the big dense layer loses more than its share, a small conv less
    per_layer = [float((m.weight == 0).float().mean()) for m, _ in prunable(model)]
    assert max(per_layer) > 0.3 > min(per_layer)


def test_prune_cli_finetunes_with_masks_and_saves_normal_checkpoint(ela32: Path, labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "pruned.safetensors"
    res = CliRunner().invoke(app, ["prune", "--model", str(ela32), "--amount", "0.5", "--finetune-data", str(labelled),
                                   "--epochs", "1", "--lr", "1e-3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "before" in res.output and "pruned 50%" in res.output
    pruned = Detector.load(str(out))  # an ordinary checkpoint
    assert pruned.kind == "model"
    assert weight_sparsity(pruned.model) >= 0.5 - 1e-3  # fine-tuning did not regrow pruned weights
    info = pruned.meta.info["compression"]
    assert info["method"] == "prune-global-l1-unstructured" and info["amount"] == 0.5


def test_distillation_loss_terms() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 2, requires_grad=True), torch.randn(8, 2)
    labels = torch.randint(0, 2, (8,))
    ce = torch.nn.functional.cross_entropy(student, labels)
    assert torch.allclose(distillation_loss(student, teacher, labels, 4.0, 0.0), ce)
    assert float(distillation_loss(teacher, teacher, labels, 4.0, 1.0)) == pytest.approx(0.0, abs=1e-6)
    loss = distillation_loss(student, teacher, labels, 4.0, 1.0)
    loss.backward()
    stepped = student.detach() - 10.0 * student.grad
    assert float(distillation_loss(stepped, teacher, labels, 4.0, 1.0)) < loss.item()


def test_distill_trains_a_registered_student(ela32: Path, labelled: Path, tmp_path: Path) -> None:
    cfg = DistillConfig(teacher=str(ela32), student="resnet18", data=[str(labelled)], out=str(tmp_path / "s.safetensors"),
                        epochs=1, batch_size=8, size=32)
    result = distill(cfg)
    assert [r["variant"] for r in result.rows] == ["teacher ela-cnn", "student resnet18"]
    for row in result.rows:
        assert all(row[c] is not None for c in COLUMNS)
    student = Detector.load(str(result.path))
    assert student.meta.architecture == "resnet18" and student.preprocess.size == 32
    assert student.meta.info["compression"]["teacher"] == str(ela32)


def test_dynamic_quantization_round_trips_without_pickle(ela32: Path, labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.safetensors"
    res = CliRunner().invoke(app, ["quantize", "--model", str(ela32), "--dynamic", "--data", str(labelled),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "dynamic int8 (Linear)" in res.output
    with safe_open(str(out), framework="pt") as f:  # a plain safetensors file: tensors and JSON only
        assert f.get_tensor("head.1.weight.int8").dtype == torch.int8
    assert out.stat().st_size < ela32.stat().st_size / 2  # the dense head dominates the ELA-CNN

    loaded = Detector.load(str(out))
    assert isinstance(loaded, DynamicQuantDetector)
    float_det = Detector.load(str(ela32))
    expected = Detector(quantize_linear_dynamic(float_det.model), float_det.meta, "q")
    arrays = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict_arrays(arrays), expected.predict_arrays(arrays))
    assert np.abs(loaded.predict_arrays(arrays) - float_det.predict_arrays(arrays)).max() < 0.05


def test_output_layer_is_never_pruned() -> None:
    """A near-zero 2-class head would be the first thing a global magnitude ranking removes."""
    from fakescope.registry import create_detector

    torch.manual_seed(0)
    model, _ = create_detector("efficientnet_lite0", size=32)
    head = model.get_classifier()
    before = head.weight.detach().clone()
    global_l1_prune(model, 0.5)
    make_permanent(model)
    assert torch.equal(head.weight, before) and abs(weight_sparsity(model) - 0.5) < 0.005
