"""Test-time averaging: does scoring each image more than once (mirrored, or at a larger input) help a detector?

    python bench/tta.py [--model default] [--size 384] [--write]

For each set's validation split (and casia1's shortcut test) the detector scores every image as it is, mirrored
left to right, and squashed to ``--size`` instead of its own input size; the table gives ROC-AUC for each and for
the averages (plain + mirrored, plain + larger), and the paired bootstrap difference of each average minus the
plain score on the same images. An average that gains nothing is not worth its 2x scan time. ``--write`` puts the
table under "## Test-time averaging" in docs/benchmarks/default-detector.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import time

import numpy as np
from _common import SETS, val_split, write_section
from PIL import ImageOps
from torchvision.transforms import v2

from fakescope.evaluation.evaluate import score_samples
from fakescope.evaluation.metrics import compute_metrics, paired_difference
from fakescope.evaluation.robustness import PERTURBATIONS, SHORTCUT
from fakescope.inference.detector import Detector


def at_size(detector: Detector, size: int) -> Detector:
    """The same weights and calibration with the input squashed to ``size`` x ``size``."""
    meta = dataclasses.replace(detector.meta, preprocess=dataclasses.replace(detector.preprocess, size=size))
    return Detector(detector.model, meta, f"{detector.name}@{size}", device=str(detector.device))


def mirrored(perturbation):
    """``perturbation`` (or nothing), then a left-right mirror; picklable for scan's workers."""
    return ImageOps.mirror if perturbation is None else v2.Compose([perturbation, ImageOps.mirror])


def row(label: str, detector: Detector, larger: Detector, samples, perturbation) -> str:
    transform = PERTURBATIONS[perturbation] if perturbation else None
    labels, plain, _ = score_samples(detector, samples, transform=transform)
    _, flip, _ = score_samples(detector, samples, transform=mirrored(transform))
    _, big, _ = score_samples(larger, samples, transform=transform)
    plain, flip, big = (np.asarray(p) for p in (plain, flip, big))
    variants = {"plain": plain, "mirrored": flip, "larger": big, "plain + mirrored": (plain + flip) / 2,
                "plain + larger": (plain + big) / 2}
    cells = [f"{compute_metrics(labels, list(p))['roc_auc']:.3f}" for p in variants.values()]
    for name in ("plain + mirrored", "plain + larger"):
        d = paired_difference(labels, variants[name], plain)
        cells.append(f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    line = f"| {label} | " + " | ".join(cells) + " |"
    print(line, flush=True)
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--size", type=int, default=384, help="the larger input side to try (default 384)")
    ap.add_argument("--write", action="store_true", help="write the table into docs/benchmarks/default-detector.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    detector = Detector.load(args.model)
    larger = at_size(detector, args.size)
    t0 = time.time()
    size = detector.preprocess.size
    lines = [f"| set | ROC-AUC at {size} px | mirrored | at {args.size} px | plain + mirrored | "
             f"plain + {args.size} px | plain + mirrored minus plain [95%] | plain + {args.size} px minus plain [95%] |",
             "|---|---|---|---|---|---|---|---|"]
    for name in SETS:
        samples = val_split(name)
        lines.append(row(name, detector, larger, samples, None))
        if name == "casia1":
            lines.append(row(f"{name}, shortcut test", detector, larger, samples, SHORTCUT))
    command = "python bench/tta.py " + shlex.join(sys.argv[1:])
    body = (f"Detector `{detector.name}`. Command: `{command}` ({time.time() - t0:.0f} s here). Validation splits as in "
            "\"Default detector\"; averages are of calibrated fake probabilities; intervals are paired bootstrap "
            "(1,000 draws).\n\n" + "\n".join(lines) + "\n")
    print(body)
    if args.write:
        write_section("Test-time averaging", body)


if __name__ == "__main__":
    main()
