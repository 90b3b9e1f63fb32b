"""The array module the from-scratch CNN runs on: CuPy when it is importable and sees a GPU, NumPy otherwise.

Layers never hard-code either library: they ask :func:`array_module` for the module of the arrays they are given,
so the same code runs on NumPy arrays (CPU) and CuPy arrays (GPU). ``xp`` is the default for arrays created from
nothing (weights of a new network). ``FAKESCOPE_SCRATCH_BACKEND=numpy`` forces NumPy even on a GPU machine.
"""
from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _usable_cupy() -> ModuleType | None:
    if os.environ.get("FAKESCOPE_SCRATCH_BACKEND", "auto").lower() == "numpy":
        return None
    try:
        import cupy
    except Exception:  # noqa: BLE001  not installed, or installed without a matching CUDA runtime
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # noqa: BLE001  CUDA driver missing: CuPy imports but cannot run
        log.debug("cupy is installed but no GPU is usable; using numpy")
    return None


cupy = _usable_cupy()
#: The default array module: CuPy when usable, else NumPy.
xp: ModuleType = cupy if cupy is not None else np


def array_module(*arrays: Any) -> ModuleType:
    """``numpy`` or ``cupy``, whichever the arrays belong to."""
    if cupy is not None:
        return cupy.get_array_module(*arrays)
    return np


def from_torch(tensor: Any) -> Any:
    """A view of a torch tensor as a NumPy (CPU) or CuPy (CUDA) array; no copy."""
    tensor = tensor.detach()
    if tensor.device.type == "cpu":
        return tensor.numpy()
    if tensor.device.type == "cuda":
        if cupy is None:
            raise RuntimeError("scratch-cnn on a CUDA device needs CuPy (pip install cupy-cuda12x); "
                               "or run it with --device cpu")
        return cupy.from_dlpack(tensor)
    raise RuntimeError(f"scratch-cnn runs on CPU (NumPy) or CUDA (CuPy), not on {tensor.device.type}")


def to_torch(array: Any) -> Any:
    """A torch tensor sharing the memory of a NumPy or CuPy array."""
    import torch

    if isinstance(array, np.ndarray):
        return torch.from_numpy(array)
    return torch.from_dlpack(array)
