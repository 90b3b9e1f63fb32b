"""Spectral detector: the centred log-magnitude 2D FFT of each colour channel, read by a small CNN.

The up-sampling layers of generators (transposed convolutions, nearest or bilinear up-sampling) leave periodic
patterns, which are peaks at fixed frequencies of the spectrum (Zhang et al. 2019; Frank et al., ICML 2020;
Durall et al., CVPR 2020). The spectrum is taken of a Laplacian residual, which flattens the image's 1/f content
spectrum so that such peaks stand out instead of the scene's own frequencies (as in the residual spectra of Corvi
et al., ICASSP 2023). The frequency coordinates are appended as two input channels: a peak means something only
at its position, which a convolution alone cannot see.

Grad-CAM on this detector explains the spectrum, not the image: its map is in frequency space.
"""
from __future__ import annotations

import torch
from torch import nn

from fakescope.data.preprocess import Preprocess
from fakescope.forensics.traces import LAPLACIAN, highpass_residual, log_spectrum
from fakescope.models._registry import register_detector
from fakescope.models.srm import TraceCNN, warn_no_pretrained


class LogSpectrum(nn.Module):
    """(N, C, H, W) image -> (N, C + 2, H, W): log spectra of the (Laplacian-filtered) channels + |fy|, |fx|."""

    def __init__(self, highpass: bool = True):
        super().__init__()
        self.highpass = highpass
        self.register_buffer("kernel", torch.as_tensor(LAPLACIAN), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.highpass:
            x = highpass_residual(x, self.kernel)
        spec = log_spectrum(x)
        spec = (spec - spec.mean(dim=(-2, -1), keepdim=True)) / (spec.std(dim=(-2, -1), keepdim=True) + 1e-6)
        n, _, h, w = spec.shape
        fy = (torch.arange(h, device=x.device, dtype=spec.dtype) - h // 2).abs() / max(h // 2, 1)
        fx = (torch.arange(w, device=x.device, dtype=spec.dtype) - w // 2).abs() / max(w // 2, 1)
        coords = torch.stack([fy[:, None].expand(h, w), fx[None, :].expand(h, w)]).expand(n, 2, h, w)
        return torch.cat([spec, coords], dim=1)


class SpectralNet(nn.Module):
    def __init__(self, in_chans: int = 3, num_classes: int = 2, highpass: bool = True,
                 widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        self.spectrum = LogSpectrum(highpass)
        self.body = TraceCNN(in_chans + 2, num_classes, widths)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.features(self.spectrum(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_detector(
    "spectral",
    preprocess=Preprocess.for_mode("rgb", 128, imagenet_norm=False, resize="crop"),
    target_layer="body.features",
    description="Log-magnitude FFT of a Laplacian residual per RGB channel + small CNN, on native crops "
                "(Grad-CAM maps are in frequency space)",
)
def spectral(in_chans: int = 3, pretrained: bool | str = False, size: int = 128, **kwargs) -> SpectralNet:
    warn_no_pretrained("spectral", pretrained)
    return SpectralNet(in_chans, **kwargs)
