"""Shortcut baselines on each shared set, and a detector's ROC-AUC under the same shortcut tests.

    python bench/shortcuts.py [--model default ...] [--write]

Per set (seed 0, 20% validation: the split `fakescope train` holds out): the validation ROC-AUC of two model-free
baselines fitted on the training split (`fakescope.evaluation.shortcuts`): the file header's 4 numbers and the
pixels' 27 compression-history numbers (JPEG ghost curve and 8x8 blockiness), on the files as stored, after the
shortcut test (one JPEG q90 re-save from the pixels, metadata dropped) and after the resampled shortcut test (0.75x,
then the same re-save). Then each --model's ROC-AUC [95% bootstrap] on the validation split under the same three
conditions, and the paired bootstrap difference between its two shortcut tests: a detector that reads compression
history loses score when the resampling removes it. --write puts the tables into docs/benchmarks/shortcuts.md under
"## Shortcut baselines".
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time

from _common import SETS, train_val_split, write_section

from fakescope.evaluation.evaluate import score_samples
from fakescope.evaluation.metrics import compute_metrics, paired_difference, roc_auc_interval
from fakescope.evaluation.shortcuts import CONDITIONS, shortcut_baselines, shortcuts_markdown
from fakescope.inference.detector import Detector


def detector_rows(detector: Detector, name: str, val) -> list[str]:
    """One table row: the detector's ROC-AUC on the set's validation split under each condition, and the paired
    difference resampled minus one-re-save test."""
    scored = {}
    for condition, transform in CONDITIONS.items():
        labels, probs, failed = score_samples(detector, val, transform=transform)
        if failed:  # a missing image would unpair the conditions
            raise SystemExit(f"{len(failed)} validation images unreadable, first: {failed[0].path}: {failed[0].error}")
        scored[condition] = (labels, probs)
    cells = []
    for labels, probs in scored.values():
        lo, hi = roc_auc_interval(labels, probs)
        cells.append(f"{compute_metrics(labels, probs)['roc_auc']:.3f} [{lo:.2f}, {hi:.2f}]")
    (labels, once), (_, resampled) = list(scored.values())[1:]
    d = paired_difference(labels, resampled, once)
    return [detector.name, name, *cells, f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="detector to score under the same tests (repeatable; default: default)")
    ap.add_argument("--write", action="store_true", help="write the tables into docs/benchmarks/shortcuts.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    t0 = time.time()
    splits = {name: train_val_split(name) for name in SETS}
    baselines = []
    for name, (train, val) in splits.items():
        out = shortcut_baselines(train, val)
        if out["errors"]:
            raise SystemExit(f"unreadable images in {name}, first: {out['errors'][0]}")
        baselines.append(f"**{name}**\n\n{shortcuts_markdown(out['rows'])}")
        print(baselines[-1], flush=True)
    t_baselines = time.time() - t0
    header = ["detector", "set", *(f"ROC-AUC, {c}" for c in CONDITIONS), "resampled minus q90 test [95%, paired]"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in args.model or ["default"]:
        detector = Detector.load(model)
        for name, (_, val) in splits.items():
            rows.append("| " + " | ".join(detector_rows(detector, name, val)) + " |")
            print(rows[-1], flush=True)
    command = "python bench/shortcuts.py " + shlex.join(sys.argv[1:])
    body = (f"`{command.strip()}`: baselines {t_baselines:.0f} s, all {time.time() - t0:.0f} s.\n\n"
            "Model-free baselines fitted on each set's training split, validation ROC-AUC "
            "(`fakescope shortcuts --data SET` prints the same):\n\n" + "\n\n".join(baselines) +
            "\n\nDetectors on the same validation splits under the same conditions:\n\n" + "\n".join(rows) +
            "\n\nHow to read it: a baseline still high after a test means the test leaves that information in the files "
            "(the pixel numbers also see texture, so their figure bounds the compression shortcut from above); a detector "
            "whose ROC-AUC holds from the one-re-save test to the resampled one is not reading the compression history "
            "that the resampling removes.")
    print(body)
    if args.write:
        write_section("Shortcut baselines", body)


if __name__ == "__main__":
    main()
