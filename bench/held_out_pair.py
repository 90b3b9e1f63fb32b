"""Two recipes' left-out runs, paired on every image of the set each never saw.

    python bench/held_out_pair.py RUNS BASELINE_RUNS [--leave-out SET ...]

RUNS and BASELINE_RUNS are folders of ``without-SET`` runs as `bench/held_out_sets.py` makes them (one recipe each,
e.g. before and after a change to configs/default.yaml); neither is trained here. For each left-out set both models
score every image of it (casia1 also after the shortcut test), and the ROC-AUC difference RUNS - BASELINE_RUNS gets a
paired bootstrap 95% interval over those images: more images than the validation split, so a tighter interval on
the question whether a recipe change carries to a kind of fake neither model saw.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from _common import SETS, data_root
from held_out_sets import rows_of, scores, shown

from fakescope.data.discovery import discover_samples
from fakescope.evaluation.metrics import compute_metrics, paired_difference
from fakescope.inference.detector import Detector


def paired_rows(name: str, model: Detector, baseline: Detector) -> list[str]:
    samples = discover_samples(data_root() / name)
    rows = []
    for label, perturbation in rows_of(name):
        labels, ours = scores(model, samples, perturbation)
        _, theirs = scores(baseline, samples, perturbation)
        d = paired_difference(labels, ours, theirs)
        rows.append(f"| {label} | {len(labels)} | {compute_metrics(labels, theirs)['roc_auc']:.3f} | "
                    f"{compute_metrics(labels, ours)['roc_auc']:.3f} | "
                    f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="folder of the without-SET runs to compare")
    ap.add_argument("baseline_runs", type=Path, help="folder of the without-SET runs to compare with")
    ap.add_argument("--leave-out", nargs="+", choices=SETS, default=list(SETS), metavar="SET")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    t0 = time.time()
    rows = []
    for name in args.leave_out:
        model, baseline = (Detector.load(str(folder / f"without-{name}" / "best.safetensors"))
                           for folder in (args.runs, args.baseline_runs))
        rows += paired_rows(name, model, baseline)
    print(f"\n{shown(args.runs)} against {shown(args.baseline_runs)}, every image of the set each never saw "
          f"({time.time() - t0:.0f} s):\n")
    print(f"| set never seen | n | ROC-AUC, {shown(args.baseline_runs)} | ROC-AUC, {shown(args.runs)} | "
          "difference [paired 95%] |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
