"""Shared helpers of the benchmark scripts: where the data is, the validation splits, writing docs sections."""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from fakescope.data.discovery import Sample, discover_samples
from fakescope.data.splits import stratified_split

REPO = Path(__file__).resolve().parents[1]
SETS = ("casia1", "faces140k", "diffusiondb")


def data_root() -> Path:
    """The shared data folder, absolute (run configs record it, and held_out_sets compares them)."""
    return Path(os.environ.get("FAKESCOPE_DATA", REPO.parent / "shared" / "data")).resolve()


def val_split(name: str, seed: int = 0, val_fraction: float = 0.2) -> list[Sample]:
    """The validation split ``fakescope train`` uses for this set (seed 0, 20%, scene-group aware); the folder is
    walked once per process, however many models and perturbations a bench scores on it."""
    return train_val_split(name, seed, val_fraction)[1]


def train_val_split(name: str, seed: int = 0, val_fraction: float = 0.2) -> tuple[list[Sample], list[Sample]]:
    """(training split, validation split) as ``fakescope train`` makes them, from the same cached walk."""
    train, val = _split(str(data_root() / name), seed, val_fraction)
    return list(train), list(val)


@functools.cache
def _split(folder: str, seed: int, val_fraction: float) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    train, val = stratified_split(discover_samples(folder), val_fraction, seed)
    return tuple(train), tuple(val)


def write_section(heading: str, body: str, path: Path = REPO / "docs" / "benchmarks.md") -> None:
    """Replace (or append) the ``## heading`` section of docs/benchmarks.md, leaving other sections alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"## {heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: block + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.write_text(text)
