"""The int8 kind: a model whose Linear layers run in int8 (PyTorch dynamic quantization, CPU only).

PyTorch's dynamic quantization covers ``nn.Linear`` only (the ELA-CNN's 7.4M-parameter dense head, a timm
classifier). Such a model is saved without pickle: a safetensors checkpoint of kind ``dynamic-int8`` holds each
quantized Linear's int8 weight with its scale and zero point, and the float tensors of every other layer. Loading
rebuilds the float model from the registry, quantizes the same layers and puts the stored int8 weights back, so
the loaded model is bit-identical to the one that was saved (``fakescope quantize --dynamic`` writes it).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.ao.nn.quantized import dynamic as nnqd
from torch.ao.quantization import quantize_dynamic

from fakescope.checkpoint import CheckpointError, CheckpointMeta, build_model, read_meta, unwrap
from fakescope.inference.detector import Detector
from fakescope.inference.kinds import register_kind

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
    model = build_model(meta)
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


@register_kind(DYNAMIC_KIND)
class DynamicQuantDetector(Detector):
    """A detector whose Linear layers run in int8 (PyTorch dynamic quantization, CPU)."""

    @classmethod
    def from_checkpoint(cls, path: str | Path, name: str, device: str = "cpu") -> DynamicQuantDetector:
        model, meta = load_dynamic(path)
        return cls(model, meta, name, device="cpu")  # quantized kernels exist for CPU only
