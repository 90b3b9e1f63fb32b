"""torch.distributed plumbing: the torchrun environment, a local launcher, and the collectives training needs.

As in torchvision's ``references/classification/utils.py`` (``init_distributed_mode``), the process group is
read from the environment ``torchrun`` sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so the same
code runs on one machine or several. Backend: gloo on CPU, nccl on CUDA. ``launch`` starts N local processes
through torchrun's own API (``torch.distributed.launcher.elastic_launch``), so ``--nproc N`` and
``torchrun --nproc-per-node N`` give the workers the same environment.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def in_torchrun_env() -> bool:
    """True inside a process started by torchrun (or :func:`launch`)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by the torchrun environment (once); a single process without it.

    ``device`` picks the backend: nccl when the run uses CUDA, gloo otherwise.
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if not in_torchrun_env():
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    log.debug("rank %d of %d joined the %s process group", info.rank, info.world_size, dist.get_backend())
    return info


def shutdown_distributed() -> None:
    """Leave the process group if this process joined one (torch warns about a group left open at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def device_for(requested: torch.device) -> torch.device:
    """One GPU per process: ``cuda`` becomes ``cuda:LOCAL_RANK``; CPU stays CPU."""
    if requested.type == "cuda" and requested.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return requested


def launch(fn: Callable[..., Any], nproc: int, *args: Any) -> dict[int, Any]:
    """Run ``fn(*args)`` in ``nproc`` local processes with the torchrun environment; returns {rank: result}.

    ``fn`` and ``args`` must be picklable (a module-level function). Each process joins the group itself, e.g.
    through :func:`init_distributed`.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", run_id=str(uuid.uuid4()), max_restarts=0,
                          monitor_interval=0.1, start_method="spawn")
    return elastic_launch(config, fn)(*args)


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` from every rank, in rank order (just ``[obj]`` without a process group)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


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


class RankShare:
    """A ``skip`` container for :func:`fakescope.inference.scan.scan` that leaves this rank its share of the files.

    A file belongs to rank ``path_hash(path) % world_size`` (stable, the same on every node), so the file list is
    sharded without any rank listing it first or holding it in memory.
    """

    def __init__(self, rank: int, world_size: int):
        from fakescope.inference.scan import path_hash  # not at import time: scan imports the engine

        self.rank, self.world_size, self._hash = rank, world_size, path_hash

    def __contains__(self, path: object) -> bool:
        return self._hash(str(path)) % self.world_size != self.rank


def part_path(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.name}.part{rank}.jsonl")


def scan_distributed(paths: Iterable[str | Path], detector: Any, output: Path, fmt: str, batch_size: int = 32,
                     workers: int | None = None, threshold: float | None = None, **scan_options: Any) -> Counter | None:
    """``scan`` under torchrun: each rank scores its share into ``<output>.part<rank>.jsonl`` (streamed), and
    rank 0 merges the parts into ``output`` in ``fmt`` (json, jsonl or csv). The output folder must be shared by
    all nodes. ``scan_options`` go to :func:`fakescope.inference.scan.scan`. Returns the label counts on rank 0,
    None elsewhere."""
    from fakescope.inference.scan import scan

    rank, world = get_rank(), get_world_size()
    part = part_path(output, rank)
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "w", encoding="utf-8") as f:
        results = scan(paths, detector, batch_size, workers, threshold, skip=RankShare(rank, world), **scan_options)
        f.writelines(json.dumps(r.to_dict()) + "\n" for r in results)
    barrier()
    counts = merge_parts(output, fmt, world) if rank == 0 else None
    barrier()
    return counts


def merge_parts(output: Path, fmt: str, world_size: int) -> Counter:
    """Join the ranks' JSONL parts into ``output`` in format ``fmt`` and delete them, one line at a time (flat
    memory in every format)."""
    from fakescope.inference.output import write_results
    from fakescope.inference.scan import ScanResult

    parts = [part_path(output, r) for r in range(world_size)]
    counts: Counter = Counter()

    def results() -> Iterator[ScanResult]:
        for p in parts:
            for line in _lines(p):
                result = ScanResult.from_dict(json.loads(line))
                counts[result.label or "error"] += 1
                yield result

    with open(output, "w", newline="", encoding="utf-8") as f:
        write_results(results(), fmt, f)
    for p in parts:
        p.unlink()
    return counts


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        yield from f


def local_device(device: str) -> str:
    """``--device`` for this process: ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` under torchrun with GPUs."""
    if torch.cuda.is_available() and device in ("auto", "cuda") and in_torchrun_env():
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device
