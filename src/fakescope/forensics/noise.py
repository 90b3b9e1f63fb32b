"""Noise-residual analysis: what is left after removing the image content with a median filter.

Every camera and every processing chain leaves its own noise floor. A region pasted in from another picture, or
smoothed and re-sampled while being edited, usually carries a noise level that differs from the rest of the
image, so a map of the local noise level is a model-free hint of where to look (as the ELA map is for JPEG
re-compression). Only scipy's filters are used: no torch.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage


def luminance(img: Image.Image) -> np.ndarray:
    """The image's luma as float32 in [0, 255], shape (H, W)."""
    return np.asarray(img.convert("L"), dtype=np.float32)


def noise_residual(img: Image.Image, size: int = 3) -> np.ndarray:
    """Absolute high-pass residual ``|Y - median_size(Y)|`` of the luma, float32 (H, W).

    The median filter keeps edges and flat areas and removes the sensor and compression noise, so the residual
    holds mostly noise rather than content.
    """
    y = luminance(img)
    return np.abs(y - ndimage.median_filter(y, size=size, mode="reflect"))


def local_noise_level(img: Image.Image, size: int = 3, window: int = 16) -> np.ndarray:
    """Local standard deviation of the noise residual, float32 (H, W).

    The statistics use a Gaussian window of about ``window`` pixels (sigma = window / 4) rather than a box, so
    the map has no square blocks of its own.
    """
    r = noise_residual(img, size)
    sigma = window / 4.0
    mean = ndimage.gaussian_filter(r, sigma, mode="reflect")
    mean_sq = ndimage.gaussian_filter(r * r, sigma, mode="reflect")
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def noise_map(img: Image.Image, size: int = 3, window: int = 16) -> np.ndarray:
    """The local noise level scaled to [0, 1] (the 99th percentile maps to 1), shape (H, W).

    Bright regions are noisier than the rest: on CASIA splices the pasted objects often are. Texture also raises
    the level, so read the map next to the image, as a hint and not as a verdict.
    """
    level = local_noise_level(img, size, window)
    top = float(np.percentile(level, 99))
    if top <= 0:
        return np.zeros_like(level, dtype=np.float32)
    return np.clip(level / top, 0.0, 1.0).astype(np.float32)
