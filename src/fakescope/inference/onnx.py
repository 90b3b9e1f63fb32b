"""ONNX Runtime backend: a checkpoint is exported to ONNX once (into fakescope's cache) and scored by the ONNX
detector kind (:mod:`fakescope.inference.kinds.onnx`).

The exporter is ``torch.onnx.export(dynamo=True)`` (the torch.export-based exporter, the default since torch
2.9; the TorchScript one is deprecated). It handles the ELA-CNN and the timm ResNet / EfficientNet families with
a dynamic batch axis; if it fails on some other registered architecture, the TorchScript exporter is tried once.

The fakescope checkpoint metadata (preprocessing, temperature, threshold, ...) is stored in the ONNX model's
``metadata_props`` under ``fakescope``, so an ``.onnx`` file alone can be scanned with.

Choosing the backend imports no PyTorch when the ONNX file is at hand: ``OnnxDetector.ready`` finds it from the
checkpoint file alone (shipped beside the weights, see :mod:`fakescope.inference.shipped`, or exported to the cache
before). Only exporting imports torch.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fakescope.checkpoint import CheckpointMeta
from fakescope.data.cache import file_digest
from fakescope.inference.detector import (
    BackendUnavailable,
    Detector,
    DetectorError,
    logits_and_stage_statistics,
    shipped_weights,
)
from fakescope.inference.kinds.onnx import META_KEY, OnnxDetector, cached_onnx_path, make_session, onnx_available
from fakescope.inference.shipped import SHIPPED_KEY, sha256_hex, write_header_entry

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

OPSET = 18
#: Largest difference in fake probability accepted between PyTorch and the fp32 ONNX model.
FP32_TOLERANCE = 1e-4


def weights_digest(model: nn.Module, meta: CheckpointMeta) -> str:
    """A short hash of the weights and of their metadata (preprocessing, calibration, feature description), naming
    the cached export (new weights or metadata, new file)."""
    h = hashlib.sha256(meta.to_json().encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def default_onnx_path(detector: Detector, quantize: str | None = None) -> Path:
    """Where the export of ``detector`` is cached: named after its checkpoint file's hash when it was loaded from
    one (so the file is found again without building the model), else after its weights' hash."""
    checkpoint = getattr(detector, "checkpoint", None)
    digest = file_digest(checkpoint)[:16] if checkpoint else weights_digest(detector.model, detector.meta)
    return cached_onnx_path(detector.name or detector.meta.architecture, digest, quantize)


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for lg, _ in saved:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


def _export_proto(model: nn.Module, example: torch.Tensor, outputs: list[str]) -> Any:
    """The model as an ``onnx.ModelProto`` with outputs named ``outputs`` and a dynamic batch axis named ``batch``."""
    import onnx
    import torch

    names = {"input_names": ["input"], "output_names": outputs, "opset_version": OPSET}
    try:
        with _quiet("onnxscript", "onnx_ir"):  # their INFO lines narrate every optimisation pass
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False, external_data=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), **names)
        return program.model_proto
    except Exception as err:  # noqa: BLE001  any exporter failure: try the other exporter once
        log.warning("torch.export-based ONNX export failed (%s: %s); trying the TorchScript exporter",
                    type(err).__name__, str(err).splitlines()[0] if str(err) else "")
    buf = io.BytesIO()
    torch.onnx.export(model, (example,), buf, dynamo=False,
                      dynamic_axes={name: {0: "batch"} for name in ["input", *outputs]}, **names)
    return onnx.load_from_string(buf.getvalue())


