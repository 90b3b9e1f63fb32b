"""Worker processes that each run their share of a stream and send the results back in chunks: a scan's decoding,
without PyTorch's DataLoader (so a scan never imports torch).

It keeps what the scan relied on DataLoader for: forked workers that die with their parent, a bounded number of
chunks in flight (``prefetch`` per worker), results in a fixed order (worker 0's first chunk, worker 1's first,
..., round robin, as DataLoader yields them), and an error instead of a hang when a worker dies.
"""
from __future__ import annotations

import gc
import multiprocessing as mp
import queue
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

#: ``shard(worker_id, num_workers)`` -> that worker's items (every item is produced by exactly one worker).
Shard = Callable[[int, int], Iterator[Any]]
_DONE = "__fakescope_worker_done__"
#: Seconds between checks that a silent worker is still alive.
POLL = 1.0


def die_with_parent() -> None:
    """Exit when the parent dies (SIGKILL, OOM). An orphaned worker would otherwise block for ever at exit,
    flushing results into a pipe nobody reads."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _work(shard: Shard, wid: int, nw: int, out: Any, chunk: int) -> None:
    die_with_parent()
    if "torch" in sys.modules:  # a parent that uses PyTorch: one thread per worker, as DataLoader sets it
        sys.modules["torch"].set_num_threads(1)
    buf: list[Any] = []
    try:
        for item in shard(wid, nw):
            buf.append(item)
            if len(buf) >= chunk:
                out.put(buf)
                buf = []
        if buf:
            out.put(buf)
        out.put(_DONE)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it, once
        pass
    except Exception as err:  # noqa: BLE001  re-raised in the parent, which a worker's traceback would not stop
        out.put(_Failed(f"{type(err).__name__}: {err}"))


class _Failed:
    def __init__(self, message: str):
        self.message = message


def run_sharded(shard: Shard, workers: int, chunk: int = 8, prefetch: int = 4) -> Iterator[Any]:
    """Items of ``shard(i, workers)`` for every worker i, computed in ``workers`` forked processes."""
    ctx = mp.get_context("fork")
    queues = [ctx.Queue(maxsize=prefetch) for _ in range(workers)]
    procs = [ctx.Process(target=_work, args=(shard, i, workers, q, chunk), daemon=True) for i, q in enumerate(queues)]
    # Forked workers inherit this process's garbage. If a worker's garbage collector frees an object that owns
    # threads (an unreferenced ONNX Runtime session), its destructor waits on a lock held by a thread that does
    # not exist after fork, and the worker hangs. So free garbage here, and hide the rest from workers' collectors.
    gc.collect()
    gc.freeze()
    try:
        for p in procs:
            p.start()
    finally:
        gc.unfreeze()
    try:
        yield from _round_robin(queues, procs)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
        for q in queues:
            q.close()
            q.join_thread()


def _round_robin(queues: list[Any], procs: list[Any]) -> Iterator[Any]:
    live = list(range(len(queues)))
    while live:
        for i in list(live):
            chunk = _next_chunk(queues[i], procs[i])
            if isinstance(chunk, _Failed):
                raise RuntimeError(f"decoding worker {i} failed: {chunk.message}")
            if isinstance(chunk, str) and chunk == _DONE:
                live.remove(i)
            else:
                yield from chunk


def _next_chunk(q: Any, proc: Any) -> Any:
    while True:
        try:
            return q.get(timeout=POLL)
        except queue.Empty:
            if not proc.is_alive():
                try:  # it may have put its last chunk just before exiting
                    return q.get(timeout=POLL)
                except queue.Empty:
                    raise RuntimeError(f"decoding worker (pid {proc.pid}) exited unexpectedly with code "
                                       f"{proc.exitcode}") from None
