"""Trace transforms on known inputs, and the trace detectors' first layers keeping their promises."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from fakescope.forensics.traces import (
    LAPLACIAN,
    SRM_KERNELS,
    azimuthal_average,
    bayar_constrain,
    highpass_residual,
    log_spectrum,
    npr_residual,
)
from fakescope.registry import create_detector


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def test_npr_of_nearest_upsampled_image_is_exactly_zero():
    x = upsample2(torch.rand(2, 3, 16, 12))
    assert torch.equal(npr_residual(x), torch.zeros_like(x))


def test_npr_matches_interpolate_definition_and_sees_pixel_noise():
    x = torch.rand(1, 3, 16, 16)
    reference = x - upsample2(F.interpolate(x, scale_factor=0.5, mode="nearest"))
    assert torch.equal(npr_residual(x), reference)
    assert npr_residual(x).abs().mean() > 0.1


def test_npr_keeps_odd_sizes():
    x = torch.rand(1, 1, 7, 9)
    r = npr_residual(x)
    assert r.shape == x.shape
    assert torch.equal(r[0, 0, -1, ::2], torch.zeros(5))  # the last row is its own cells' anchor row
    assert torch.equal(r[0, 0, -1, 1::2], x[0, 0, -1, 1::2] - x[0, 0, -1, :-1:2])


@pytest.mark.parametrize("kernels", [SRM_KERNELS, LAPLACIAN], ids=["srm", "laplacian"])
def test_highpass_residual_of_constant_image_is_zero(kernels):
    flat = torch.full((1, 3, 20, 24), 0.6)
    r = highpass_residual(flat, kernels)
    assert r.shape == (1, 3 * len(kernels), 20, 24)
    assert r.abs().max() < 1e-6
    assert highpass_residual(torch.rand(1, 3, 20, 24), kernels).abs().mean() > 1e-2


def test_srm_kernels_sum_to_zero():
    assert np.allclose(SRM_KERNELS.sum(axis=(1, 2)), 0.0, atol=1e-6)


def test_bayar_constraint_centre_minus_one_and_zero_sum():
    w = bayar_constrain(torch.randn(4, 3, 5, 5))
    assert torch.allclose(w[..., 2, 2], torch.full((4, 3), -1.0))
    assert torch.allclose(w.sum(dim=(-2, -1)), torch.zeros(4, 3), atol=1e-5)


def test_spectrum_of_periodic_pattern_peaks_at_its_frequency():
    n, fy, fx = 64, 4, 8
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    img = torch.cos(2 * torch.pi * (fy * yy + fx * xx) / n) + 0.05 * torch.rand(n, n, generator=torch.Generator().manual_seed(0))
    spec = log_spectrum(img)
    peaks = {tuple(p) for p in (spec >= spec.max() - 1e-4).nonzero().tolist()}
    centre = n // 2
    assert peaks == {(centre + fy, centre + fx), (centre - fy, centre - fx)}


def test_azimuthal_average_peaks_at_pattern_radius():
    n, f = 64, 8
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    img = torch.cos(2 * torch.pi * f * xx / n) + torch.cos(2 * torch.pi * f * yy / n)
    img = img + 0.05 * torch.rand(n, n, generator=torch.Generator().manual_seed(1))
    profile = azimuthal_average(log_spectrum(img))
    assert profile.shape == (n // 2 + 1,)
    assert int(profile.argmax()) == f
    assert azimuthal_average(torch.rand(2, 3, 40, 50), n_bins=16).shape == (2, 3, 16)


def test_azimuthal_average_of_radial_function_recovers_it():
    n = 33
    yy, xx = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    radius = torch.sqrt((yy ** 2 + xx ** 2).float()).round()
    assert torch.allclose(azimuthal_average(radius), torch.arange(n // 2 + 1, dtype=torch.float32))


def test_npr_detector_ignores_content_constant_over_2x2_cells():
    model, _ = create_detector("npr_resnet18", size=32)
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    content = upsample2(torch.rand(2, 3, 16, 16)) * 5
    with torch.no_grad():
        assert torch.allclose(model(x), model(x + content), atol=1e-5)


@pytest.mark.parametrize("name", ["srm", "bayar"])
def test_residual_detectors_ignore_a_brightness_offset(name):
    model, _ = create_detector(name, size=32)
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), model(x + 0.3), atol=1e-4)


def test_srm_filter_is_not_trainable_and_not_stored():
    model, _ = create_detector("srm", size=32)
    assert not any(name.startswith("filter.") for name, _ in model.named_parameters())
    assert not any(k.startswith("filter.") for k in model.state_dict())


def test_spectral_input_is_spectrum_plus_frequency_coordinates():
    model, _ = create_detector("spectral", size=32)
    spec = model.spectrum(torch.rand(2, 3, 32, 32))
    assert spec.shape == (2, 5, 32, 32)
    assert torch.allclose(spec[0, 3:], spec[1, 3:])
    assert float(spec[0, 4, 0, 16]) == 0.0 and float(spec[0, 4, 0, 0]) == 1.0  # |fx| at the centre and the edge


@pytest.mark.parametrize("name", ["npr", "npr_resnet18", "srm", "bayar", "spectral"])
def test_trace_detectors_declare_native_crops(name):
    model, pre = create_detector(name, size=64)
    assert pre.resize == "crop" and pre.size == 64
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 2) and torch.isfinite(out).all()


def test_srm_detector_learns_an_upsampling_trace_that_content_does_not_show():
    """Both classes share the content distribution; fakes are re-sampled 2x (average down, bilinear up).

    Scored by ROC-AUC: after a few steps BatchNorm's running statistics still lag, which shifts the eval-mode
    logits (and so the accuracy at argmax) but not the ranking.
    """
    gen = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(torch.rand(n, 3, 4, 4, generator=gen), size=16, mode="bicubic", align_corners=False)
        x = (x + 0.05 * torch.randn(n, 3, 16, 16, generator=gen)).clamp(0, 1)
        y = torch.randint(0, 2, (n,), generator=gen)
        up = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
        return torch.where(y[:, None, None, None] == 1, up, x), y

    model, _ = create_detector("srm", size=16)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x_val, y_val = batch(128)
    with torch.no_grad():
        before = roc_auc_score(y_val, model.eval()(x_val)[:, 1])
    for _ in range(6):
        x, y = batch(16)
        loss = F.cross_entropy(model.train()(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = roc_auc_score(y_val, model.eval()(x_val)[:, 1])
    assert after > 0.95 and after > before
