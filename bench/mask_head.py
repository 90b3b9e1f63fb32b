"""Does the mask head (``mask_loss``) tell fakes from reals by itself? Its cell map's maximum as an image score.

    python bench/mask_head.py RUN [--write]

RUN is a ``fakescope train --mask-loss W`` run folder: its ``best.safetensors`` (the detector) and ``last.pt``
(which still holds the training-only head that :mod:`fakescope.engine.pixel` drops when saving; with ``keep:
last`` both are the last epoch's weights). On each set's validation split, and on casia1's shortcut test, the
script scores every image with the detector's calibrated classifier and with the head's cell logits on the same
forward pass (their maximum, and the mean of the top 5 cells, as localisation-supervised detectors such as
MVSS-Net pool their maps), and prints ROC-AUC with the paired bootstrap difference of the cell maximum minus the
classifier. --write puts the table into docs/benchmarks/default-detector.md under "## Mask head as a detector".
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import REPO, SETS, val_split, write_section
from PIL import Image

from fakescope.evaluation.metrics import compute_metrics, paired_difference
from fakescope.evaluation.robustness import PERTURBATIONS, SHORTCUT
from fakescope.inference.detector import Detector
from fakescope.registry import get_spec


def load(run: Path) -> tuple[Detector, torch.nn.Conv2d, dict]:
    """The run's detector, its mask head and a dict the head's input (the Grad-CAM layer's output) lands in."""
    det = Detector.load(str(run / "best.safetensors"), device="cpu")
    state = torch.load(run / "last.pt", weights_only=True, map_location="cpu")["model"]
    if "head.weight" not in state:
        raise SystemExit(f"{run / 'last.pt'}: no mask head in it (trained without --mask-loss?)")
    head = torch.nn.Conv2d(state["head.weight"].shape[1], 1, kernel_size=1)
    head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
    seen: dict = {}
    layer = get_spec(det.meta.architecture).target_layer
    det.model.get_submodule(layer).register_forward_hook(lambda m, i, out: seen.__setitem__("features", out))
    return det, head.eval(), seen


@torch.inference_mode()
def score(det: Detector, head: torch.nn.Conv2d, seen: dict, samples, perturbation: str | None,
          batch: int = 32) -> tuple[list[int], dict[str, list[float]]]:
    transform = PERTURBATIONS[perturbation] if perturbation else None
    labels: list[int] = []
    out: dict[str, list[float]] = {"classifier": [], "cell max": [], "top-5 cells": []}
    for i in range(0, len(samples), batch):
        chunk = samples[i:i + batch]
        arrays = []
        for s in chunk:
            with Image.open(s.path) as im:
                im = im.convert("RGB")
                arrays.append(det.prepare(transform(im) if transform else im))
        probs = det.probabilities(det.logits(np.stack(arrays)))
        cells = head(seen["features"].float()).flatten(1)
        labels += [s.label for s in chunk]
        out["classifier"] += probs.tolist()
        out["cell max"] += cells.max(1).values.tolist()
        out["top-5 cells"] += cells.topk(min(5, cells.shape[1]), 1).values.mean(1).tolist()
    return labels, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    det, head, seen = load(args.run)
    lines = ["| set | n (val) | classifier ROC-AUC | cell max | top-5 cells | cell max - classifier [95%] |",
             "|---|---|---|---|---|---|"]
    for name in SETS:
        samples = val_split(name)
        for label, perturbation in [(name, None)] + ([(f"{name}, shortcut test", SHORTCUT)] if name == "casia1" else []):
            y, s = score(det, head, seen, samples, perturbation)
            aucs = [compute_metrics(y, s[k])["roc_auc"] for k in s]
            d = paired_difference(y, s["cell max"], s["classifier"])
            lines.append(f"| {label} | {len(y)} | " + " | ".join(f"{a:.3f}" for a in aucs)
                         + f" | {d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] |")
            print(lines[-1], flush=True)
    run = args.run.resolve()
    shown = run.relative_to(REPO) if run.is_relative_to(REPO) else run  # the same from the repository root or bench/
    cmd = "python bench/mask_head.py " + " ".join(shlex.quote(str(shown) if a == str(args.run) else a)
                                                  for a in sys.argv[1:])
    text = (f"Run `{shown}` (mask loss {det.meta.info.get('config', {}).get('mask_loss')}). Command: `{cmd}` "
            f"({time.perf_counter() - t0:.0f} s here). Classifier: the detector's calibrated fake probability; cell "
            "max / top-5 cells: the maximum / the mean of the 5 highest cell logits of the training-only mask head on "
            "the same forward pass. Intervals: paired bootstrap, 1,000 draws.\n\n" + "\n".join(lines) + "\n")
    print("\n" + text)
    if args.write:
        write_section("Mask head as a detector", text)


if __name__ == "__main__":
    main()
