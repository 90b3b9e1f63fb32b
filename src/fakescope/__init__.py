"""fakescope: tell real images from deepfakes and tampered images, and show why.

The public API is here: ``detect``, ``scan``, ``Result``, ``load_image``, ``load_detector``, ``create_detector``,
``list_detectors``, ``register_detector``. Each is imported on first use (PEP 562), so ``import fakescope`` stays
light. PyTorch is loaded only when something needs it: the shipped default scores with ONNX Runtime.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fakescope._version import __version__

#: public name -> module that defines it
_LAZY = {
    "detect": "fakescope.api",
    "scan": "fakescope.api",
    "Result": "fakescope.api",
    "load_image": "fakescope.forensics.io",
    "create_detector": "fakescope.registry",
    "list_detectors": "fakescope.registry",
    "register_detector": "fakescope.registry",
}

if TYPE_CHECKING:
    from fakescope.api import Result, detect, scan
    from fakescope.forensics.io import load_image
    from fakescope.registry import create_detector, list_detectors, register_detector


def load_detector(name_or_path: str = "default", **kwargs: Any):
    """Load a ready-to-use :class:`fakescope.inference.Detector` (shipped name or checkpoint path)."""
    from fakescope.inference.detector import Detector

    return Detector.load(name_or_path, **kwargs)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fakescope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["Result", "__version__", "create_detector", "detect", "list_detectors", "load_detector", "load_image",
           "register_detector", "scan"]
