"""The plain kind: one registered architecture and its weights in one checkpoint (``info["kind"]`` absent)."""
from __future__ import annotations

from pathlib import Path

from fakescope.checkpoint import load_checkpoint
from fakescope.inference.detector import Detector
from fakescope.inference.kinds import SINGLE, register_kind


@register_kind(SINGLE)
class SingleDetector(Detector):
    """A checkpoint of one model; the base :class:`Detector` contract unchanged."""

    @classmethod
    def from_checkpoint(cls, path: str | Path, name: str, device: str = "auto") -> SingleDetector:
        model, meta = load_checkpoint(path)
        return cls(model, meta, name, device)
