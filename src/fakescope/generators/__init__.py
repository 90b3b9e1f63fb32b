"""Image generators that make fakes: DCGAN, conditional GAN, convolutional autoencoder, VAE; and FID.

Registered like the detectors: ``list_generators()``, ``create_generator(name, size=64)``; checkpoints are
safetensors files with ``info["kind"] = "generator"`` (``save_generator`` / ``load_generator``).
"""
from fakescope.generators.checkpoint import load_generator, save_generator
from fakescope.generators.registry import (
    GeneratorSpec,
    create_generator,
    get_generator_spec,
    list_generators,
    register_generator,
)

__all__ = [
    "GeneratorSpec",
    "create_generator",
    "get_generator_spec",
    "list_generators",
    "load_generator",
    "register_generator",
    "save_generator",
]
