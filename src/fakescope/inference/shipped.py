"""The ONNX model shipped beside a detector's safetensors weights, so the first scan exports nothing.

``weights/<name>.onnx`` is the export of ``weights/<name>.safetensors`` with the same fakescope metadata. The
safetensors header records the ONNX file's name and SHA-256 under :data:`SHIPPED_KEY`; a scan checks it before
using the file, so an ONNX model left over from older weights is never scored with (it is skipped with a warning,
and the checkpoint is exported to the cache as any other). :func:`ship_onnx` (``fakescope export --ship``) makes
both files agree again after the weights change.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fakescope.checkpoint import read_header

log = logging.getLogger(__name__)

#: safetensors header entry: JSON ``{"file": "<name>.onnx", "sha256": "<hex>"}``.
SHIPPED_KEY = "fakescope.onnx"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shipped_record(checkpoint: str | Path) -> dict[str, str] | None:
    """The ONNX file name and checksum a checkpoint's header records, or None."""
    entry = read_header(checkpoint).get(SHIPPED_KEY)
    return json.loads(entry) if entry else None


def read_shipped_onnx(checkpoint: str | Path) -> tuple[Path, bytes] | None:
    """(path, bytes) of the ONNX model shipped beside ``checkpoint`` when its checksum is the one the checkpoint
    records; None (with a warning if a recorded file is missing or differs) otherwise."""
    record = shipped_record(checkpoint)
    if record is None:
        return None
    path = Path(checkpoint).with_name(record["file"])
    if not path.is_file():
        log.warning("%s: the ONNX model its header records (%s) is missing; exporting instead", checkpoint, path.name)
        return None
    data = path.read_bytes()
    if sha256_hex(data) != record["sha256"]:
        log.warning("%s: checksum differs from the one recorded in %s (not the export of these weights); "
                    "exporting instead. Re-run 'fakescope export --model %s --ship'", path, Path(checkpoint).name,
                    Path(checkpoint).stem)
        return None
    return path, data


@dataclass
class ShippedOnnx:
    path: Path
    sha256: str
    #: Largest fake-probability difference to PyTorch on the verification inputs.
    max_difference: float


def ship_onnx(model: str = "default") -> ShippedOnnx:
    """Export a shipped detector's weights to ``weights/<name>.onnx`` beside them, verify it against PyTorch and
    record its checksum in the safetensors header (tensors unchanged). Needs PyTorch."""
    from fakescope.inference.detector import Detector, DetectorError, shipped_weights
    from fakescope.inference.onnx import FP32_TOLERANCE, export_onnx, max_probability_difference

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


def write_header_entry(path: Path, key: str, value: str) -> None:
    """Set one string entry of a safetensors file's header, every tensor and other entry kept (atomic replace)."""
    from safetensors.numpy import load_file, save_file

    header = {**read_header(path), key: value}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(load_file(str(path)), str(tmp), metadata=header)
    shutil.copymode(path, tmp)
    tmp.replace(path)
