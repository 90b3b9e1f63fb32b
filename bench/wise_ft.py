"""Weight-space interpolation toward the ImageNet start (WiSE-FT, Wortsman et al., CVPR 2022) on left-out runs.

    python bench/wise_ft.py RUNS [--leave-out SET ...] [--alphas 1.0 0.7]

WiSE-FT's reading: fine-tuning moves a pretrained network's features toward the sets it is tuned on, and a point on
the straight line between the fine-tuned weights and the pretrained ones keeps more of what travelled, raising
accuracy on unseen kinds for little cost on the seen ones. For each run folder of ``bench/held_out_sets.py``
(RUNS/without-SET), every floating-point tensor the fine-tuned network shares with its ImageNet start (the
backbone and its batch-norm statistics) becomes ``alpha * fine-tuned + (1 - alpha) * ImageNet``; the heads, which
the ImageNet network does not have, stay fine-tuned. Every image of the set the run never saw is scored by the
network alone (its calibrated probability), and each ``alpha`` is compared with 1 (the run as trained) on the same
images (paired bootstrap). Nothing is trained or cached.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from _common import SETS, data_root

from fakescope.checkpoint import load_checkpoint
from fakescope.data.discovery import discover_samples
from fakescope.evaluation.evaluate import score_samples
from fakescope.evaluation.metrics import paired_difference, roc_auc_score
from fakescope.inference.kinds import SINGLE, get_kind
from fakescope.registry import create_detector


def interpolated(run: Path, alphas: list[float], name: str) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """{alpha: (labels, fake probabilities)} of every image of ``name`` by ``run``'s network at each ``alpha``."""
    path = run / "best.safetensors"
    model, meta = load_checkpoint(path)
    tuned = {k: v.clone() for k, v in model.state_dict().items()}
    spec = meta.info["config"]["model"]
    network = create_detector(spec["name"], input_mode=spec["input_mode"], size=spec["size"], pretrained=True)[0]
    head = network.pretrained_cfg.get("classifier", "classifier") + "."  # built at random: not part of the start
    start = network.state_dict()
    shared = [k for k, v in tuned.items() if k in start and start[k].shape == v.shape and v.is_floating_point()
              and not k.startswith(head)]
    samples = discover_samples(data_root() / name)
    out = {}
    for alpha in alphas:
        model.load_state_dict({**tuned, **{k: alpha * tuned[k] + (1 - alpha) * start[k] for k in shared}})
        detector = get_kind(meta.info.get("kind", SINGLE))(model, meta, str(path), device="cpu")
        labels, scores, _ = score_samples(detector, samples, batch_size=32, workers=2)
        out[alpha] = (np.asarray(labels), np.asarray(scores))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="a run folder of bench/held_out_sets.py")
    ap.add_argument("--leave-out", nargs="+", choices=SETS[:-1], default=list(SETS[:-1]), metavar="SET")
    ap.add_argument("--alphas", nargs="+", type=float, default=[1.0, 0.7])
    args = ap.parse_args()
    t0, rows, means = time.time(), [], []
    alphas = sorted(set(args.alphas) | {1.0}, reverse=True)
    for name in args.leave_out:
        if not (args.runs / f"without-{name}" / "best.safetensors").exists():
            continue
        scored = interpolated(args.runs / f"without-{name}", alphas, name)
        y, base = scored[1.0]
        cells = []
        for alpha in alphas[1:]:
            d = paired_difference(y, scored[alpha][1], base)
            cells.append(f"{roc_auc_score(y, scored[alpha][1]):.3f} ({d['difference']:+.3f} "
                         f"[{d['low']:+.3f}, {d['high']:+.3f}])")
        means.append([roc_auc_score(y, scored[a][1]) for a in alphas])
        rows.append(f"| {name} | {roc_auc_score(y, base):.3f} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    if not rows:
        raise SystemExit(f"{args.runs}: no finished left-out run (without-SET/best.safetensors)")
    rows.append("| mean | " + " | ".join(f"**{v:.3f}**" for v in np.mean(means, 0)) + " |")
    command = shlex.join(["python", "bench/wise_ft.py", *sys.argv[1:]])
    print(f"Command: `{command}` ({time.time() - t0:.0f} s here). ROC-AUC on every image of the set each run never "
          "saw; in brackets: minus the run as trained (alpha 1), [95% paired bootstrap interval].\n\n"
          "| never seen | alpha 1 (as trained) | " + " | ".join(f"alpha {a}" for a in alphas[1:]) + " |\n"
          + "|---" * (len(alphas) + 1) + "|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
