"""Class-activation maps of the "fake" logit through pytorch-grad-cam.

The target is ``ClassifierOutputTarget(1)``: every detector returns logits (N, 2) with index 1 = fake, so the map
shows what pushes the score towards fake, whatever the prediction. The layer is the one each detector declares
in the registry (``get_spec(name).target_layer``), resolved with ``model.get_submodule``. The CAM objects are
used as context managers so that their hooks are released even on error. PyTorch and pytorch-grad-cam are imported
when a map is drawn, so the model-free views (ELA, noise, copy-move) start without them.
"""
from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from fakescope.data.preprocess import Preprocess
from fakescope.progress import track
from fakescope.registry import get_spec

if TYPE_CHECKING:
    import torch
    from pytorch_grad_cam.base_cam import BaseCAM
    from torch import nn

log = logging.getLogger(__name__)

#: Index of the "fake" logit in every detector's output.
FAKE_CLASS = 1
#: CAM methods by CLI name, each a pytorch-grad-cam class. Score-CAM runs one forward pass per channel of the target
#: layer: cheap for the ELA-CNN (64 channels), slow for wide layers (EfficientNet's 1280; one map of the shipped default
#: is timed in docs/benchmarks/localisation.md).
CAM_METHODS: dict[str, str] = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "scorecam": "ScoreCAM"}
CAM_LABELS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM"}
#: The method of the scan report, the REST service and `fakescope explain` unless one is named: on the shipped
#: default it points at CASIA's tampered regions better than Grad-CAM at the same cost
#: (docs/benchmarks/localisation.md, `bench/localisation.py`).
DEFAULT_CAM = "gradcam++"

# Hooks are registered on the (shared) model for the duration of one map; a served model may be explained from
# several threads at once, and their hooks must not see each other's activations.
_CAM_LOCK = threading.Lock()


class ExplainError(ValueError):
    """The detector or method cannot produce a class-activation map."""


def target_layer(model: nn.Module, architecture: str) -> nn.Module:
    """The layer registered detector ``architecture`` declares for Grad-CAM, found in ``model``."""
    try:
        name = get_spec(architecture).target_layer
    except KeyError as err:
        raise ExplainError(str(err).strip("'\"")) from None
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ExplainError(f"detector {architecture!r} declares target layer {name!r}, "
                           f"which its model does not have") from None


def model_input(preprocess: Preprocess, img: Image.Image) -> torch.Tensor:
    """The (1, C, S, S) float tensor the model sees for ``img`` (RGB, ELA or both, as its preprocessing says)."""
    return preprocess.to_tensor(preprocess.to_array(img.convert("RGB")))


def resize_map(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float map resized (bilinear) to ``size`` = (width, height), clipped to [0, 1]."""
    if heatmap.shape[::-1] != tuple(size):
        as_image = Image.fromarray(heatmap.astype(np.float32))
        heatmap = np.asarray(as_image.resize(size, Image.Resampling.BILINEAR))
    return np.clip(heatmap, 0.0, 1.0).astype(np.float32)


def cam_class(method: str) -> type[BaseCAM]:
    """The pytorch-grad-cam class of ``method`` (a :data:`CAM_METHODS` name)."""
    if method not in CAM_METHODS:
        raise ExplainError(f"unknown CAM method {method!r}; choose from {', '.join(CAM_METHODS)}")
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, CAM_METHODS[method])


@contextmanager
def _channels_last_input(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Within this block a model on the CPU reads its image batches channels-last, the layout oneDNN's convolutions
    are fastest in (as training does): the same sums, added in another order. Score-CAM's masked forward passes are
    what it speeds up (docs/benchmarks/localisation.md). Clips (5-D) have no such layout. A thread scoring with the
    same model meanwhile reads channels-last too, which changes its scores by float rounding at most."""
    import torch

    def to_channels_last(_module: nn.Module, args: tuple) -> tuple | None:
        x = args[0]
        return (x.contiguous(memory_format=torch.channels_last), *args[1:]) if x.ndim == 4 else None

    handle = model.register_forward_pre_hook(to_channels_last) if device.type == "cpu" else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


@contextmanager
def _progress_to_fakescope(cam_type: type[BaseCAM], method: str) -> Iterator[None]:
    """pytorch-grad-cam's Score-CAM walks its masked batches through a bare ``tqdm.tqdm``, which no option turns off
    and which writes its bar to stderr even into a pipe or a log. For this block the module of ``cam_type`` (only
    it: the user's own tqdm is untouched) sees a ``tqdm`` that reports to :func:`fakescope.progress.track` instead,
    a Rich bar in the CLI when stderr is a terminal and nothing otherwise. Callers hold ``_CAM_LOCK``."""
    module = sys.modules[cam_type.__module__]
    library_tqdm = getattr(module, "tqdm", None)

    def steps(batch_starts: range) -> Iterable[int]:
        return track(batch_starts, len(batch_starts), CAM_LABELS[method])

    if library_tqdm is not None:
        module.tqdm = SimpleNamespace(tqdm=steps)
    try:
        yield
    finally:
        if library_tqdm is not None:
            module.tqdm = library_tqdm


def model_cams_and_logits(model: nn.Module, architecture: str, x: torch.Tensor,
                          method: str = DEFAULT_CAM) -> tuple[np.ndarray, torch.Tensor]:
    """CAM of the fake logit for every input of batch ``x`` (N, C, S, S) -> float32 (N, S, S), each in [0, 1], and
    the logits (N, 2) of the same forward pass."""
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_type = cam_class(method)
    layer = target_layer(model, architecture)
    device = next(model.parameters()).device
    with (_CAM_LOCK, torch.inference_mode(False), torch.enable_grad(), _channels_last_input(model, device),
          _progress_to_fakescope(cam_type, method)):
        # A fresh copy (never an inference tensor) that carries a gradient, so the hooks fire even when every
        # parameter is frozen.
        x = x.detach().clone().to(device).requires_grad_(True)
        with cam_type(model=model, target_layers=[layer]) as cam:
            grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(FAKE_CLASS)] * len(x))
            logits = cam.outputs.detach().float().cpu()
        model.zero_grad(set_to_none=True)
    return np.nan_to_num(grayscale.astype(np.float32)), logits


def model_cam(model: nn.Module, architecture: str, x: torch.Tensor, method: str = DEFAULT_CAM) -> np.ndarray:
    """CAM of the fake logit for input batch ``x`` (1, C, S, S) -> float32 (S, S) in [0, 1]."""
    return model_cams_and_logits(model, architecture, x, method)[0][0]


def cam_heatmap(detector, img: Image.Image, method: str = DEFAULT_CAM) -> np.ndarray:
    """Class-activation map of the fake class for ``img``: float32 (H, W) in [0, 1] at the image's own size, as
    the detector's kind makes it (:meth:`fakescope.inference.Detector.explain_map`; a patch detector explains
    every patch of the whole image). Kinds without a single model, such as ensembles, raise :class:`ExplainError`.
    """
    return detector.explain_map(img, method)
