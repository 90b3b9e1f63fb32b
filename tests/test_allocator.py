"""The glibc malloc tuning: freed tensor memory is reused by the next batch instead of being faulted in again."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading

import pytest
import torch

from fakescope import allocator

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="the tuning applies to glibc's malloc only")

# Twenty 64 MB tensors, each written and freed in turn (as a batch's activations are), counting page faults.
FAULTS = """
import json, resource, torch
from fakescope.allocator import reuse_freed_memory
applied = reuse_freed_memory()
for _ in range(10):
    torch.ones(16 << 20)  # the heap grows over the first few blocks; those touches count for neither
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(16 << 20)  # 64 MB of float32, freed at once
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _run(script: str, opt_out: bool = False) -> dict:
    """Run ``script`` in a fresh Python (the tuning is per process) and read the JSON of its last line."""
    env = {k: v for k, v in os.environ.items() if k != allocator.OPT_OUT_VARIABLE}
    if opt_out:
        env[allocator.OPT_OUT_VARIABLE] = "system"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    tuned, system = _run(FAULTS), _run(FAULTS, opt_out=True)
    assert tuned["applied"] and not system["applied"]
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert system["faults"] > 10 * pages  # glibc's default: every 64 MB block mapped and zero-filled anew
    assert tuned["faults"] < 2 * pages  # reused: the twenty blocks cost at most two blocks' worth of touches


@glibc_only
def test_large_blocks_still_allocate_on_other_threads(monkeypatch):
    # With mmap off a thread arena cannot hold a 200 MB block; glibc falls back to the main heap.
    monkeypatch.delenv(allocator.OPT_OUT_VARIABLE, raising=False)
    assert allocator._apply()
    sums = []
    thread = threading.Thread(target=lambda: sums.append(float(torch.ones(50 << 20).sum())))
    thread.start()
    thread.join()
    assert sums == [float(50 << 20)]


def test_opt_out_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv(allocator.OPT_OUT_VARIABLE, "system")
    assert allocator._apply() is False


# A 256 MB block freed stays in the tuned heap until release_free_memory hands it back: called directly, or by the
# hook the tuning registers to run before every fork (DataLoader and scan workers).
RELEASE = """
import json, os, sys, torch
from fakescope.allocator import release_free_memory, reuse_freed_memory
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
assert reuse_freed_memory()
base = rss_mb()
block = torch.ones(64 << 20)
above = torch.ones(1 << 20)  # a live tensor above the block, so the freed block is not the heap's top
del block
held = rss_mb()
if sys.argv[1] == "fork":
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
else:
    release_free_memory()
print(json.dumps({"held": held - base, "released": rss_mb() - base}))
"""


@glibc_only
@pytest.mark.parametrize("how", ["call", "fork"])
def test_release_hands_free_blocks_back_before_a_fork(how):
    mb = _run(RELEASE.replace("sys.argv[1]", repr(how)))
    assert mb["held"] > 200  # kept for the next batch
    assert mb["released"] < 64  # given back: a forked worker would not share it
