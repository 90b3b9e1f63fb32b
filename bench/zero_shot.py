"""Real-only, zero-shot scoring after ZED (Cozzolino et al., ECCV 2024): is an image more predictable than a model of
real photos expects?

    python bench/zero_shot.py [--steps 3000] [--per-class 250] [--coder runs/zero-shot/coder.pt] [--write]

A small lossless coder (a PixelCNN: masked convolutions predicting each luminance value, 256 levels, from the pixels
above and to its left) is trained on random 64 px crops of the real-only camera originals, never on a fake and never
on the four sets it is scored on, so every figure here is a left-out one. Each image is scored on its central
256 x 256 luminance crop and on the crop of its 2x average-pooled copy: the coding cost (NLL, nats per pixel) and the
coder's own expected cost (the entropy of its predictions) at both levels. ZED's reading, fixed before measuring: a
generated image costs less than expected (NLL - entropy lower), so the fake score is minus that gap; the table gives
ROC-AUC of each statistic read that way (with a bootstrap interval for ZED's gap), on ``--per-class`` images of each class and set (seeded sample). The coder is
cached at ``--coder``; scores beside it.
"""
from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import REPO, data_root, write_section
from sklearn.metrics import roc_auc_score
from torch import nn

from fakescope.data.discovery import discover_samples
from fakescope.evaluation.metrics import roc_auc_interval
from fakescope.forensics.io import load_image

SCORED = ("casia1", "faces140k", "diffusiondb", "wildfaces")
CROP, TRAIN_CROP, BATCH = 256, 64, 16


