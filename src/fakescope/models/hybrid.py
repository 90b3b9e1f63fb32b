"""Hybrid ResNet + DenseNet detector: both backbones see the image, their pooled features are concatenated.

Each branch contributes to every prediction (the head reads the concatenation), so neither is computed and
dropped. Grad-CAM explains the ResNet branch's last stage.
"""
from __future__ import annotations

import torch
from torch import nn

from fakescope.data.preprocess import Preprocess
from fakescope.models._registry import register_detector
from fakescope.models.backbones import build_timm


class HybridResNetDenseNet(nn.Module):
    def __init__(self, in_chans: int = 3, pretrained: bool | str = False, resnet: str = "resnet18",
                 densenet: str = "densenet121", dropout: float = 0.2):
        super().__init__()
        self.resnet = build_timm(resnet, in_chans, pretrained)
        self.densenet = build_timm(densenet, in_chans, pretrained)
        self.resnet.reset_classifier(0)
        self.densenet.reset_classifier(0)
        self.num_features = self.resnet.num_features + self.densenet.num_features
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, 2))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.resnet(x), self.densenet(x)], dim=1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_detector(
    "hybrid",
    preprocess=Preprocess.for_mode("rgb", 224, imagenet_norm=True),
    target_layer="resnet.layer4",
    description="ResNet-18 + DenseNet-121, pooled features concatenated into one head",
)
def hybrid(in_chans: int = 3, pretrained: bool | str = False, size: int = 224, **kwargs) -> HybridResNetDenseNet:
    return HybridResNetDenseNet(in_chans=in_chans, pretrained=pretrained, **kwargs)
