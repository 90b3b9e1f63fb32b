"""Where detector families register themselves (``@register_detector``), as timm's ``models/_registry.py``.

A leaf: the families import it, it imports none of them. Look detectors up through :mod:`fakescope.registry`,
which loads every family first.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from fakescope.data.preprocess import Preprocess

if TYPE_CHECKING:  # the registry itself imports no torch: the model families do, when they are loaded
    from torch import nn

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


#: name -> spec of every detector registered so far (``fakescope.registry`` loads every family first)
SPECS: dict[str, DetectorSpec] = {}


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
        if name in SPECS:
            raise ValueError(f"detector {name!r} is already registered")
        SPECS[name] = DetectorSpec(name, factory, preprocess, target_layer, description, fixed_size, kwargs)
        return factory

    return wrap
