"""Training speed of the from-scratch NumPy/CuPy CNN against the PyTorch ELA-CNN of the same shape.

Three ways to train the same network on the same random batch (forward, softmax cross-entropy, backward, Adam):

- ``torch ELA-CNN``: ``fakescope.models.ela_cnn.ELACNN`` (channels-last, as ``fakescope train`` runs it);
- ``scratch-cnn module``: the registered ``scratch-cnn`` (NumPy layers under torch autograd, torch's Adam), which is
  what ``fakescope train --model scratch-cnn`` runs;
- ``scratch NumPy loop``: ``ScratchNet`` with the scratch Adam, no torch at all.

    python bench/scratch.py --batches 5 --threads 2 [--write]

``--write`` replaces the "## From-scratch CNN" section of docs/benchmarks/speed.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from _common import write_section
from threadpoolctl import threadpool_limits
from torch import nn

from fakescope.models.ela_cnn import ELACNN
from fakescope.models.scratch import backend
from fakescope.models.scratch.module import ScratchCNN
from fakescope.models.scratch.network import build_ela_cnn, train_step
from fakescope.models.scratch.optim import Adam


def images_per_s(step: Callable[[], None], batches: int, batch_size: int) -> float:
    step()  # warm-up: allocations, BLAS/oneDNN kernel selection
    start = time.perf_counter()
    for _ in range(batches):
        step()
    return batches * batch_size / (time.perf_counter() - start)


def torch_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def numpy_step(size: int, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    net = build_ela_cnn(3, size, seed=0)
    opt = Adam(net.parameters(), lr=1e-4)
    xb, yb = backend.xp.asarray(x), backend.xp.asarray(y)
    return lambda: train_step(net, opt, xb, yb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks/speed.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, 3, args.size, args.size), dtype=np.float32)
    y = (np.arange(args.batch_size) % 2).astype(np.int64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    results = {}
    with threadpool_limits(args.threads):  # NumPy's BLAS gets the same threads as torch
        results["torch ELA-CNN"] = images_per_s(
            torch_step(ELACNN(3, args.size).to(memory_format=torch.channels_last),
                       xt.contiguous(memory_format=torch.channels_last), yt), args.batches, args.batch_size)
        results["scratch-cnn module"] = images_per_s(
            torch_step(ScratchCNN(3, args.size, seed=0), xt, yt), args.batches, args.batch_size)
        results["scratch NumPy loop"] = images_per_s(numpy_step(args.size, x, y), args.batches, args.batch_size)
    text = markdown(results, args)
    print(text)
    if args.write:
        write_section("From-scratch CNN", text)


def markdown(results: dict[str, float], args: argparse.Namespace) -> str:
    base = results["torch ELA-CNN"]
    lines = [
        (f"Command: `python bench/scratch.py --batches {args.batches} --threads {args.threads} --write` "
        f"(backend {backend.xp.__name__}; torch {torch.__version__}, numpy {np.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs; one batch of {args.batch_size} x 3 x "
        f"{args.size} x {args.size}, forward + cross-entropy + backward + Adam, {args.batches} timed batches after "
        f"1 warm-up, {args.threads} torch and BLAS threads; load average {os.getloadavg()[0]:.1f} at the end)."),
        "",
        "| implementation | training images/s | ratio to torch |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {rate:.1f} | {rate / base:.2f} |" for name, rate in results.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
