"""``fakescope scan --distributed``: under torchrun each rank scores its share of the files into a part file, and
rank 0 merges the parts into the output."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fakescope.distributed import barrier, get_rank, get_world_size
from fakescope.inference.output import write_results
from fakescope.inference.scan import ScanResult, path_hash, scan


class RankShare:
    """A ``skip`` container for :func:`fakescope.inference.scan.scan` that leaves this rank its share of the files.

    A file belongs to rank ``path_hash(path) % world_size`` (stable, the same on every node), so the file list is
    sharded without any rank listing it first or holding it in memory.
    """

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size

    def __contains__(self, path: object) -> bool:
        return path_hash(str(path)) % self.world_size != self.rank


def part_path(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.name}.part{rank}.jsonl")


def scan_distributed(paths: Iterable[str | Path], detector: Any, output: Path, fmt: str, batch_size: int = 32,
                     workers: int | None = None, threshold: float | None = None, **scan_options: Any) -> Counter | None:
    """``scan`` under torchrun: each rank scores its share into ``<output>.part<rank>.jsonl`` (streamed), and
    rank 0 merges the parts into ``output`` in ``fmt`` (json, jsonl or csv). The output folder must be shared by
    all nodes. ``scan_options`` go to :func:`fakescope.inference.scan.scan`. Returns the label counts on rank 0,
    None elsewhere."""
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
