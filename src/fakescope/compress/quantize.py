"""Quantization: PyTorch dynamic int8 for Linear layers, ONNX Runtime static int8 for everything else.

PyTorch's dynamic quantization covers ``nn.Linear`` only; the format and loading of such checkpoints is the int8
detector kind (:mod:`fakescope.inference.kinds.int8`). Convolutions go through ONNX Runtime's static quantization,
calibrated on images from the data.
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.checkpoint import CheckpointMeta
from fakescope.compress.report import (
    CompressionResult,
    measure,
    prepare_eval_set,
    split_data,
    subsample,
)
from fakescope.inference.detector import Detector, shipped_weights
from fakescope.inference.kinds.int8 import (
    DynamicQuantDetector,
    quantize_linear_dynamic,
    quantized_linears,
    save_dynamic,
)

log = logging.getLogger(__name__)


def _source_path(model: str, detector: Detector) -> Path | None:
    return Path(model) if Path(model).is_file() else shipped_weights(detector.name)


def quantize_checkpoint(model: str, out: str | Path, data: Sequence[str | Path] = (),
                        eval_samples: int | None = 400, seed: int = 0) -> CompressionResult:
    """``fakescope quantize --dynamic``: int8 Linear layers, saved as a ``dynamic-int8`` checkpoint; figures
    before/after on the validation split of ``data`` (sizes only without data)."""
    before = Detector.load(model, device="cpu")
    qmodel = quantize_linear_dynamic(before.model)
    if not quantized_linears(qmodel):
        raise ValueError(f"{model}: no Linear layer to quantize")
    path = save_dynamic(out, before.model, qmodel, before.meta)
    after = DynamicQuantDetector.from_checkpoint(path, str(path))
    return CompressionResult(path, _compare([("before", before, _source_path(model, before)),
                                             ("dynamic int8 (Linear)", after, path)], data, eval_samples, seed))


def _compare(variants: list[tuple[str, Detector, Path | None]], data: Sequence[str | Path],
             eval_samples: int | None, seed: int) -> list[dict[str, Any]]:
    from fakescope.compress.report import file_sizes

    if not data:
        return [{"variant": v, **dict(zip(("size_mb", "gzip_mb"), file_sizes(p)))} for v, _, p in variants if p]
    _, val = split_data(data, seed=seed)
    evalset = prepare_eval_set(subsample(val, eval_samples, seed), variants[0][1].preprocess)
    return [measure(v, det, evalset, p) for v, det, p in variants]


def quantize_onnx_static(fp32_path: str | Path, out: str | Path, calibration: np.ndarray, meta: CheckpointMeta,
                         per_channel: bool = True, batch_size: int = 8) -> Path:
    """Static int8 (QDQ: uint8 activations, int8 per-channel weights) calibrated on ``calibration`` (uint8
    arrays from the detector's ``prepare``); the fakescope metadata is carried over."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from fakescope.inference.onnx import save_proto, set_onnx_meta

    class Reader(CalibrationDataReader):
        def __init__(self, x: np.ndarray):
            self.batches = iter([{"input": x[i:i + batch_size]} for i in range(0, len(x), batch_size)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    reader = Reader(meta.preprocess.normalize(calibration))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "pre.onnx"
        try:  # shape inference + graph optimisation first, as ONNX Runtime recommends
            quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)
        except Exception as err:  # noqa: BLE001  optional step: quantize the plain export instead
            log.warning("ONNX pre-processing skipped (%s)", err)
            source = Path(fp32_path)
        quantize_static(str(source), str(Path(tmp) / "q.onnx"), reader, quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        proto = onnx.load(str(Path(tmp) / "q.onnx"))
    info = {**meta.info, "onnx": {**meta.info.get("onnx", {}), "quantization": "static-int8-qdq",
                                  "calibration_images": len(calibration)}}
    set_onnx_meta(proto, replace(meta, info=info))
    return save_proto(proto, Path(out))


def export_int8(model: str, calibration_data: Sequence[str | Path], n_calibration: int = 64,
                out: str | Path | None = None, eval_samples: int | None = 400, seed: int = 0) -> CompressionResult:
    """ONNX fp32 export (cached) then static int8, calibrated on ``n_calibration`` training-split images of
    ``calibration_data``; reports PyTorch, ONNX fp32 and ONNX int8 on the validation split."""
    from fakescope.inference.kinds.onnx import OnnxDetector
    from fakescope.inference.onnx import default_onnx_path, onnx_twin

    if not calibration_data:
        raise ValueError("int8 quantization needs --calibration-data DIR (labelled images to calibrate on)")
    torch_det = Detector.load(model, device="cpu")
    fp32 = onnx_twin(torch_det)
    train, val = split_data(calibration_data, seed=seed)
    calibration = prepare_eval_set(subsample(train, n_calibration, seed), torch_det.preprocess).arrays
    out = Path(out) if out else default_onnx_path(torch_det, "int8")
    quantize_onnx_static(fp32.onnx_path, out, calibration, torch_det.meta)
    int8 = OnnxDetector.from_onnx(out, name=torch_det.name)
    evalset = prepare_eval_set(subsample(val, eval_samples, seed), torch_det.preprocess)
    rows = [measure("pytorch fp32", torch_det, evalset, _source_path(model, torch_det)),
            measure("onnx fp32", fp32, evalset, fp32.onnx_path),
            measure("onnx int8 (static)", int8, evalset, out)]
    return CompressionResult(out, rows)
