"""One registry for every image generator, shaped like the detector registry (timm's ``register_model``).

A generator family is one file with one decorated factory ``f(size, channels, num_classes, **kwargs) -> nn.Module``.
The module it returns follows one contract (:class:`fakescope.generators.base.ImageGenerator`), so training,
sampling, checkpoints and the CLI never branch on the model's name.
"""
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


_GENERATORS: dict[str, GeneratorSpec] = {}


def register_generator(name: str, *, description: str = "", conditional: bool = False,
                       **kwargs: Any) -> Callable[[GeneratorFactory], GeneratorFactory]:
    """Decorator registering ``factory(size=..., channels=..., num_classes=..., **kwargs) -> nn.Module``."""

    def wrap(factory: GeneratorFactory) -> GeneratorFactory:
        if name in _GENERATORS:
            raise ValueError(f"generator {name!r} is already registered")
        _GENERATORS[name] = GeneratorSpec(name, factory, description, conditional, kwargs)
        return factory

    return wrap


def _ensure_loaded() -> None:
    from fakescope.generators import autoencoder, cgan, dcgan, vae  # noqa: F401  (register the families)


def list_generators() -> list[str]:
    """Names of every registered generator, sorted."""
    _ensure_loaded()
    return sorted(_GENERATORS)


def get_generator_spec(name: str) -> GeneratorSpec:
    _ensure_loaded()
    try:
        return _GENERATORS[name]
    except KeyError:
        raise KeyError(f"unknown generator {name!r}; registered: {', '.join(sorted(_GENERATORS))}") from None


def create_generator(name: str, *, size: int = 64, channels: int = 3, num_classes: int = 1,
                     **kwargs: Any) -> nn.Module:
    """Build generator ``name`` for ``size`` x ``size`` images with ``channels`` channels."""
    spec = get_generator_spec(name)
    return spec.factory(size=size, channels=channels, num_classes=num_classes, **{**spec.kwargs, **kwargs})
