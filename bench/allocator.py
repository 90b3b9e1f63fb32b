"""Training and inference speed with glibc's malloc as it comes and with fakescope's tuning (``fakescope.allocator``).

    python bench/allocator.py [--model efficientnet_lite2] [--size 320] [--batch 32] [--steps 4] [--rounds 2] [--write]

Each measurement runs in a fresh process, alternating the two set-ups round by round so drift on a noisy machine
hits both: ``system`` (``FAKESCOPE_MALLOC=system``, glibc's defaults) and ``reuse`` (freed blocks kept for the next
batch). Training: AdamW steps of ``fakescope.engine.loops.train_one_epoch`` on random images in channels-last layout,
as ``fakescope train`` runs them. Inference: ``Detector.predict_arrays`` batches of the shipped default at its own
input size (eager PyTorch, the path of Grad-CAM, ``evaluate`` and ``--backend torch``). Per set-up: images/s (median over rounds), the kernel's share of the process's CPU time (page
faults are counted there), minor page faults per image and peak resident memory. ``--write`` puts the table under
"## Allocator" in docs/benchmarks/speed.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time

from _common import write_section

MODES = ("system", "reuse")


def child(kind: str, model_name: str, size: int, batch: int, steps: int) -> dict:
    """Run ``steps`` timed batches (after one untimed) in this process; the figures the parent tabulates."""
    import numpy as np
    import torch

    from fakescope.allocator import reuse_freed_memory

    applied = reuse_freed_memory()
    rng = np.random.default_rng(0)
    if kind == "train":
        from fakescope.engine.loops import EpochOptions, train_one_epoch
        from fakescope.registry import create_detector

        model, pre = create_detector(model_name, size=size)
        model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        data = (torch.from_numpy(rng.integers(0, 256, (batch, size, size, pre.channels), dtype=np.uint8)),
                torch.from_numpy(rng.integers(0, 2, batch)))

        def to_input(arrays: torch.Tensor) -> torch.Tensor:  # as fakescope.engine.train.fit feeds the model
            return pre.to_tensor(arrays).contiguous(memory_format=torch.channels_last)

        def step() -> None:  # fakescope's own training loop, over one batch
            train_one_epoch(model, [data], torch.device("cpu"), EpochOptions(opt, torch.nn.CrossEntropyLoss(), to_input))
    else:
        from fakescope.inference.detector import Detector

        detector = Detector.load("default", device="cpu")
        side = detector.preprocess.size  # the default's own input, whatever --size the training rows use
        arrays = rng.integers(0, 256, (batch, side, side, 3), dtype=np.uint8)

        def step() -> None:
            detector.predict_arrays(arrays)
    step()
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"applied": applied, "images_per_s": batch * steps / seconds,
            "kernel_share": (after.ru_stime - before.ru_stime) / cpu,
            "faults_per_image": (after.ru_minflt - before.ru_minflt) / (batch * steps),
            "peak_gb": after.ru_maxrss / 2**20}


def measure(kind: str, mode: str, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FAKESCOPE_MALLOC"}
    if mode == "system":
        env["FAKESCOPE_MALLOC"] = "system"
    cmd = [sys.executable, __file__, "--child", kind, "--model", args.model, "--size", str(args.size),
           "--batch", str(args.batch), "--steps", str(args.steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["applied"] == (mode == "reuse"), result
    print(kind, mode, json.dumps(result), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite2", help="architecture of the training rows")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--child", choices=("train", "infer"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.size, args.batch, args.steps)))
        return
    t0 = time.time()
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for kind in ("train", "infer"):
            for mode in MODES:
                runs.setdefault((kind, mode), []).append(measure(kind, mode, args))
    lines = ["| work | malloc | images/s | kernel share of CPU time | minor page faults per image | peak resident GB |",
             "|---|---|---|---|---|---|"]
    speed = {}
    for (kind, mode), results in runs.items():
        med = {k: statistics.median(r[k] for r in results) for k in ("images_per_s", "kernel_share",
                                                                      "faults_per_image", "peak_gb")}
        speed[kind, mode] = med["images_per_s"]
        label = f"training step, {args.model} at {args.size} px" if kind == "train" else \
            "inference, shipped default (PyTorch, its own input size)"
        lines.append(f"| {label} | {mode} | {med['images_per_s']:.1f} | {med['kernel_share']:.0%} | "
                     f"{med['faults_per_image']:,.0f} | {med['peak_gb']:.1f} |")
    ratios = ", ".join(f"{kind} {speed[kind, 'reuse'] / speed[kind, 'system']:.2f}x" for kind in ("train", "infer"))
    command = "python bench/allocator.py " + shlex.join(sys.argv[1:])
    body = (f"Command: `{command}` ({time.time() - t0:.0f} s here; batch {args.batch}, "
            f"{args.steps} timed batches per process, median of {args.rounds} alternating rounds). "
            f"`system`: glibc's defaults (`FAKESCOPE_MALLOC=system`); `reuse`: `fakescope.allocator` (mmap off, 1 GiB "
            f"trim threshold), what every `fakescope` command does. `reuse` over `system`: {ratios}.\n\n"
            + "\n".join(lines) + "\n")
    print(body)
    if args.write:
        write_section("Allocator", body)


if __name__ == "__main__":
    main()
