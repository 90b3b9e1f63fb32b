"""The classic ELA-CNN: JPEG re-compression difference image -> two conv blocks -> dense head.

Conv2D(32, 3x3) -> BN -> ReLU -> MaxPool(2) -> Conv2D(64, 3x3) -> BN -> ReLU -> MaxPool(2) -> Flatten
-> Dense(128) -> ReLU -> Dropout(0.5) -> Dense(2). On 128x128x3 input: 7,392,770 trainable parameters plus
192 BatchNorm running statistics.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from fakescope.data.preprocess import Preprocess
from fakescope.models._registry import register_detector

log = logging.getLogger(__name__)


class ELACNN(nn.Module):
    def __init__(self, in_chans: int = 3, size: int = 128, num_classes: int = 2, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 32, kernel_size=3),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        side = ((size - 2) // 2 - 2) // 2
        self.num_features = 64 * side * side
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.num_features, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_detector(
    "ela-cnn",
    preprocess=Preprocess(input_mode="ela", size=128, ela_quality=90),
    target_layer="features.5",
    description="Classic ELA-CNN (2 conv blocks + dense head) on 128x128 ELA images",
    fixed_size=True,
)
def ela_cnn(in_chans: int = 3, pretrained: bool | str = False, size: int = 128, **kwargs) -> ELACNN:
    if pretrained:
        log.info("ela-cnn has no ImageNet weights; training starts from scratch")
    return ELACNN(in_chans=in_chans, size=size, **kwargs)
