"""Detector families, one per file; importing this package registers them all."""
from fakescope.models import backbones, ela_cnn  # noqa: F401

__all__ = ["backbones", "ela_cnn"]
