"""fakescope: tell real images from deepfakes and tampered images, and show why."""
from __future__ import annotations

__version__ = "0.1.0"

from fakescope.registry import create_detector, list_detectors, register_detector  # noqa: E402


def load_detector(name_or_path: str = "default", **kwargs):
    """Load a ready-to-use :class:`fakescope.inference.Detector` (shipped name or checkpoint path)."""
    from fakescope.inference.detector import Detector

    return Detector.load(name_or_path, **kwargs)


__all__ = ["__version__", "create_detector", "list_detectors", "load_detector", "register_detector"]
