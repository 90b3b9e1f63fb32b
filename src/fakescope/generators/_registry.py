"""Where generator families register themselves (``@register_generator``): a leaf the families import. Look
generators up through :mod:`fakescope.generators.registry`, which loads every family first."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

GeneratorFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class GeneratorSpec:
    """What the registry knows about a generator."""

    name: str
    factory: GeneratorFactory
    description: str = ""
    #: Whether the model takes class labels (training reads them from the folder layout).
    conditional: bool = False
    #: Default keyword arguments for the factory (widths, latent size, loss weights).
    kwargs: dict[str, Any] = field(default_factory=dict)


#: name -> spec of every generator registered so far
GENERATORS: dict[str, GeneratorSpec] = {}


def register_generator(name: str, *, description: str = "", conditional: bool = False,
                       **kwargs: Any) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Decorator registering ``factory(size=..., channels=..., num_classes=..., **kwargs) -> nn.Module``."""

    def wrap(factory: GeneratorFactory) -> GeneratorFactory:
        if name in GENERATORS:
            raise ValueError(f"generator {name!r} is already registered")
        GENERATORS[name] = GeneratorSpec(name, factory, description, conditional, kwargs)
        return factory

    return wrap
