"""NPR: Neighbouring Pixel Relationships (Tan et al., "Rethinking the Up-Sampling Operations in CNN-based
Generative Network for Generalizable Deepfake Detection", CVPR 2024).

Generators up-sample feature maps, which ties each pixel to its neighbours inside 2x2 cells. The input of the
network is therefore the residual ``x - up(down(x))`` (2x nearest), computed inside the model as its first module
so that the usual RGB preprocessing feeds it. As in the authors' code, the ResNet keeps only its stem and first
two stages: a 3x3 stride-2 first convolution (instead of ResNet's 7x7), max-pooling, ``layer1``, ``layer2``,
global average pooling and a linear head. The stages come from timm (``resnet50`` in ``npr`` as in the paper,
``resnet18`` in the lighter ``npr_resnet18``). The paper's ``NPR * 2/3`` input scaling is omitted: a bias-free
convolution followed by BatchNorm makes it a no-op.
"""
from __future__ import annotations

import torch
from torch import nn

from fakescope.data.preprocess import Preprocess
from fakescope.forensics.traces import npr_residual
from fakescope.models._registry import register_detector
from fakescope.models.backbones import build_timm


class NPRResidual(nn.Module):
    """``x - up(down(x))``: the neighbouring-pixel residual (parameter-free)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return npr_residual(x)


class NPRNet(nn.Module):
    """NPR residual -> 3x3/2 stem -> timm ResNet ``layer1``, ``layer2`` -> pooled linear head."""

    def __init__(self, backbone: str = "resnet50", in_chans: int = 3, pretrained: bool | str = False,
                 num_classes: int = 2, stem_stride: int = 2):
        super().__init__()
        net = build_timm(backbone, in_chans, pretrained)
        self.npr = NPRResidual()
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=stem_stride, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.act1, self.maxpool = net.bn1, net.act1, net.maxpool
        self.layer1, self.layer2 = net.layer1, net.layer2
        self.num_features = next(f["num_chs"] for f in net.feature_info if f["module"] == "layer2")
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(self.npr(x)))))
        return self.layer2(self.layer1(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _npr_preprocess(size: int = 128) -> Preprocess:
    # ImageNet normalisation as in the authors' data pipeline; native-resolution crops (resizing would re-sample
    # the very pixel relationships NPR reads). The paper trains on 224 crops; 128 keeps CPU training practical.
    return Preprocess.for_mode("rgb", size, imagenet_norm=True, resize="crop")


@register_detector(
    "npr",
    preprocess=_npr_preprocess(),
    target_layer="layer2",
    description="NPR (Tan et al. CVPR 2024): x - up(down(x)) residual + ResNet-50 stem/layer1/layer2, native crops",
)
def npr(in_chans: int = 3, pretrained: bool | str = False, size: int = 128, **kwargs) -> NPRNet:
    return NPRNet("resnet50", in_chans, pretrained, **kwargs)


@register_detector(
    "npr_resnet18",
    preprocess=_npr_preprocess(),
    target_layer="layer2",
    description="NPR residual + ResNet-18 stem/layer1/layer2 (a lighter NPR), native crops",
)
def npr_resnet18(in_chans: int = 3, pretrained: bool | str = False, size: int = 128, **kwargs) -> NPRNet:
    return NPRNet("resnet18", in_chans, pretrained, **kwargs)
