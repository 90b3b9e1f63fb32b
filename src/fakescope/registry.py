"""One registry for every detector: a detector is added in one file with one decorator.

Each entry carries its default configuration next to its code (as timm's ``default_cfg`` does): input size,
input mode and normalisation, and the layer Grad-CAM explains. The CLI, the API, the benchmarks and the tests all
enumerate detectors from here; the families register in :mod:`fakescope.models._registry`, which this module
fills by importing :mod:`fakescope.models.families` on first look-up.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fakescope.data.preprocess import Preprocess
from fakescope.models._registry import SPECS, DetectorSpec, ModelFactory, register_detector

if TYPE_CHECKING:  # the registry itself imports no torch: the model families do, when they are loaded
    from torch import nn

__all__ = ["DetectorSpec", "ModelFactory", "create_detector", "get_spec", "list_detectors", "register_detector"]


def _ensure_loaded() -> None:
    import fakescope.models.families  # noqa: F401  (registers the built-in detectors)


def list_detectors() -> list[str]:
    """Names of every registered detector, sorted."""
    _ensure_loaded()
    return sorted(SPECS)


def get_spec(name: str) -> DetectorSpec:
    _ensure_loaded()
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; registered: {', '.join(sorted(SPECS))}") from None


def create_detector(
    name: str,
    *,
    input_mode: str | None = None,
    size: int | None = None,
    pretrained: bool | str = False,
    resize: str | None = None,
    **kwargs: Any,
) -> tuple["nn.Module", Preprocess]:
    """Build detector ``name`` and the preprocessing its input needs.

    ``pretrained``: False for random initialisation, True for the packaged or cached ImageNet weights when the
    family has them, or a path to a local weights file.
    """
    spec = get_spec(name)
    pre = spec.resolve_preprocess(input_mode, size, resize)
    model = spec.factory(in_chans=pre.channels, pretrained=pretrained, size=pre.size, **{**spec.kwargs, **kwargs})
    return model, pre
