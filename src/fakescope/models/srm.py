"""Noise-residual detectors: a fixed (SRM) or constrained (Bayar) high-pass first layer, then a small CNN.

Image content is mostly low-frequency; camera noise, demosaicing, JPEG blocking and the resampling of a pasted
or generated region live in the high frequencies. A first layer that can only pass high frequencies keeps the
network from learning content (Zhou et al., CVPR 2018; Bayar & Stamm, IH&MMSec 2016).

- ``srm``: the three SRM kernels of RGB-N (not the 30 of the full spatial rich model), applied to each RGB
  channel as a non-trainable convolution (9 residual channels).
- ``bayar``: a trainable 5x5 convolution constrained to be a prediction-error filter (centre -1, other taps
  summing to 1), so it learns its own high-pass filters.

Both read native-resolution crops (``resize="crop"``): resizing would resample the very traces they look at.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from fakescope.data.preprocess import Preprocess
from fakescope.forensics.traces import SRM_KERNELS, bayar_constrain, highpass_residual
from fakescope.models._registry import register_detector

log = logging.getLogger(__name__)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TraceCNN(nn.Module):
    """A small CNN for trace inputs: input BatchNorm (residuals are tiny), three stride-2 stages, global pooling.

    The first stage runs at full resolution, so pixel-level statistics are read before any down-sampling;
    global average pooling makes the score a statistic over the whole crop, at any input size.
    """

    def __init__(self, in_chans: int, num_classes: int = 2, widths: tuple[int, ...] = (32, 64, 128),
                 dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm2d(in_chans)]
        cin = in_chans
        for width in widths:
            layers += [conv_bn(cin, width), conv_bn(width, width, stride=2)]
            cin = width
        self.features = nn.Sequential(*layers)
        self.num_features = cin
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SRMFilter(nn.Module):
    """Fixed SRM high-pass filters on each channel: (N, C, H, W) -> (N, 3C, H, W). No trainable parameters."""

    def __init__(self, in_chans: int = 3):
        super().__init__()
        self.out_chans = in_chans * len(SRM_KERNELS)
        # A constant of the method, not a learnt weight: rebuilt from code, not stored in checkpoints.
        self.register_buffer("kernels", torch.as_tensor(SRM_KERNELS), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return highpass_residual(x, self.kernels)


class BayarConv2d(nn.Module):
    """Constrained convolution (Bayar & Stamm 2016): every kernel is a learnt prediction-error (high-pass) filter."""

    def __init__(self, in_chans: int = 3, out_chans: int = 9, kernel_size: int = 5):
        super().__init__()
        self.out_chans = out_chans
        self.padding = kernel_size // 2
        # Positive start so the off-centre taps' sum starts far from zero (the constraint divides by it).
        self.weight = nn.Parameter(torch.rand(out_chans, in_chans, kernel_size, kernel_size) + 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), bayar_constrain(self.weight))


class ResidualNet(nn.Module):
    """High-pass first layer (``filter``) -> :class:`TraceCNN`."""

    def __init__(self, first: nn.Module, num_classes: int = 2, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        self.filter = first
        self.body = TraceCNN(first.out_chans, num_classes, widths)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.features(self.filter(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _trace_preprocess(size: int = 128) -> Preprocess:
    return Preprocess.for_mode("rgb", size, imagenet_norm=False, resize="crop")


def warn_no_pretrained(name: str, pretrained: bool | str) -> None:
    if pretrained:
        log.info("%s has no ImageNet weights (its input is a residual, not an image); training starts from scratch",
                 name)


@register_detector(
    "srm",
    preprocess=_trace_preprocess(),
    target_layer="body.features",
    description="Fixed SRM high-pass filters (3 kernels x RGB) + small CNN, on native-resolution crops",
)
def srm(in_chans: int = 3, pretrained: bool | str = False, size: int = 128, **kwargs) -> ResidualNet:
    warn_no_pretrained("srm", pretrained)
    return ResidualNet(SRMFilter(in_chans), **kwargs)


@register_detector(
    "bayar",
    preprocess=_trace_preprocess(),
    target_layer="body.features",
    description="Bayar constrained 5x5 high-pass convolution + small CNN, on native-resolution crops",
)
def bayar(in_chans: int = 3, pretrained: bool | str = False, size: int = 128, **kwargs) -> ResidualNet:
    warn_no_pretrained("bayar", pretrained)
    return ResidualNet(BayarConv2d(in_chans), **kwargs)
