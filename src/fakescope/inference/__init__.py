"""Inference: the one Detector object every caller (CLI, API, report, benchmarks) uses."""
from fakescope.inference import patches  # noqa: F401  (registers the "patch" checkpoint kind for Detector.load)
from fakescope.inference.detector import DEFAULT_DETECTOR, Detector, DetectorError

__all__ = ["DEFAULT_DETECTOR", "Detector", "DetectorError"]
