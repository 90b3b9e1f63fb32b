"""Generator checkpoints: the detectors' safetensors format (checkpoint.py) with ``info["kind"] = "generator"``.

The ``preprocess`` field records how training images were fed (RGB, ``size`` px, scaled to [-1, 1] by mean and
std 0.5); ``class_names`` are the labels a conditional model generates; ``model_kwargs`` rebuild the model.
``Detector.load`` refuses these files (unknown kind), so a generator is never mistaken for a detector.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from fakescope.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    read_meta,
    save_checkpoint,
)
from fakescope.data.preprocess import Preprocess
from fakescope.generators.base import ImageGenerator
from fakescope.generators.registry import create_generator

GENERATOR_KIND = "generator"


def generator_preprocess(size: int) -> Preprocess:
    """RGB at ``size`` px, mapped to [-1, 1] (the range of the Tanh output)."""
    return Preprocess(input_mode="rgb", size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def save_generator(path: str | Path, model: ImageGenerator, name: str, model_kwargs: dict[str, Any],
                   class_names: list[str] | None = None, info: dict[str, Any] | None = None) -> Path:
    meta = CheckpointMeta(architecture=name, preprocess=generator_preprocess(model.size),
                          model_kwargs=dict(model_kwargs), class_names=list(class_names or []),
                          info={**(info or {}), "kind": GENERATOR_KIND})
    return save_checkpoint(path, model, meta)


def load_generator(path: str | Path) -> tuple[ImageGenerator, CheckpointMeta]:
    """Rebuild a generator from its checkpoint (float32, eval mode); raises CheckpointError for other files."""
    meta = read_meta(path)
    kind = meta.info.get("kind", "model")
    if kind != GENERATOR_KIND:
        raise CheckpointError(f"{path}: not a generator checkpoint (kind {kind!r}); train one with "
                              "'fakescope train-generator'")
    try:
        model = create_generator(meta.architecture, size=meta.preprocess.size, channels=meta.preprocess.channels,
                                 **meta.model_kwargs)
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"{path}: cannot rebuild generator {meta.architecture!r}: {err}") from None
    return model.eval(), meta
