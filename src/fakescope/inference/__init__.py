"""Inference: the one Detector object every caller (CLI, API, report, benchmarks) uses."""
from fakescope.inference.detector import DEFAULT_DETECTOR, Detector, DetectorError
from fakescope.inference import patches  # noqa: F401  (registers the "patch" checkpoint kind for Detector.load)

__all__ = ["DEFAULT_DETECTOR", "Detector", "DetectorError"]
