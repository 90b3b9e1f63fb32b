"""Keep freed tensor memory in the process instead of handing it back to the kernel after every batch.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and returns it
with ``munmap`` when freed. Many of a CNN's activations at batch 32 are larger than that, so on CPU every forward
pass maps them anew and the kernel zero-fills each 4 KB page on first touch, a large share of the CPU time of a
training step and of an inference batch (docs/benchmarks/speed.md, "Allocator", from ``bench/allocator.py``). With
``mmap`` off for the heap and a 1 GiB trim threshold, freed blocks are reused by the next batch. The price is a
higher resident peak, kept until the process exits, which is what PyTorch's CUDA caching allocator does on GPUs.

One more price, and its remedy: a process forked from a large heap shares its pages copy-on-write, and each page the
parent then writes into (the next batch reusing a freed block) is copied: a training run whose validation workers
were forked from its large heap was killed for lack of memory that way (docs/benchmarks/speed.md, "Throughput").
So the tuning also registers
:func:`release_free_memory` to run before every ``os.fork`` (DataLoader and scan workers, multiprocessing):
``malloc_trim`` hands the free blocks back to the kernel, the children share only live memory, and the next batch
faults its blocks in once.

:func:`reuse_freed_memory` is called by the ``fakescope`` command, :func:`fakescope.engine.train.fit` and
:meth:`fakescope.inference.detector.Detector.load`. It does nothing outside Linux with glibc (musl, macOS, Windows)
or when ``FAKESCOPE_MALLOC=system``, and has no effect under an ``LD_PRELOAD``-ed jemalloc or tcmalloc, which
replace glibc's ``malloc``.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

log = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: Free memory at the top of the heap above this is still returned to the kernel.
TRIM_THRESHOLD = 1 << 30
#: Set to ``system`` to leave glibc's defaults alone.
OPT_OUT_VARIABLE = "FAKESCOPE_MALLOC"

_applied: bool | None = None
_libc: ctypes.CDLL | None = None


def reuse_freed_memory() -> bool:
    """Tune glibc's ``malloc`` so large freed blocks are reused, once per process; True when it is in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    """Call ``mallopt`` unless opted out or not on glibc; keep libc and hook :func:`release_free_memory` to forks."""
    if os.environ.get(OPT_OUT_VARIABLE, "").lower() == "system":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    global _libc
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if ok and _libc is None:
        os.register_at_fork(before=release_free_memory)
    _libc = libc if ok else None
    log.debug("glibc malloc: %s", "freed blocks reused (mmap off, trim threshold 1 GiB)" if ok else "mallopt refused")
    return ok


def release_free_memory() -> None:
    """Hand the heap's free blocks back to the kernel now (run before every fork once tuned); else a no-op."""
    if _libc is not None:
        _libc.malloc_trim(0)