class MaskedConv(nn.Conv2d):
    """A convolution that sees only the pixels above and to the left (and, after the first layer, the centre)."""

    def __init__(self, cin: int, cout: int, k: int, first: bool):
        super().__init__(cin, cout, k, padding=k // 2)
        mask, c = torch.ones_like(self.weight), k // 2
        mask[:, :, c, c + (0 if first else 1):] = 0
        mask[:, :, c + 1:] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class Coder(nn.Module):
    """Luminance (N, 1, H, W) in 0..255 -> logits over the 256 values of each pixel."""

    def __init__(self, width: int = 32, depth: int = 3):
        super().__init__()
        self.first = MaskedConv(1, width, 5, True)
        self.blocks = nn.ModuleList(MaskedConv(width, width, 3, False) for _ in range(depth))
        self.head = nn.Conv2d(width, 256, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.first(y / 127.5 - 1))
        for block in self.blocks:
            h = h + F.gelu(block(h))
        return self.head(h)


def costs(coder: Coder, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel coding cost and expected cost (nats) of ``y``, without the border the causal context lacks."""
    logp = F.log_softmax(coder(y), 1)
    nll = -logp.gather(1, y.long()).squeeze(1)
    entropy = -(logp.exp() * logp).sum(1)
    return nll[:, 2:, 2:-2], entropy[:, 2:, 2:-2]


def luminance(path: Path) -> np.ndarray:
    return np.asarray(load_image(path).convert("L"), dtype=np.uint8)  # the project's decoder: EXIF orientation, limits


def down2(y: np.ndarray) -> np.ndarray:
    """2x average pooling, rounded back to 8 bits (the next level of the pyramid)."""
    y = y[: y.shape[0] // 2 * 2, : y.shape[1] // 2 * 2].astype(np.float32)
    return np.round((y[0::2, 0::2] + y[1::2, 0::2] + y[0::2, 1::2] + y[1::2, 1::2]) / 4).astype(np.uint8)


def train_coder(folder: Path, steps: int, out: Path) -> Coder:
    """Fit the coder on random crops of the reals in ``folder`` (a quarter of them from the pooled level)."""
    rng = np.random.default_rng(0)
    images = [luminance(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    images = [y for y in images if min(y.shape) >= TRAIN_CROP]
    torch.manual_seed(0)
    coder = Coder()
    opt = torch.optim.AdamW(coder.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.05)
    for step in range(steps):
        crops = []
        for _ in range(BATCH):
            y = images[rng.integers(len(images))]
            if rng.random() < 0.25 and min(y.shape) >= 2 * TRAIN_CROP:
                y = down2(y)
            i, j = rng.integers(0, y.shape[0] - TRAIN_CROP + 1), rng.integers(0, y.shape[1] - TRAIN_CROP + 1)
            crops.append(y[i:i + TRAIN_CROP, j:j + TRAIN_CROP])
        loss = costs(coder, torch.from_numpy(np.stack(crops)).float()[:, None])[0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            print(f"step {step}: {loss.item() / np.log(2):.2f} bits per pixel", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(coder.state_dict(), out)
    return coder


@torch.no_grad()
def statistics(coder: Coder, path: Path) -> list[float]:
    """(NLL, entropy) of the central crop at full resolution, then of the same region at half resolution."""
    y = luminance(path)
    i, j = max(0, (y.shape[0] - CROP) // 2), max(0, (y.shape[1] - CROP) // 2)
    out: list[float] = []
    for level in (y[i:i + CROP, j:j + CROP], down2(y)[i // 2:i // 2 + CROP, j // 2:j // 2 + CROP]):
        nll, entropy = costs(coder, torch.from_numpy(level.copy()).float()[None, None])
        out += [nll.mean().item(), entropy.mean().item()]
    return out


def sample(name: str, per_class: int) -> list[tuple[Path, int]]:
    """``per_class`` images of each class of set ``name``, drawn with a fixed seed: (path, label 1 = fake)."""
    found = discover_samples(data_root() / name)
    picked = []
    for label in (0, 1):
        paths = sorted(s.path for s in found if s.label == label)
        random.Random(0).shuffle(paths)
        picked += [(p, label) for p in paths[:per_class]]
    return picked


def table(scores: dict[str, list[float]], picks: dict[str, list[tuple[Path, int]]]) -> str:
    rows = ["| left-out set | images | NLL | NLL - entropy | (NLL - entropy), half size | gap change across levels |",
            "|---|---|---|---|---|---|"]
    aucs = []
    for name, picked in picks.items():
        labels = np.array([label for _, label in picked])
        nll0, h0, nll1, h1 = np.array([scores[str(p)] for p, _ in picked]).T
        cols = [nll0, nll0 - h0, nll1 - h1, (nll0 - h0) - (nll1 - h1)]
        auc = [roc_auc_score(labels, -c) for c in cols]  # fake = more predictable than expected
        aucs.append(auc)
        low, high = roc_auc_interval(labels, -cols[1])
        cells = [f"{auc[0]:.3f}", f"{auc[1]:.3f} [{low:.2f}, {high:.2f}]", *(f"{a:.3f}" for a in auc[2:])]
        rows.append(f"| {name} | {len(picked)} | " + " | ".join(cells) + " |")
    rows.append("| mean | | " + " | ".join(f"{a:.3f}" for a in np.mean(aucs, axis=0)) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--coder", type=Path, default=REPO / "runs" / "zero-shot" / "coder.pt")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.time()
    if args.coder.exists():
        coder = Coder()
        coder.load_state_dict(torch.load(args.coder, weights_only=True))
    else:
        coder = train_coder(data_root() / "cameras" / "real", args.steps, args.coder)
    coder.eval()
    cache = args.coder.with_suffix(".scores.json")
    scores = json.loads(cache.read_text()) if cache.exists() else {}
    picks = {name: sample(name, args.per_class) for name in SCORED}
    for path, _ in (pick for picked in picks.values() for pick in picked):
        if str(path) not in scores:
            scores[str(path)] = statistics(coder, path)
    cache.write_text(json.dumps(scores))
    body = table(scores, picks)
    print(body)
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    if args.write:
        command = "python bench/zero_shot.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        write_section("Real-only zero-shot scoring", f"`{command.strip()}` (ROC-AUC, fake = lower; every set "
                      f"left out: the coder saw only the camera originals' reals). What it shows: "
                      f"[history](../history.md#real-only-scoring-and-source-invariant-training-not-shipped-2026-12-06)."
                      f"\n\n{body}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
