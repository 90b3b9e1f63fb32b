"""The collectives training needs on top of :mod:`fakescope.distributed`: averaging replicas, sending one rank's
batches to all, reducing an epoch's statistics."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist

from fakescope.distributed import is_dist


def average_tensors(tensors: Iterable[torch.Tensor]) -> None:
    """Average floating tensors (parameters, BatchNorm statistics) across ranks, in place, in one all-reduce."""
    from torch.distributed.algorithms.model_averaging.utils import average_parameters

    floats = [t for t in tensors if t.is_floating_point()]
    if is_dist() and floats:
        average_parameters(iter(floats), dist.group.WORLD)


def broadcast_batches(loader: Iterable | None, steps: int, with_arrays: bool, device: torch.device,
                      src: int = 0) -> Iterator[tuple[torch.Tensor | None, torch.Tensor]]:
    """The batches of ``loader`` (iterated on rank ``src`` only), sent to every rank: labels always, the
    uint8 image arrays only if ``with_arrays`` (tensor parallelism needs them everywhere, a pipeline only on its
    first stage). A batch nobody could read (``None``) is skipped on every rank together.
    """
    source = iter(loader) if dist.get_rank() == src else None
    for _ in range(steps):
        batch = next(source, None) if source is not None else None
        header = torch.zeros(5, dtype=torch.long)
        if batch is not None:
            header[0] = len(batch[1])
            header[1:1 + batch[0].dim()] = torch.tensor(batch[0].shape)
        dist.broadcast(header, src)
        if header[0] == 0:
            continue
        labels = batch[1] if batch is not None else torch.empty(int(header[0]), dtype=torch.long)
        dist.broadcast(labels, src)
        arrays = batch[0] if batch is not None else None
        if with_arrays:
            if arrays is None:
                arrays = torch.empty([int(s) for s in header[1:] if s > 0], dtype=torch.uint8)
            dist.broadcast(arrays, src)
        yield arrays, labels.to(device)


def reduce_epoch_stats(stats: dict[str, float]) -> dict[str, float]:
    """Combine data-parallel ranks' epoch statistics: mean loss and accuracy, summed throughput."""
    if not is_dist():
        return stats
    t = torch.tensor([stats["loss"], stats["accuracy"], stats["images_per_s"]], dtype=torch.float64)
    dist.all_reduce(t)
    n = dist.get_world_size()
    return {"loss": float(t[0]) / n, "accuracy": float(t[1]) / n, "images_per_s": float(t[2])}
