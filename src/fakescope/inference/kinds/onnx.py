"""The ONNX kind: an exported ``.onnx`` file scored through an ONNX Runtime ``InferenceSession``.

The fakescope checkpoint metadata (preprocessing, temperature, threshold, ...) is stored in the ONNX model's
``metadata_props`` under ``fakescope``, so an ``.onnx`` file alone can be scanned with. Exporting a checkpoint to
ONNX (and the ``--backend`` choice) is :mod:`fakescope.inference.onnx`.
"""
from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fakescope.checkpoint import CheckpointError, CheckpointMeta
from fakescope.inference.detector import Detector, DetectorError, available_cores
from fakescope.inference.kinds import register_kind

META_KEY = "fakescope"


def onnx_available() -> bool:
    """Whether onnx and onnxruntime are installed (the ``onnx`` backend needs both)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def make_session(path: str | Path, threads: int | None = None, spinning: bool = True) -> Any:
    """An ONNX Runtime CPU session: intra-op threads = available cores, full graph optimisation. ``spinning``:
    idle intra-op threads busy-wait for work (ONNX Runtime's default, lowest latency); off, they sleep, which
    leaves the cores to other busy processes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or available_cores()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def read_onnx_meta(session: Any, path: str | Path) -> CheckpointMeta:
    props = session.get_modelmeta().custom_metadata_map
    if META_KEY not in props:
        raise DetectorError(f"{path}: ONNX model has no fakescope metadata; export it with 'fakescope export'")
    try:
        return CheckpointMeta.from_json(props[META_KEY])
    except (CheckpointError, KeyError, ValueError) as err:
        raise DetectorError(f"{path}: bad fakescope metadata in ONNX model: {err}") from None


@register_kind("onnx", suffix=".onnx")
class OnnxDetector(Detector):
    """A :class:`Detector` whose model call runs in ONNX Runtime; preprocessing, temperature and threshold
    come from the same checkpoint metadata, so results are the PyTorch backend's to within 1e-4.

    ``model`` is the PyTorch module it was exported from when there is one (Grad-CAM needs it), else None.
    """

    def __init__(self, session: Any, meta: CheckpointMeta, name: str, model: nn.Module | None = None,
                 onnx_path: str | Path | None = None):
        self.device = torch.device("cpu")
        self.session = session
        self._sleeping_session: Any = None  # built on the first scan with workers, then kept
        self.meta = meta
        self.name = name
        self.model = model
        self.onnx_path = Path(onnx_path) if onnx_path else None
        self._input = session.get_inputs()[0].name

    @classmethod
    def from_onnx(cls, path: str | Path, name: str | None = None, threads: int | None = None) -> OnnxDetector:
        """Load an exported ``.onnx`` file on its own (its metadata says how to feed it)."""
        if not onnx_available():
            raise DetectorError("the onnx backend needs onnxruntime: pip install onnx onnxruntime onnxscript")
        if not Path(path).is_file():
            raise DetectorError(f"{path}: ONNX file does not exist")
        session = make_session(path, threads)
        return cls(session, read_onnx_meta(session, path), name or str(path), onnx_path=path)

    @classmethod
    def from_checkpoint(cls, path: str | Path, name: str, device: str = "cpu") -> OnnxDetector:
        return cls.from_onnx(path, name)

    @contextlib.contextmanager
    def alongside_workers(self, workers: int) -> Iterator[None]:
        """With decode workers busy, a session whose idle threads sleep instead of spinning (same file and
        threads; built once per detector), then the original again. `cd bench && python throughput.py --sessions`
        measures the choice (docs/benchmarks/speed.md, "Throughput"): spinning threads take the workers' cores from a
        light model, and a single thread wastes a core under a heavy one."""
        if workers <= 0 or self.onnx_path is None:
            yield
            return
        if self._sleeping_session is None:
            threads = self.session.get_session_options().intra_op_num_threads
            self._sleeping_session = make_session(self.onnx_path, threads, spinning=False)
        session, self.session = self.session, self._sleeping_session
        try:
            yield
        finally:
            self.session = session

    @torch.inference_mode()
    def logits(self, arrays: np.ndarray) -> torch.Tensor:
        x = self.preprocess.to_tensor(arrays).numpy()
        return torch.from_numpy(self.session.run(None, {self._input: x})[0]).float()

    def logits_and_features(self, arrays: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        x = self.preprocess.to_tensor(arrays).numpy()
        outputs = self.session.run(None, {self._input: x})
        if len(outputs) < 2:
            raise DetectorError(f"{self.name}: this ONNX file has no features output; export it again")
        return torch.from_numpy(outputs[0]).float(), outputs[1]
