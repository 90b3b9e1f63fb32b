"""The ONNX kind: an exported ``.onnx`` file scored through an ONNX Runtime ``InferenceSession``.

The fakescope checkpoint metadata (preprocessing, temperature, threshold, ...) is stored in the ONNX model's
``metadata_props`` under ``fakescope``, so an ``.onnx`` file alone can be scanned with. Exporting a checkpoint to
ONNX (and the ``--backend`` choice) is :mod:`fakescope.inference.onnx`.

Scoring imports no PyTorch: inputs are normalised in NumPy (:meth:`~fakescope.data.preprocess.Preprocess.normalize`)
and the PyTorch model, which only Grad-CAM needs, is built from the checkpoint on first use.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import platform
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fakescope.checkpoint import CheckpointError, CheckpointMeta, read_meta
from fakescope.data.cache import default_cache_dir, file_digest
from fakescope.inference.detector import Detector, DetectorError, available_cores, resolve_checkpoint
from fakescope.inference.kinds import SINGLE, register_kind
from fakescope.inference.shipped import read_shipped_onnx

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

META_KEY = "fakescope"


def onnx_available() -> bool:
    """Whether onnx and onnxruntime are installed (the ``onnx`` backend needs both)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def cached_onnx_path(name: str, digest: str, quantize: str | None = None) -> Path:
    """``<cache>/onnx/<name>-<digest>[-int8].onnx``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)
    suffix = f"-{quantize}" if quantize else ""
    return default_cache_dir() / "onnx" / f"{stem}-{digest}{suffix}.onnx"


def gpu_present() -> bool:
    """Whether PyTorch's ``auto`` device would be a GPU, judged without importing torch: an NVIDIA driver is
    loaded (Linux, Windows) or the machine is Apple silicon (MPS)."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def session_options(threads: int | None = None, spinning: bool = True) -> Any:
    """ONNX Runtime CPU session options: intra-op threads = available cores, full graph optimisation. ``spinning``:
    idle intra-op threads busy-wait for work (ONNX Runtime's default, lowest latency); off, they sleep, which
    leaves the cores to other busy processes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or available_cores()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def make_session(model: str | Path | bytes, threads: int | None = None, spinning: bool = True,
                 optimized: Path | None = None) -> Any:
    """An ONNX Runtime CPU session for a model file (or its bytes), with :func:`session_options`.

    ``optimized`` (:func:`optimized_model_path`): where ONNX Runtime's optimised graph of this model is kept. When
    the file is there the session loads it and optimises nothing (about half the session's start-up; the graph
    and so every score are the same); otherwise this session writes it there for the next one."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if optimized is not None and optimized.is_file():
        opts = session_options(threads, spinning)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(optimized), sess_options=opts, providers=providers)
        except Exception as err:  # noqa: BLE001  (ONNX Runtime raises its own unrelated types for a bad file)
            log.warning("%s: cannot load the optimised model (%s); optimising again", optimized, err)
    source = model if isinstance(model, bytes) else str(model)
    tmp = _writable_temp(optimized) if optimized is not None else None
    if tmp is not None:
        opts = session_options(threads, spinning)
        opts.optimized_model_filepath = str(tmp)
        opts.log_severity_level = 3  # its warning that the file suits this machine only: the file's name says so
        try:
            session = ort.InferenceSession(source, sess_options=opts, providers=providers)
        except Exception as err:  # noqa: BLE001  (writing failed: full disk, ...; a bad model fails again below)
            log.debug("%s: optimised model not written (%s)", optimized, err)
        else:
            with contextlib.suppress(OSError):  # a read-only or vanished cache costs the next start-up, nothing else
                tmp.replace(optimized)
            return session
    return ort.InferenceSession(source, sess_options=session_options(threads, spinning), providers=providers)


