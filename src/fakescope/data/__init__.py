"""Datasets: layout discovery, splits, preprocessing with an on-disk cache, and augmentation.

The names below are imported on first use (PEP 562), so importing one submodule (``fakescope.data.preprocess``, as
a scan does) does not pull in scikit-learn through the splits.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Preprocess": "preprocess", "Sample": "discovery", "discover_samples": "discovery",
            "iter_image_files": "discovery", "class_weights": "splits", "stratified_split": "splits"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
