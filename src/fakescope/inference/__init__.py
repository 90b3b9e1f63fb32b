"""Inference: the one Detector object every caller (CLI, API, report, benchmarks) uses; its kinds (single model,
patches, clips, ensembles, int8, ONNX) are :mod:`fakescope.inference.kinds`."""
from fakescope.inference.detector import DEFAULT_DETECTOR, Detector, DetectorError

__all__ = ["DEFAULT_DETECTOR", "Detector", "DetectorError"]
