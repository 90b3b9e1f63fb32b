"""Heatmaps made visible: a colour map alone, or blended over the image it explains."""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image

from fakescope.explain.cam import resize_map


def colorize(heatmap: np.ndarray, cmap: str = "inferno") -> Image.Image:
    """A float map in [0, 1] (H, W) -> an RGB image through matplotlib colour map ``cmap``."""
    rgba = colormaps[cmap](np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0))
    return Image.fromarray((rgba[..., :3] * 255.0 + 0.5).astype(np.uint8))


def overlay(img: Image.Image, heatmap: np.ndarray, image_weight: float = 0.5) -> Image.Image:
    """``heatmap`` (H, W) in [0, 1] blended over ``img`` with the jet colour map (pytorch-grad-cam's renderer).

    The map is resized to the image when their sizes differ. For 6-channel rgb+ela detectors pass the RGB image:
    the overlay is always drawn on what a person sees.
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image  # imports PyTorch: only when an overlay is drawn

    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    mask = resize_map(np.asarray(heatmap, dtype=np.float32), img.size)
    return Image.fromarray(show_cam_on_image(rgb, mask, use_rgb=True, image_weight=image_weight))
