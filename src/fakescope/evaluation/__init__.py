"""Metrics, plots, robustness sweeps and reports."""
from fakescope.evaluation.metrics import compute_metrics

__all__ = ["compute_metrics"]