def _writable_temp(path: Path) -> Path | None:
    """A temporary name beside ``path`` (the optimised model is written there, then renamed into place, so a
    concurrent scan never reads half a file); None when the folder cannot be made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def optimized_model_path(sha256: str) -> Path:
    """Where the optimised graph of the ONNX model with this checksum is cached. ONNX Runtime's full optimisation
    lays convolutions out for this CPU's vector width, so the name also holds ONNX Runtime's version and a digest
    of the machine and its CPU flags: another machine sharing the cache optimises its own."""
    import onnxruntime as ort

    return default_cache_dir() / "onnx" / "optimized" / f"{sha256[:16]}-ort{ort.__version__}-{_cpu_tag()}.onnx"


def _cpu_tag() -> str:
    flags = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    return hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:8]


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
    """A :class:`Detector` whose model call runs in ONNX Runtime, fed by NumPy; preprocessing, temperature and
    threshold come from the same checkpoint metadata, so results are the PyTorch backend's to within 1e-4.

    ``model`` is the PyTorch module it was exported from (Grad-CAM needs it): given, or built from ``checkpoint``
    on first use (importing torch then), else None.
    """

    #: Where ONNX Runtime's optimised graph of the model is cached (:func:`optimized_model_path`), if anywhere.
    optimized: Path | None = None

    def __init__(self, session: Any, meta: CheckpointMeta, name: str, model: nn.Module | None = None,
                 onnx_path: str | Path | None = None, checkpoint: str | Path | None = None):
        self.session = session
        self._sleeping_session: Any = None  # built on the first scan with workers, then kept
        self.meta = meta
        self.name = name
        self._model = model
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.onnx_path = Path(onnx_path) if onnx_path else None
        self._input = session.get_inputs()[0].name

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device("cpu")

    @property
    def model(self) -> nn.Module | None:
        if self._model is None and self.checkpoint is not None and self.checkpoint.suffix == ".safetensors":
            from fakescope.checkpoint import load_checkpoint

            self._model = load_checkpoint(self.checkpoint)[0]
        return self._model

    @classmethod
    def from_onnx(cls, path: str | Path, name: str | None = None, threads: int | None = None,
                  checkpoint: str | Path | None = None, data: bytes | None = None,
                  sha256: str | None = None) -> OnnxDetector:
        """Load an exported ``.onnx`` file on its own (its metadata says how to feed it); ``data``: its bytes,
        already read (and checked); ``checkpoint``: the safetensors file it was exported from, if known;
        ``sha256``: the file's checksum, when known (then ONNX Runtime's optimised graph is cached under it)."""
        if not onnx_available():
            raise DetectorError("the onnx backend needs onnxruntime: pip install onnx onnxruntime onnxscript")
        if data is None and not Path(path).is_file():
            raise DetectorError(f"{path}: ONNX file does not exist")
        optimized = optimized_model_path(sha256) if sha256 else None
        session = make_session(path if data is None else data, threads, optimized=optimized)
        detector = cls(session, read_onnx_meta(session, path), name or str(path), onnx_path=path,
                       checkpoint=checkpoint)
        detector.optimized = optimized
        return detector

    @classmethod
    def ready(cls, name_or_path: str, device: str = "auto") -> OnnxDetector | None:
        """The ONNX detector of an ``.onnx`` file, or of a checkpoint (shipped name or path) whose ONNX file is at
        hand: shipped beside it (checksum checked) or exported to the cache before. Built without PyTorch; the PyTorch
        model is loaded only if something asks for it (Grad-CAM). None when there is no such file, when the checkpoint
        is not a single model, or when ``device`` asks for (``auto``: the machine has) a GPU, which PyTorch serves."""
        if str(name_or_path).endswith(".onnx"):
            return cls.from_onnx(name_or_path)
        if device not in ("auto", "cpu") or (device == "auto" and gpu_present()) or not onnx_available():
            return None
        found = resolve_checkpoint(name_or_path)
        if found is None:
            return None
        path, name = found
        try:
            shipped = read_shipped_onnx(path)
        except CheckpointError:
            return None  # the PyTorch loader reports it
        if shipped is not None:  # its metadata is the checkpoint's: the kind is read from it, not parsed twice
            detector = cls.from_onnx(shipped[0], name, checkpoint=path, data=shipped[1], sha256=shipped[2])
            return detector if detector.meta.info.get("kind", SINGLE) == SINGLE else None
        try:
            if read_meta(path).info.get("kind", SINGLE) != SINGLE:
                return None
        except (CheckpointError, KeyError, ValueError):
            return None  # the PyTorch loader reports it
        cached = cached_onnx_path(name, file_digest(path)[:16])
        return cls.from_onnx(cached, name, checkpoint=path) if cached.is_file() else None

    @classmethod
    def from_checkpoint(cls, path: str | Path, name: str, device: str = "cpu") -> OnnxDetector:
        return cls.from_onnx(path, name)

    def onnx_detector(self) -> OnnxDetector:
        return self

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
            self._sleeping_session = make_session(self.onnx_path, threads, spinning=False, optimized=self.optimized)
        session, self.session = self.session, self._sleeping_session
        try:
            yield
        finally:
            self.session = session

    def logits(self, arrays: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 (N, 2) logits (a NumPy array: no PyTorch on this path)."""
        return self._run(arrays)[0]

    def logits_and_features(self, arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = self._run(arrays)
        if len(outputs) < 2:
            raise DetectorError(f"{self.name}: this ONNX file has no features output; export it again")
        return outputs[0], outputs[1]

    def _run(self, arrays: np.ndarray) -> list[np.ndarray]:
        x = self.preprocess.normalize(arrays)
        return [np.asarray(out, dtype=np.float32) for out in self.session.run(None, {self._input: x})]
