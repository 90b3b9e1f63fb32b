"""Global magnitude pruning: ``torch.nn.utils.prune`` L1-unstructured over every conv and linear weight, made
permanent with ``prune.remove``, optionally fine-tuned (with the masks still applied) before that."""
from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader

from fakescope.checkpoint import save_checkpoint
from fakescope.compress.report import (
    CompressionResult,
    measure,
    prepare_eval_set,
    split_data,
    subsample,
)
from fakescope.config import OptimConfig
from fakescope.data.cache import default_cache_dir
from fakescope.data.dataset import ImageDataset, collate_skip
from fakescope.data.discovery import Sample
from fakescope.data.preprocess import Preprocess
from fakescope.engine.loops import (
    EpochOptions,
    Track,
    _no_track,
    fit_temperature,
    predict_loader,
    train_one_epoch,
)
from fakescope.engine.optim import build_optimizer
from fakescope.inference.detector import Detector
from fakescope.inference.kinds.single import SingleDetector

log = logging.getLogger(__name__)

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def is_output_layer(module: nn.Module) -> bool:
    """The 2-logit classifier. Never pruned: its weights are few and small (fakescope starts the head near zero), so a
    global magnitude ranking would zero it first and leave a model that answers the same for every image (as it did
    once: docs/benchmarks/compression.md)."""
    return isinstance(module, nn.Linear) and module.out_features == 2


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every conv and linear weight except the output layer's."""
    return [(m, "weight") for m in model.modules()
            if isinstance(m, PRUNABLE) and getattr(m, "weight", None) is not None and not is_output_layer(m)]


def global_l1_prune(model: nn.Module, amount: float) -> None:
    """Zero the ``amount`` fraction of conv/linear weights with the smallest magnitude, ranked across layers.

    The masks stay attached (as forward pre-hooks) until :func:`make_permanent`, so fine-tuning cannot regrow them.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    prune.global_unstructured(prunable(model), pruning_method=prune.L1Unstructured, amount=amount)


def make_permanent(model: nn.Module) -> None:
    """Fold each mask into its weight and drop the pruning re-parametrisation (a plain state_dict again)."""
    for module, name in prunable(model):
        if prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
            prune.remove(module, name)


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of conv/linear weights that are exactly zero."""
    weights = [getattr(m, n) for m, n in prunable(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(total, 1)


def finetune(model: nn.Module, pre: Preprocess, train: list[Sample], val: list[Sample], epochs: int,
             lr: float = 1e-4, batch_size: int = 32, workers: int = 0, seed: int = 0, track: Track = _no_track) -> float:
    """Train ``model`` a few epochs on ``train`` (no augmentation); returns the temperature refitted on ``val``."""
    cache = default_cache_dir()
    train_dl = DataLoader(ImageDataset(train, pre, None, cache), batch_size=batch_size, shuffle=True, num_workers=workers,
                          collate_fn=collate_skip, generator=torch.Generator().manual_seed(seed))
    optimizer = build_optimizer(OptimConfig(name="adam", lr=lr), [p for p in model.parameters() if p.requires_grad])
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        row = train_one_epoch(model, train_dl, torch.device("cpu"),
                              EpochOptions(optimizer, loss_fn, pre.to_tensor, track=track), len(train_dl))
        log.info("fine-tune epoch %d: loss %.4f accuracy %.3f", epoch + 1, row["loss"], row["accuracy"])
    val_dl = DataLoader(ImageDataset(val, pre, None, cache), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_skip)
    logits, labels = predict_loader(model, val_dl, torch.device("cpu"), pre.to_tensor)
    return fit_temperature(logits, labels) if len(labels) else 1.0


def prune_checkpoint(model: str, amount: float, out: str | Path, *, data: Sequence[str | Path] = (),
                     finetune_data: Sequence[str | Path] = (), epochs: int = 1, lr: float = 1e-4,
                     eval_samples: int | None = 400, seed: int = 0, track: Track = _no_track) -> CompressionResult:
    """Prune ``model`` (name or checkpoint), optionally fine-tune on ``finetune_data``'s training split, save a
    normal checkpoint at ``out``, and measure before/after on the validation split of ``data`` (default: the
    fine-tuning folders). Without any data only the sizes are reported."""
    before = Detector.load(model, device="cpu")
    pruned = copy.deepcopy(before.model)
    global_l1_prune(pruned, amount)
    temperature = before.meta.temperature
    if finetune_data and epochs > 0:
        train, val = split_data(finetune_data, seed=seed)
        temperature = finetune(pruned, before.preprocess, train, val, epochs, lr, seed=seed, track=track)
    make_permanent(pruned)
    pruned.eval()
    sparsity = weight_sparsity(pruned)
    info = {**before.meta.info, "compression": {"method": "prune-global-l1-unstructured", "amount": amount,
                                                "sparsity": sparsity, "source": model,
                                                "finetune": {"data": [str(d) for d in finetune_data], "epochs": epochs}}}
    meta = replace(before.meta, temperature=temperature, info=info)
    path = save_checkpoint(out, pruned, meta)
    after = SingleDetector(pruned, meta, str(path), device="cpu")
    return CompressionResult(path, _rows(before, after, model, path, data or finetune_data, eval_samples, seed, sparsity))


def _rows(before: Detector, after: Detector, source: str, path: Path, data: Sequence[str | Path],
          eval_samples: int | None, seed: int, sparsity: float) -> list[dict]:
    from fakescope.inference.detector import shipped_weights

    src_path = Path(source) if Path(source).is_file() else shipped_weights(before.name)
    if not data:
        from fakescope.compress.report import file_sizes

        return [{"variant": "before", **dict(zip(("size_mb", "gzip_mb"), file_sizes(src_path)))},
                {"variant": "after", **dict(zip(("size_mb", "gzip_mb"), file_sizes(path))), "sparsity": sparsity}]
    _, val = split_data(data, seed=seed)
    evalset = prepare_eval_set(subsample(val, eval_samples, seed), before.preprocess)
    return [measure("before", before, evalset, src_path, sparsity=weight_sparsity(before.model)),
            measure(f"pruned {sparsity:.0%}", after, evalset, path, sparsity=sparsity)]
