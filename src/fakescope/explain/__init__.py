"""Why a detector says fake: class-activation maps (pytorch-grad-cam), ELA and noise views, overlays."""
from fakescope.explain.cam import CAM_METHODS, DEFAULT_CAM, ExplainError, cam_heatmap
from fakescope.explain.overlay import colorize, overlay
from fakescope.explain.views import (
    METHODS,
    ela_view,
    explain_files,
    explain_image,
    heatmap,
    noise_view,
)

__all__ = ["CAM_METHODS", "DEFAULT_CAM", "METHODS", "ExplainError", "cam_heatmap", "colorize", "ela_view", "explain_files",
           "explain_image", "heatmap", "noise_view", "overlay"]
