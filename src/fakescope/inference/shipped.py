"""The ONNX model shipped beside a detector's safetensors weights, so the first scan exports nothing.

``weights/<name>.onnx`` is the export of ``weights/<name>.safetensors`` with the same fakescope metadata. The
safetensors header records the ONNX file's name and SHA-256 under :data:`SHIPPED_KEY`; a scan checks it before
using the file, so an ONNX model left over from older weights is never scored with (it is skipped with a warning,
and the checkpoint is exported to the cache as any other). :func:`fakescope.inference.onnx.ship_onnx` (``fakescope export --ship``) makes
both files agree again after the weights change.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
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


def read_shipped_onnx(checkpoint: str | Path) -> tuple[Path, bytes, str] | None:
    """(path, bytes, SHA-256) of the ONNX model shipped beside ``checkpoint`` when its checksum is the one the
    checkpoint records; None (with a warning if a recorded file is missing or differs) otherwise."""
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
    return path, data, record["sha256"]


def write_header_entry(path: Path, key: str, value: str) -> None:
    """Set one string entry of a safetensors file's header, every tensor and other entry kept (atomic replace)."""
    from safetensors.numpy import load_file, save_file

    header = {**read_header(path), key: value}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(load_file(str(path)), str(tmp), metadata=header)
    shutil.copymode(path, tmp)
    tmp.replace(path)
