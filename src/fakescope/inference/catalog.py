"""What ``fakescope models`` and ``GET /v1/models`` list: every registered detector and its shipped weights.

Listing reads ``models/catalog.json``, the registry's rows (name, parameter count, default input, description) as
:func:`registry_rows` computes them, so it imports neither PyTorch nor timm and builds no model (the registry's
families import both, and counting parameters builds each of the 20-odd models). The file ships with the package;
tests/test_models.py fails until :func:`write_catalog` is run after a detector is added or changed.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from fakescope.checkpoint import read_meta
from fakescope.inference.detector import DEFAULT_DETECTOR, shipped_weights

#: The registry's rows, as :func:`registry_rows` computes them (package data).
CATALOG = Path(str(resources.files("fakescope") / "models" / "catalog.json"))


def count_params(name: str) -> int:
    """Parameters plus BatchNorm running statistics, counted on the meta device (no memory, no init cost)."""
    import torch

    from fakescope.checkpoint import CheckpointMeta, build_model
    from fakescope.registry import get_spec

    with torch.device("meta"):
        model = build_model(CheckpointMeta(name, get_spec(name).preprocess))
    stats = sum(b.numel() for k, b in model.named_buffers() if k.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in model.parameters()) + stats


def registry_rows() -> list[dict[str, Any]]:
    """One row per registered detector, from the registry itself (imports PyTorch and every family)."""
    from fakescope.registry import get_spec, list_detectors

    rows = []
    for name in list_detectors():
        spec = get_spec(name)
        rows.append({"name": name, "params": count_params(name), "input_size": spec.preprocess.size,
                     "input_mode": spec.preprocess.input_mode, "description": spec.description})
    return rows


def write_catalog(path: Path = CATALOG) -> Path:
    """Write :func:`registry_rows` to the catalog file (after a detector is added or changed)."""
    path.write_text(json.dumps(registry_rows(), indent=1) + "\n")
    return path


def detector_catalog() -> list[dict[str, Any]]:
    """One row per registered detector; a detector with shipped weights shows the input those weights were trained
    on (their checkpoint header), which may differ from the architecture's default."""
    rows = []
    for row in json.loads(CATALOG.read_text()):
        weights = shipped_weights(row["name"])
        pre = read_meta(weights).preprocess if weights is not None else None
        rows.append({
            "name": row["name"],
            "params": row["params"],
            "input_size": pre.size if pre else row["input_size"],
            "input_mode": pre.input_mode if pre else row["input_mode"],
            "shipped": weights is not None,
            "default": row["name"] == DEFAULT_DETECTOR,
            "description": row["description"],
        })
    return rows
