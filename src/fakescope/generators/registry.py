"""One registry for every image generator, shaped like the detector registry (timm's ``register_model``).

A generator family is one file with one decorated factory ``f(size, channels, num_classes, **kwargs) -> nn.Module``.
The module it returns follows one contract (:class:`fakescope.generators.base.ImageGenerator`), so training,
sampling, checkpoints and the CLI never branch on the model's name.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from fakescope.generators._registry import GENERATORS, GeneratorFactory, GeneratorSpec, register_generator

__all__ = ["GeneratorFactory", "GeneratorSpec", "create_generator", "get_generator_spec", "list_generators",
           "register_generator"]


def _ensure_loaded() -> None:
    from fakescope.generators import autoencoder, cgan, dcgan, vae  # noqa: F401  (register the families)


def list_generators() -> list[str]:
    """Names of every registered generator, sorted."""
    _ensure_loaded()
    return sorted(GENERATORS)


def get_generator_spec(name: str) -> GeneratorSpec:
    _ensure_loaded()
    try:
        return GENERATORS[name]
    except KeyError:
        raise KeyError(f"unknown generator {name!r}; registered: {', '.join(sorted(GENERATORS))}") from None


def create_generator(name: str, *, size: int = 64, channels: int = 3, num_classes: int = 1,
                     **kwargs: Any) -> nn.Module:
    """Build generator ``name`` for ``size`` x ``size`` images with ``channels`` channels."""
    spec = get_generator_spec(name)
    return spec.factory(size=size, channels=channels, num_classes=num_classes, **{**spec.kwargs, **kwargs})
