"""Generation and editing traces: transforms that remove image content and keep the pixel-level evidence.

All functions take float tensors shaped (..., H, W) (any leading batch / channel dimensions) and are used both
inside the trace detectors (``models/npr.py``, ``models/srm.py``, ``models/spectral.py``) and on their own for
analysis. They are differentiable and parameter-free.

- :func:`npr_residual`: Neighbouring Pixel Relationships (Tan et al., CVPR 2024), ``x - up(down(x))`` with 2x
  nearest down/up-sampling; the up-sampling layers of generators correlate neighbouring pixels, which shows here.
- :func:`highpass_residual`: fixed high-pass filters, by default the three SRM kernels of Zhou et al. (CVPR 2018,
  "Learning Rich Features for Image Manipulation Detection"), the common input of splicing detectors.
- :func:`log_spectrum` / :func:`azimuthal_average`: the centred log-magnitude 2D FFT and its radial profile
  (Durall et al., CVPR 2020); periodic up-sampling artefacts are peaks away from the centre.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: The three SRM kernels used by RGB-N (Zhou et al. 2018): second-order 2D, the 5x5 "KV" kernel, and the
#: second-order horizontal one. Each sums to zero, so a flat region gives no response.
SRM_KERNELS = np.stack([
    np.array([[0, 0, 0, 0, 0],
              [0, -1, 2, -1, 0],
              [0, 2, -4, 2, 0],
              [0, -1, 2, -1, 0],
              [0, 0, 0, 0, 0]], dtype=np.float32) / 4.0,
    np.array([[-1, 2, -2, 2, -1],
              [2, -6, 8, -6, 2],
              [-2, 8, -12, 8, -2],
              [2, -6, 8, -6, 2],
              [-1, 2, -2, 2, -1]], dtype=np.float32) / 12.0,
    np.array([[0, 0, 0, 0, 0],
              [0, 0, 0, 0, 0],
              [0, 1, -2, 1, 0],
              [0, 0, 0, 0, 0],
              [0, 0, 0, 0, 0]], dtype=np.float32) / 2.0,
])

#: The isotropic 3x3 Laplacian: zero response only at frequency (0, 0), so it whitens the image's 1/f content
#: spectrum without cancelling horizontal or vertical periodic patterns (SRM's first kernel would).
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32)[None]


def npr_residual(x: torch.Tensor) -> torch.Tensor:
    """``x - up(down(x))`` with 2x nearest sampling: each pixel minus the top-left pixel of its 2x2 cell.

    Identical to ``F.interpolate`` nearest with scale 0.5 then 2 on even sizes; on odd sizes the last row or
    column is its own cell (residual 0) instead of failing on a size mismatch.
    """
    h, w = x.shape[-2:]
    anchor = x[..., ::2, ::2].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    return x - anchor[..., :h, :w]


def highpass_residual(x: torch.Tensor, kernels: torch.Tensor | np.ndarray = SRM_KERNELS) -> torch.Tensor:
    """Each (K, k, k) kernel applied to each channel of ``x`` (N, C, H, W) -> (N, C*K, H, W).

    Reflect padding keeps the output the input's size and makes a constant image's residual exactly zero
    (zero padding would create edges at the border).
    """
    k = torch.as_tensor(kernels, dtype=x.dtype, device=x.device)
    side = k.shape[-1]
    c = x.shape[1]
    weight = k.unsqueeze(1).repeat(c, 1, 1, 1)  # (C*K, 1, k, k): channel c uses kernels c*K .. c*K+K-1
    pad = side // 2
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight, groups=c)


def bayar_constrain(weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Bayar & Stamm's (2016) constraint on a conv weight (O, I, k, k): centre -1, the other taps summing to 1.

    Applied as a re-parametrisation in the forward pass (differentiable), so the constraint always holds
    instead of being re-imposed after each optimiser step. Every kernel then sums to zero: a high-pass filter.
    """
    side = weight.shape[-1]
    mask = torch.ones_like(weight)
    mask[..., side // 2, side // 2] = 0
    off = weight * mask
    total = off.sum(dim=(-2, -1), keepdim=True)
    total = torch.where(total.abs() < eps, torch.full_like(total, eps), total)
    return off / total - (1 - mask)


def log_spectrum(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Centred (fftshift) log-magnitude 2D FFT of each (H, W) plane, mean removed first (no DC spike)."""
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    mag = torch.fft.fft2(x.float()).abs()
    return torch.fft.fftshift(torch.log(mag + eps), dim=(-2, -1))


def radial_index(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """Integer distance of each pixel of a centred (h, w) spectrum from its centre (the zero frequency)."""
    yy = torch.arange(h, device=device, dtype=torch.float32) - h // 2
    xx = torch.arange(w, device=device, dtype=torch.float32) - w // 2
    return torch.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2).round().long()


def azimuthal_average(spectrum: torch.Tensor, n_bins: int | None = None) -> torch.Tensor:
    """Mean of a centred spectrum (..., H, W) over rings of equal radius -> (..., R), R = min(H, W) // 2 + 1.

    ``n_bins``: resample the profile (linear) to a fixed length, so images of any size give comparable features.
    """
    h, w = spectrum.shape[-2:]
    n_r = min(h, w) // 2 + 1
    r = radial_index(h, w, spectrum.device).flatten()
    inside = r < n_r  # the corners beyond the inscribed circle have incomplete rings: left out
    r, flat = r[inside], spectrum.reshape(-1, h * w)[:, inside]
    sums = torch.zeros(flat.shape[0], n_r, dtype=flat.dtype, device=flat.device).index_add_(1, r, flat)
    counts = torch.bincount(r, minlength=n_r).to(flat.dtype)
    profile = sums / counts
    if n_bins is not None and n_bins != n_r:
        profile = F.interpolate(profile[:, None], size=n_bins, mode="linear", align_corners=True)[:, 0]
    return profile.reshape(*spectrum.shape[:-2], profile.shape[-1])
