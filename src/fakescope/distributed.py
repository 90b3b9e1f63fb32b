"""torch.distributed plumbing shared by training and scanning: the torchrun environment, a local launcher.

As in torchvision's ``references/classification/utils.py`` (``init_distributed_mode``), the process group is
read from the environment ``torchrun`` sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so the same
code runs on one machine or several. Backend: gloo on CPU, nccl on CUDA. ``launch`` starts N local processes
through torchrun's own API (``torch.distributed.launcher.elastic_launch``), so ``--nproc N`` and
``torchrun --nproc-per-node N`` give the workers the same environment.
"""
from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
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


def local_device(device: str) -> str:
    """``--device`` for this process: ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` under torchrun with GPUs."""
    if torch.cuda.is_available() and device in ("auto", "cuda") and in_torchrun_env():
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device
