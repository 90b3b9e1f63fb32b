"""Detector families, one per file; importing this package registers them all."""
from fakescope.models import backbones, ela_cnn, hybrid  # noqa: F401
from fakescope.models import scratch  # noqa: F401  (scratch-cnn, the from-scratch NumPy/CuPy CNN)

__all__ = ["backbones", "ela_cnn", "hybrid"]
__all__ += ["scratch"]
from fakescope.models import npr, spectral, srm  # noqa: F401  (trace detectors: npr, srm, bayar, spectral)

__all__ += ["npr", "spectral", "srm"]
from fakescope.models import temporal  # noqa: F401  (temporal: frame CNN + bidirectional LSTM over video clips)

__all__ += ["temporal"]
