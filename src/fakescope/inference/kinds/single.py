"""The plain kind: one registered architecture and its weights in one checkpoint (``info["kind"]`` absent); the
only kind with an ONNX twin (``--backend onnx|auto``)."""
from __future__ import annotations

from fakescope.inference.detector import Detector
from fakescope.inference.kinds import SINGLE, register_kind


@register_kind(SINGLE)
class SingleDetector(Detector):
    """A checkpoint of one model: the base :class:`Detector` contract, plus export to ONNX Runtime."""

    def onnx_detector(self) -> Detector:
        from fakescope.inference.onnx import onnx_backend

        return onnx_backend(self)
