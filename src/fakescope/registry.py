"""One registry for every detector: a detector is added in one file with one decorator.

Each entry carries its default configuration next to its code (as timm's ``default_cfg`` does): input size,
input mode and normalisation, and the layer Grad-CAM explains. The CLI, the API, the benchmarks and the tests all
enumerate detectors from here.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from fakescope.data.preprocess import Preprocess

if TYPE_CHECKING:  # the registry itself imports no torch: the model families do, when they are loaded
    from torch import nn

log = logging.getLogger(__name__)

ModelFactory = Callable[..., "nn.Module"]


@dataclass(frozen=True)
class DetectorSpec:
    """What the registry knows about a detector family member."""

    name: str
    factory: ModelFactory
    preprocess: Preprocess
    target_layer: str
    description: str = ""
    #: Whether the input size may change (a fixed-size head, like the ELA-CNN's, forbids it).
    fixed_size: bool = False
    #: Default keyword arguments for the factory.
    kwargs: dict[str, Any] = field(default_factory=dict)

    def resolve_preprocess(self, input_mode: str | None = None, size: int | None = None,
                           resize: str | None = None) -> Preprocess:
        """The default preprocessing with an optional input mode, size or resize-mode override (``crop``: a
        content backbone reads native-resolution windows and scores an image from its patches)."""
        pre = self.preprocess
        if resize is not None and resize != pre.resize:
            pre = replace(pre, resize=resize)
        if size is not None and size != pre.size:
            if self.fixed_size:
                raise ValueError(f"detector {self.name!r} needs input size {pre.size}, got {size}")
            pre = replace(pre, size=size)
        if input_mode is not None and input_mode != pre.input_mode:
            imagenet = pre.mean[:3] != (0.0, 0.0, 0.0)
            norm = Preprocess.for_mode(input_mode, pre.size, imagenet)
            # replace() keeps every other field (ELA settings, crop/resize mode, clip length, ...)
            pre = replace(pre, input_mode=input_mode, mean=norm.mean, std=norm.std)
        return pre


_REGISTRY: dict[str, DetectorSpec] = {}


def register_detector(
    name: str,
    *,
    preprocess: Preprocess,
    target_layer: str,
    description: str = "",
    fixed_size: bool = False,
    **kwargs: Any,
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering ``factory(in_chans=..., pretrained=..., size=..., **kwargs) -> nn.Module``."""

    def wrap(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"detector {name!r} is already registered")
        _REGISTRY[name] = DetectorSpec(name, factory, preprocess, target_layer, description, fixed_size, kwargs)
        return factory

    return wrap


def _ensure_loaded() -> None:
    import fakescope.models  # noqa: F401  (registers the built-in detectors)


def list_detectors() -> list[str]:
    """Names of every registered detector, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_spec(name: str) -> DetectorSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


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
