"""Quantization: PyTorch dynamic int8 for Linear layers, ONNX Runtime static int8 for everything else.

PyTorch's dynamic quantization covers ``nn.Linear`` only (the ELA-CNN's 7.4M-parameter dense head, a timm
classifier); convolutions go through ONNX Runtime's static quantization, calibrated on images from the data.

A dynamically quantized model is saved without pickle: a safetensors checkpoint of kind ``dynamic-int8`` holds
each quantized Linear's int8 weight with its scale and zero point, and the float tensors of every other layer.
Loading rebuilds the float model from the registry, quantizes the same layers and puts the stored int8 weights
back, so the loaded model is bit-identical to the one that was saved.
"""
from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.ao.nn.quantized import dynamic as nnqd
from torch.ao.quantization import quantize_dynamic

from fakescope.compress.report import (
    CompressionResult,
    measure,
    prepare_eval_set,
    split_data,
    subsample,
)
from fakescope.engine.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    read_meta,
    unwrap,
)
from fakescope.inference.detector import DETECTOR_KINDS, Detector, shipped_weights
from fakescope.registry import get_spec

log = logging.getLogger(__name__)

DYNAMIC_KIND = "dynamic-int8"
_INT8, _SCALE, _ZERO = ".weight.int8", ".weight.scale", ".weight.zero_point"


def quantize_linear_dynamic(model: nn.Module, layers: Sequence[str] | None = None) -> nn.Module:
    """A copy of ``model`` whose Linear layers (or the named ``layers``) compute in int8 with dynamic activation
    scales; CPU only."""
    spec: Any = set(layers) if layers is not None else {nn.Linear}
    return quantize_dynamic(copy.deepcopy(model).cpu().eval(), spec, dtype=torch.qint8)


def quantized_linears(qmodel: nn.Module) -> dict[str, nnqd.Linear]:
    return {name: m for name, m in qmodel.named_modules() if isinstance(m, nnqd.Linear)}


def save_dynamic(path: str | Path, float_model: nn.Module, qmodel: nn.Module, meta: CheckpointMeta) -> Path:
    """Write ``qmodel`` (from :func:`quantize_linear_dynamic` of ``float_model``) as a ``dynamic-int8`` checkpoint."""
    layers = quantized_linears(qmodel)
    drop = {f"{name}.weight" for name in layers}
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(float_model).state_dict().items() if k not in drop}
    for name, module in layers.items():
        weight, bias = module._weight_bias()
        if weight.qscheme() != torch.per_tensor_affine:
            raise ValueError(f"{name}: only per-tensor quantized weights are stored, got {weight.qscheme()}")
        state[name + _INT8] = weight.int_repr().contiguous()
        state[name + _SCALE] = torch.tensor([weight.q_scale()], dtype=torch.float64)
        state[name + _ZERO] = torch.tensor([weight.q_zero_point()], dtype=torch.int64)
        if bias is not None:
            state[f"{name}.bias"] = bias.detach().contiguous()
    info = {**meta.info, "kind": DYNAMIC_KIND, "quantization": {"layers": sorted(layers), "dtype": "qint8"}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"fakescope": replace(meta, info=info).to_json()})
    return path


def load_dynamic(path: str | Path) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild a ``dynamic-int8`` checkpoint: float layers loaded, listed Linear layers set to the stored int8."""
    meta = read_meta(path)
    layers = meta.info.get("quantization", {}).get("layers")
    if meta.info.get("kind") != DYNAMIC_KIND or not layers:
        raise CheckpointError(f"{path}: not a {DYNAMIC_KIND} checkpoint")
    spec = get_spec(meta.architecture)
    model = spec.factory(in_chans=meta.preprocess.channels, pretrained=False, size=meta.preprocess.size,
                         **{**spec.kwargs, **meta.model_kwargs})
    state = load_file(str(path))
    floats = {k: v for k, v in state.items() if not k.endswith((_INT8, _SCALE, _ZERO))}
    missing, unexpected = model.load_state_dict(floats, strict=False)
    if set(missing) != {f"{n}.weight" for n in layers} or unexpected:
        raise CheckpointError(f"{path}: tensors do not match {meta.architecture} (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    qmodel = quantize_linear_dynamic(model, layers)
    for name in layers:
        module = qmodel.get_submodule(name)
        qweight = torch._make_per_tensor_quantized_tensor(state[name + _INT8], float(state[name + _SCALE]),
                                                          int(state[name + _ZERO]))
        module.set_weight_bias(qweight, module._weight_bias()[1])
    return qmodel.eval(), meta


class DynamicQuantDetector(Detector):
    """A detector whose Linear layers run in int8 (PyTorch dynamic quantization, CPU)."""

    @classmethod
    def from_checkpoint(cls, path: str | Path, name: str, device: str = "cpu") -> DynamicQuantDetector:
        model, meta = load_dynamic(path)
        return cls(model, meta, name, device="cpu")  # quantized kernels exist for CPU only


DETECTOR_KINDS[DYNAMIC_KIND] = DynamicQuantDetector


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

    reader = Reader(meta.preprocess.to_tensor(calibration).numpy())
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
    from fakescope.inference.onnx import OnnxDetector, default_onnx_path

    if not calibration_data:
        raise ValueError("int8 quantization needs --calibration-data DIR (labelled images to calibrate on)")
    torch_det = Detector.load(model, device="cpu")
    fp32 = OnnxDetector.from_detector(torch_det)
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
