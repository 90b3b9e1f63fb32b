"""What ``fit`` asks of a way of training: the single-process behaviour, which the parallel strategies override."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from fakescope.config import TrainConfig
from fakescope.distributed import DistInfo, all_gather_objects
from fakescope.engine.loops import EpochOptions, Track, _no_track, predict_loader, train_one_epoch

#: Training-loop features a strategy handles; ``fit`` refuses the others with a clear message.
#: ``mask_loss`` needs the whole model on every rank (the training-only head reads a backbone layer).
ALL_FEATURES = frozenset({"ema", "amp", "resume", "grad_clip", "mask_loss", "source_adversary"})


class Strategy:
    """One process, one whole model: exactly the behaviour of ``fit`` without a strategy.

    ``model`` stays the plain model (torchvision's ``model_without_ddp``); ``train_module`` is what trains.
    """

    name = "none"
    #: Each rank trains on its own share of every epoch (its share of the weighted draw with ``data.balance``
    #: sampler or source, else of a ``DistributedSampler`` shuffle; the global batch split across ranks).
    data_parallel = False
    supports: frozenset[str] = ALL_FEATURES

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device, info: DistInfo):
        self.model, self.cfg, self.device, self.info = model, cfg, device, info
        self.train_module: nn.Module = model
        self._val_shard: DataLoader | None = None

    def parameters(self) -> Iterable[nn.Parameter]:
        """The parameters this rank's optimizer updates."""
        return self.train_module.parameters()

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Hook into the optimizer (local SGD averages after its steps)."""

    def train_one_epoch(self, loader: Iterable, opts: EpochOptions, total: int = 0) -> dict[str, float]:
        return train_one_epoch(self.train_module, loader, self.device, opts, total)

    def eval_model(self) -> nn.Module:
        """The whole plain model with the current weights, on every rank (collective for model parallelism)."""
        return self.model

    def predict(self, model: nn.Module, loader: DataLoader, to_input: Callable[[torch.Tensor], torch.Tensor],
                amp: bool = False, track: Track = _no_track) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, labels) over the whole of ``loader``'s dataset: each rank scores every N-th item, and the
        parts are all-gathered, so every rank gets the same full-validation-set metrics (and the same early
        stopping decision) without padding or repeated samples."""
        if self.info.world_size == 1:
            return predict_loader(model, loader, self.device, to_input, amp, track, len(loader))
        shard = self._shard(loader)
        logits, labels = predict_loader(model, shard, self.device, to_input, amp, track, len(shard))
        parts = all_gather_objects((logits.cpu(), labels.cpu()))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _shard(self, loader: DataLoader) -> DataLoader:
        if self._val_shard is None:
            n, rank, world = len(loader.dataset), self.info.rank, self.info.world_size
            self._val_shard = DataLoader(Subset(loader.dataset, range(rank, n, world)), batch_size=loader.batch_size,
                                         num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                                         persistent_workers=loader.num_workers > 0)
        return self._val_shard

    def bytes_per_step(self) -> dict[str, float]:
        """Payload this rank hands to collectives or point-to-point sends per optimizer step, by kind."""
        return {}


def tensor_bytes(tensors: Iterator[torch.Tensor] | Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
