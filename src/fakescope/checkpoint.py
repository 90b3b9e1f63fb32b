"""Checkpoints: one safetensors file whose header carries the JSON metadata needed to rebuild and feed the model.

No pickle anywhere: loading a checkpoint from an untrusted source cannot run code. Reading the metadata
(:func:`read_meta`, :func:`read_header`) needs no PyTorch; building the model does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open

from fakescope._version import __version__
from fakescope.data.preprocess import Preprocess

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT_VERSION = 1
CLASS_NAMES = ["real", "fake"]


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not a fakescope checkpoint."""


@dataclass
class CheckpointMeta:
    """Everything a checkpoint needs besides its tensors."""

    architecture: str
    preprocess: Preprocess
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    temperature: float = 1.0
    threshold: float = 0.5
    info: dict[str, Any] = field(default_factory=dict)  # data, metrics, training recipe: for people, not code

    def to_json(self) -> str:
        return json.dumps({
            "format_version": FORMAT_VERSION,
            "fakescope_version": __version__,
            "architecture": self.architecture,
            "preprocess": self.preprocess.to_dict(),
            "model_kwargs": self.model_kwargs,
            "class_names": self.class_names,
            "temperature": self.temperature,
            "threshold": self.threshold,
            "info": self.info,
        })

    @classmethod
    def from_json(cls, text: str) -> "CheckpointMeta":
        d = json.loads(text)
        if d.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"unsupported checkpoint format_version {d.get('format_version')!r}")
        return cls(
            architecture=d["architecture"],
            preprocess=Preprocess.from_dict(d["preprocess"]),
            model_kwargs=d.get("model_kwargs", {}),
            class_names=d.get("class_names", list(CLASS_NAMES)),
            temperature=float(d.get("temperature", 1.0)),
            threshold=float(d.get("threshold", 0.5)),
            info=d.get("info", {}),
        )


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / torch.compile / EMA wrappers."""
    from torch import nn

    for attr in ("module", "_orig_mod"):
        while hasattr(model, attr) and isinstance(getattr(model, attr), nn.Module):
            model = getattr(model, attr)
    return model


def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta, dtype: torch.dtype | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` (a ``.safetensors`` file).

    ``dtype=torch.float16`` halves the file for shipping; floating tensors are restored to float32 on load.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in unwrap(model).state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"fakescope": meta.to_json()})
    tmp.replace(path)
    return path


def read_header(path: str | Path) -> dict[str, str]:
    """The safetensors file's string metadata (its header), read without PyTorch."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            return f.metadata() or {}
    except Exception as err:  # safetensors raises several unrelated types for a bad file
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({err})") from None


def read_meta(path: str | Path) -> CheckpointMeta:
    header = read_header(path)
    if "fakescope" not in header:
        raise CheckpointError(f"{path}: safetensors file has no fakescope metadata")
    return CheckpointMeta.from_json(header["fakescope"])


def write_meta(path: str | Path, meta: CheckpointMeta) -> None:
    """Replace the checkpoint's fakescope metadata with ``meta``; the tensors and the header's other entries stay
    (a shipped ONNX model's checksum then no longer matches: re-run ``fakescope export --ship``). The file is
    replaced in one step, so an interrupted write keeps the old checkpoint."""
    from safetensors.torch import load_file, save_file

    path = Path(path)
    tensors, header = load_file(str(path)), read_header(path)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={**header, "fakescope": meta.to_json()})
    tmp.replace(path)


def build_model(meta: CheckpointMeta) -> nn.Module:
    """The untrained model a checkpoint's metadata describes: its registered architecture, input channels and
    size, and the factory arguments it was trained with. The one place a model is rebuilt from metadata."""
    from fakescope.registry import get_spec

    spec = get_spec(meta.architecture)
    return spec.factory(in_chans=meta.preprocess.channels, pretrained=False, size=meta.preprocess.size,
                        **{**spec.kwargs, **meta.model_kwargs})


def float_state(tensors: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors under ``prefix`` (prefix removed), floating ones as float32 (a shipped file may hold float16)."""
    return {k[len(prefix):]: (v.float() if v.is_floating_point() else v)
            for k, v in tensors.items() if k.startswith(prefix)}


def load_checkpoint(path: str | Path) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model described by the checkpoint's metadata and load its weights (float32, eval mode)."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    model = build_model(meta)
    model.load_state_dict(float_state(load_file(str(path))), strict=True)
    return model.eval(), meta
