"""Source-invariant training: gradient reversal, the source head's loss, a tiny run whose checkpoint is the plain
detector, and the config refusing a source adversary with one folder."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from torch import nn

from fakescope.config import load_config
from fakescope.engine.adversary import SourceAdversary, reverse_gradient
from fakescope.engine.pixel import DetectorLoss
from fakescope.engine.train import fit
from fakescope.inference.detector import Detector


def test_reverse_gradient_flips_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    reverse_gradient(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))


def test_source_head_reads_pooled_features_and_pushes_the_backbone_against_it():
    torch.manual_seed(0)
    backbone, classifier = nn.Linear(4, 6), nn.Linear(6, 2)
    model = SourceAdversary(nn.Sequential(backbone, classifier), classifier, n_sources=3, weight=1.0)
    loss_fn = DetectorLoss(nn.CrossEntropyLoss(), sources=True)
    x, labels, sources = torch.randn(8, 4), torch.randint(0, 2, (8,)), torch.randint(0, 3, (8,))
    logits, source_logits = model(x)
    assert logits.shape == (8, 2) and source_logits.shape == (8, 3)
    # the source term's gradient reaches the backbone reversed: compare with the head's loss alone, unreversed
    loss_fn((logits, source_logits), labels, sources).backward()
    with_reversal = backbone.weight.grad.clone()
    backbone.weight.grad = None
    features = backbone(x)
    plain = nn.functional.cross_entropy(classifier(features), labels) + \
        nn.functional.cross_entropy(model.head(features), sources)
    plain.backward()
    image_only = torch.autograd.grad(nn.functional.cross_entropy(classifier(backbone(x)), labels), backbone.weight)[0]
    assert torch.allclose(with_reversal - image_only, -(backbone.weight.grad - image_only), atol=1e-6)
    model.eval()
    assert model(x).shape == (8, 2)  # evaluation sees the detector alone


def test_source_adversary_needs_two_folders(tmp_path):
    with pytest.raises(ValueError, match="source_adversary.*two data.path folders"):
        load_config(None, {"data.path": [str(tmp_path)], "source_adversary": 0.3})


def test_tiny_run_with_source_adversary_and_masks_saves_the_plain_detector(tmp_path, tiny_images):
    for name, seed in (("a", 0), ("b", 3)):
        tiny_images(8, folder=tmp_path / name / "real", prefix=f"{name}r", size=(72, 64), seed=seed)
        tiny_images(8, folder=tmp_path / name / "fake", prefix=f"{name}f", size=(72, 64), seed=seed + 1)
    cfg = load_config(None, {"model.name": "efficientnet_lite0", "model.size": 64, "epochs": 1, "batch_size": 4,
                             "device": "cpu", "data.path": [str(tmp_path / "a"), str(tmp_path / "b")],
                             "data.workers": 0, "data.cache": False, "data.pseudo_fakes": 0.5,
                             "data.balance": "source", "mask_loss": 1.0, "source_adversary": 0.3,
                             "out": str(tmp_path / "run")})
    result = fit(cfg)
    with safe_open(str(result.checkpoint), "pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith(("head.", "module.")) for k in keys)
    detector = Detector.load(str(result.checkpoint), device="cpu")
    assert sorted(detector.model.state_dict()) == sorted(keys)
    assert result.history[0]["train_loss"] > 0