def set_onnx_meta(proto: Any, meta: CheckpointMeta) -> None:
    """Store the fakescope metadata in the model's ``metadata_props`` (replacing an older entry)."""
    kept = [p for p in proto.metadata_props if p.key != META_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()


def save_proto(proto: Any, path: Path) -> Path:
    """Write atomically, so a concurrent scan never opens a half-written model."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


def with_features(model: nn.Module) -> nn.Module:
    """A timm model answering (logits, stage statistics): the ONNX graph of a checkpoint that describes its training
    features has both outputs, so familiarity needs no second pass. (The wrapper class is defined here, on use, so
    that importing this module needs no PyTorch.)"""
    from torch import nn

    class WithFeatures(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.model = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return logits_and_stage_statistics(self.model, x)

    return WithFeatures(model).eval()


def export_onnx(model: nn.Module, meta: CheckpointMeta, path: str | Path) -> Path:
    """Export ``model`` (fed as ``meta.preprocess`` says) to ``path`` with ``meta`` embedded; with a feature
    description in ``meta`` the graph also outputs the stage statistics familiarity reads."""
    import torch

    pre = meta.preprocess
    model = model.to("cpu").float().eval()
    outputs = ["logits"]
    if meta.info.get("familiarity"):
        model, outputs = with_features(model), ["logits", "features"]
    example = torch.zeros(2, pre.channels, pre.size, pre.size)  # batch 2: a batch of 1 would be specialised
    proto = _export_proto(model, example, outputs)
    set_onnx_meta(proto, replace(meta, info={**meta.info, "onnx": {"opset": OPSET}}))
    return save_proto(proto, Path(path))


def onnx_twin(detector: Detector, path: str | Path | None = None) -> OnnxDetector:
    """The ONNX twin of a PyTorch detector, exported (and verified) on first use, then read from the cache."""
    path = Path(path) if path else default_onnx_path(detector)
    if not path.is_file():
        export_onnx(detector.model, detector.meta, path)
        diff = max_probability_difference(detector, path)
        log.info("exported %s to %s (largest fake-probability difference to PyTorch: %.2e)",
                 detector.name, path, diff)
        if diff > FP32_TOLERANCE:
            path.unlink(missing_ok=True)
            raise DetectorError(f"{detector.name}: ONNX export differs from PyTorch by {diff:.2e} "
                                f"(> {FP32_TOLERANCE:g})")
    session = make_session(path)
    return OnnxDetector(session, detector.meta, detector.name, detector.model, path, detector.checkpoint)


def verification_arrays(meta: CheckpointMeta, n: int = 6, seed: int = 0) -> np.ndarray:
    """Random uint8 inputs (smooth plus noise, like ELA and photo arrays) to compare two backends on."""
    rng = np.random.default_rng(seed)
    s, c = meta.preprocess.size, meta.preprocess.channels
    base = rng.integers(0, 256, (n, 1, 1, c)) * np.linspace(0, 1, s)[None, :, None, None]
    return np.clip(base + rng.normal(0, 24, (n, s, s, c)), 0, 255).astype(np.uint8)


def max_probability_difference(detector: Detector, onnx_path: str | Path, arrays: np.ndarray | None = None) -> float:
    """Largest |p_torch - p_onnx| over ``arrays`` (random inputs by default), run as one batch of 6 and one of 1
    so that the dynamic batch axis is exercised."""
    arrays = verification_arrays(detector.meta) if arrays is None else arrays
    onnx_det = OnnxDetector(make_session(onnx_path), detector.meta, detector.name)
    diffs = [np.abs(detector.predict_arrays(a) - onnx_det.predict_arrays(a)).max() for a in (arrays, arrays[:1])]
    return float(max(diffs))


def onnx_backend(detector: Detector) -> OnnxDetector:
    """The ONNX Runtime twin of a single-model PyTorch detector (exported on first use); ``BackendUnavailable``
    saying why when it cannot be used."""
    if not onnx_available():
        raise BackendUnavailable("onnxruntime is not installed; pip install onnxruntime")
    if detector.device.type != "cpu":
        raise BackendUnavailable(f"PyTorch runs on {detector.device.type}")
    try:
        return onnx_twin(detector)
    except Exception as err:  # noqa: BLE001  export can fail in many ways; auto falls back on any of them
        first = str(err).splitlines()[0] if str(err) else ""
        raise BackendUnavailable(f"ONNX export failed: {type(err).__name__}: {first}") from None


def export_detector(model: str = "default", out: str | Path | None = None) -> tuple[Path, float]:
    """``fakescope export --format onnx``: export ``model`` (name or checkpoint) to ``out`` (default: the cache
    path the onnx backend reads), verify it, and return (path, largest fake-probability difference)."""
    detector = Detector.load(model, device="cpu")
    path = Path(out) if out else default_onnx_path(detector)
    export_onnx(detector.model, detector.meta, path)
    diff = max_probability_difference(detector, path)
    if diff > FP32_TOLERANCE:
        raise DetectorError(f"{detector.name}: ONNX export differs from PyTorch by {diff:.2e} (> {FP32_TOLERANCE:g})")
    return path, diff


@dataclass
class ShippedOnnx:
    path: Path
    sha256: str
    #: Largest fake-probability difference to PyTorch on the verification inputs.
    max_difference: float


def ship_onnx(model: str = "default") -> ShippedOnnx:
    """Export a shipped detector's weights to ``weights/<name>.onnx`` beside them, verify it against PyTorch and
    record its checksum in the safetensors header (tensors unchanged). Needs PyTorch."""
    detector = Detector.load(model, device="cpu", backend="torch")
    checkpoint = shipped_weights(detector.name)
    if checkpoint is None:
        raise DetectorError(f"{model}: not a detector with shipped weights; export it with 'fakescope export'")
    out = checkpoint.with_suffix(".onnx")
    export_onnx(detector.model, detector.meta, out)
    diff = max_probability_difference(detector, out)
    if diff > FP32_TOLERANCE:
        out.unlink()
        raise DetectorError(f"{detector.name}: ONNX export differs from PyTorch by {diff:.2e} (> {FP32_TOLERANCE:g})")
    digest = sha256_hex(out.read_bytes())
    write_header_entry(checkpoint, SHIPPED_KEY, json.dumps({"file": out.name, "sha256": digest}))
    return ShippedOnnx(out, digest, diff)
