"""What ``fakescope models`` and ``GET /v1/models`` list: every registered detector and its shipped weights."""
from __future__ import annotations

from typing import Any

import torch

from fakescope.checkpoint import CheckpointMeta, build_model, read_meta
from fakescope.inference.detector import DEFAULT_DETECTOR, shipped_weights
from fakescope.registry import get_spec, list_detectors


def count_params(name: str) -> int:
    """Parameters plus BatchNorm running statistics, counted on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = build_model(CheckpointMeta(name, get_spec(name).preprocess))
    stats = sum(b.numel() for k, b in model.named_buffers() if k.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in model.parameters()) + stats


def detector_catalog() -> list[dict[str, Any]]:
    """One row per registered detector; a detector with shipped weights shows the input those weights were trained
    on (their checkpoint header), which may differ from the architecture's default."""
    rows = []
    for name in list_detectors():
        spec = get_spec(name)
        weights = shipped_weights(name)
        pre = read_meta(weights).preprocess if weights is not None else spec.preprocess
        rows.append({
            "name": name,
            "params": count_params(name),
            "input_size": pre.size,
            "input_mode": pre.input_mode,
            "shipped": weights is not None,
            "default": name == DEFAULT_DETECTOR,
            "description": spec.description,
        })
    return rows
