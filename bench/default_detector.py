"""Accuracy of a (shipped) detector on the validation split of each shared set, robustness, shortcut and invariance.

    python bench/default_detector.py [--model default] [--write]

Per set: accuracy and the shares of reals flagged and of fakes caught at the shipped threshold, ROC-AUC and ECE on
the validation split (seed 0, 20%: the split `fakescope train` holds out),
ROC-AUC after JPEG q75 and after blur sigma 1, and the ECE a perfectly calibrated model would show on as many
images (the noise floor of the ECE); on casia1 also the shortcut test (every image re-saved once at JPEG
q90, metadata dropped), the resampled shortcut test (shrunk to 0.75x before that re-save) and each kind of tampering (splices from another image, copy-move) against the reals.
Then the invariance check: real validation images re-saved at JPEG 60/75/90/100 and rescaled to 0.5x/0.75x must
stay real (false-positive rate at the shipped threshold, over all sets and set by set), and the
reals flagged by a threshold chosen the same way on the other validation reals (cross-fitted, the honest estimate of
the false-alarm rate on unseen photos). --write puts the table into
docs/benchmarks/default-detector.md under "## Default detector". --baseline MODEL also scores another detector on the same images
and prints, per set, the paired bootstrap difference of ROC-AUC (and of the shortcut test on casia1): the way to
tell whether a candidate is better than the shipped default or within noise of it.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from _common import SETS, val_split, write_section

from fakescope.evaluation.evaluate import score_samples
from fakescope.evaluation.invariance import invariance_fpr
from fakescope.evaluation.metrics import (
    compute_metrics,
    ece_noise_floor,
    held_out_fpr,
    paired_difference,
    roc_auc_interval,
    tpr_at_fpr,
)
from fakescope.evaluation.robustness import PERTURBATIONS, SHORTCUT, SHORTCUT_RESAMPLED
from fakescope.inference.detector import Detector


def scores(detector: Detector, samples, perturbation: str | None = None) -> tuple[list[int], list[float]]:
    """Labels and fake probabilities in the order of ``samples``, so rows that read file names (:func:`casia_kinds`)
    and paired comparisons line up image by image; an unreadable file would shift them, so it stops the bench."""
    labels, probs, failed = score_samples(detector, samples,
                                          transform=PERTURBATIONS[perturbation] if perturbation else None)
    if failed:
        raise SystemExit(f"{len(failed)} validation images unreadable, first: {failed[0].path}: {failed[0].error}")
    return labels, probs


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def auc_cell(labels, probs) -> str:
    lo, hi = roc_auc_interval(labels, probs)
    return f"{compute_metrics(labels, probs)['roc_auc']:.3f} [{lo:.2f}, {hi:.2f}]"


#: Scores of one detector on one row's images: (samples, perturbation, labels, fake probabilities).
Scored = tuple[list, str | None, list[int], list[float]]


def trained_sets(detector: Detector) -> list[str]:
    """The shared sets the detector trained on (its checkpoint's ``data.path``), in the shared order."""
    names = {Path(p).name for p in detector.meta.info.get("data", {}).get("path", [])}
    return [name for name in SETS if name in names]


def score_rows(detector: Detector, sets: list[str]) -> dict[str, Scored]:
    """The detector's scores on the validation split of each of ``sets``, and on casia1's two shortcut tests,
    scored once each and shared by the table and the ``--baseline`` comparison."""
    scored: dict[str, Scored] = {}
    for name in sets:
        samples = val_split(name)
        for label, perturbation in [(name, None)] + (CASIA_TESTS if name == "casia1" else []):
            scored[label] = (samples, perturbation, *scores(detector, samples, perturbation))
    return scored


#: casia1's extra rows: the one-re-save shortcut test, and the resampled one that also removes the first
#: compression (which one re-save leaves readable: docs/benchmarks/shortcuts.md "Shortcut baselines").
CASIA_TESTS = [("casia1, shortcut test", SHORTCUT), ("casia1, resampled shortcut test", SHORTCUT_RESAMPLED)]


def set_row(detector: Detector, name: str, scored: dict[str, Scored]) -> list[str]:
    samples, _, labels, probs = scored[name]
    m = compute_metrics(labels, probs, detector.threshold)
    after = [compute_metrics(*scores(detector, samples, p))["roc_auc"] for p in ("jpeg q75", "blur sigma 1")]
    tests = [scored.get(f"{name}, {kind}") for kind in ("shortcut test", "resampled shortcut test")]
    return [name, str(m["n"]), fmt(m["accuracy"]), *rates(m), auc_cell(labels, probs), fmt(m["ece"]),
            fmt(ece_noise_floor(probs)), fmt(after[0]), fmt(after[1]),
            *(auc_cell(*t[2:]) if t else "-" for t in tests)]


def rates(m: dict) -> list[str]:
    """Share of the reals flagged and of the fakes caught at the shipped threshold."""
    return [fmt(1 - m["accuracy_real"]), fmt(m["accuracy_fake"])]


def invariance_by_set(detector: Detector, scored: dict[str, Scored], sets: list[str]) -> dict:
    """The invariance check on each set's validation reals, and over all of them (the same images, counted once)."""
    per_set = {name: invariance_fpr(detector, [s for s in scored[name][0] if s.label == 0]) for name in sets}
    n = sum(r["n_real"] for r in per_set.values())
    variants = next(iter(per_set.values()))["per_variant"]
    return {"n_real": n, "fpr": sum(r["fpr"] * r["n_real"] for r in per_set.values()) / n,
            "per_variant": {v: sum(r["per_variant"][v] * r["n_real"] for r in per_set.values()) / n for v in variants},
            "per_set": {name: r["fpr"] for name, r in per_set.items()}}


def held_out_by_set(detector: Detector, scored: dict[str, Scored], sets: list[str]) -> dict | None:
    """The reals flagged, set by set, by a threshold chosen as training chose the shipped one (the checkpoint's
    ``target_fpr`` on every set) but on the *other* validation reals (5-fold cross-fitted): the false-alarm rate to
    expect on unseen photos of these kinds, which the shipped threshold's own rate on its reals understates."""
    target = detector.meta.info.get("config", {}).get("target_fpr")
    if target is None:
        return None
    labels, probs, groups = [], [], []
    for name in sets:
        labels += scored[name][2]
        probs += scored[name][3]
        groups += [name] * len(scored[name][2])
    return {"target": target, **held_out_fpr(labels, probs, target, groups)}


#: CASIA v1.0's kinds of tampering, by file-name prefix of the fakes.
CASIA_KINDS = {"Sp_D": "spliced from another image", "Sp_S": "copy-move within one image"}


def casia_kinds(scored: dict[str, Scored]) -> str:
    """ROC-AUC of each kind of CASIA tampering against all of casia1's validation reals, on the images as they are
    and after the two shortcut tests: which kind holds the set back."""
    parts = []
    for label in ("casia1", *(label for label, _ in CASIA_TESTS)):
        samples, _, labels, probs = scored[label]
        reals = [p for y, p in zip(labels, probs) if y == 0]
        cells = []
        for prefix, kind in CASIA_KINDS.items():
            fakes = [p for s, y, p in zip(samples, labels, probs) if y == 1 and s.path.name.startswith(prefix)]
            if fakes:
                cells.append(f"{kind} (`{prefix}`, {len(fakes)}) "
                             f"{auc_cell([0] * len(reals) + [1] * len(fakes), reals + fakes)}")
        parts.append(f"{label}: " + "; ".join(cells))
    return ("CASIA by kind of tampering, ROC-AUC against the same validation reals: " + ". ".join(parts) + ".\n\n")


def compare(detector: Detector, scored: dict[str, Scored], baseline: Detector) -> str:
    """Per row of ``scored`` and over all three sets: ROC-AUC and the share of fakes caught at 5% false positives,
    of ``detector`` minus ``baseline`` on the same images (paired bootstrap 95% intervals)."""
    lines = [f"| set | ROC-AUC, {detector.name} - {baseline.name} | TPR at 5% FPR, {detector.name} - {baseline.name} |",
             "|---|---|---|"]
    every: tuple[list, list, list] = ([], [], [])  # labels, detector's and baseline's scores over all sets
    for label, (samples, perturbation, labels, a) in scored.items():
        _, b = scores(baseline, samples, perturbation)
        if perturbation is None:
            for whole, part in zip(every, (labels, a, b)):
                whole.extend(part)
        lines.append(difference_row(label, labels, a, b))
        print(lines[-1], flush=True)
    lines.append(difference_row("all three", *every))
    created = baseline.meta.info.get("created", "at an unrecorded date")
    return f"Against `{baseline.name}` (trained {created}, as its checkpoint records):\n\n" + "\n".join(lines)


def difference_row(label: str, labels, a, b) -> str:
    cells = [paired_difference(labels, a, b), paired_difference(labels, a, b, tpr_at_fpr)]
    return f"| {label} | " + " | ".join(f"{c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
                                        for c in cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--baseline", help="another detector to compare with, set by set (paired bootstrap)")
    ap.add_argument("--write", action="store_true", help="write the table into docs/benchmarks/default-detector.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    detector = Detector.load(args.model)
    t0 = time.time()
    sets = trained_sets(detector)
    scored = score_rows(detector, sets)
    rows = []
    for name in sets:
        rows.append(set_row(detector, name, scored))
        print(" | ".join(rows[-1]), flush=True)
    every = [(y, p) for name in sets for y, p in zip(*scored[name][2:])]
    labels, probs = [y for y, _ in every], [p for _, p in every]
    m = compute_metrics(labels, probs, detector.threshold)
    rows.append(["all three", str(m["n"]), fmt(m["accuracy"]), *rates(m), auc_cell(labels, probs), fmt(m["ece"]),
                 fmt(ece_noise_floor(probs)), "-", "-", "-", "-"])
    print(" | ".join(rows[-1]), flush=True)
    inv = invariance_by_set(detector, scored, sets)
    inv["held_out"] = held_out_by_set(detector, scored, sets)
    comparison = f"\n\n{compare(detector, scored, Detector.load(args.baseline))}" if args.baseline else ""
    body = report(detector, rows, inv, casia_kinds(scored), time.time() - t0) + comparison
    print(body)
    if args.write:
        write_section("Default detector", body)


def report(detector: Detector, rows: list[list[str]], inv: dict, kinds: str, seconds: float) -> str:
    per = ", ".join(f"{k} {v:.3f}" for k, v in inv["per_variant"].items())
    by_set = ", ".join(f"{k} {v:.3f}" for k, v in inv["per_set"].items())
    held = inv["held_out"]
    held_out = "" if held is None else (
        f"Reals flagged by a threshold chosen the same way (at most {held['target']:.0%} of each set's reals) but on "
        "the *other* validation reals, 5-fold cross-fitted: " +
        ", ".join(f"{k} {v:.3f}" for k, v in held["per_group"].items()) +
        f", all {held['fpr']:.3f}: the false-alarm rate to expect on unseen photos of these kinds.\n\n")
    table = "\n".join([
        "| set | n (val) | accuracy | reals flagged | fakes caught | ROC-AUC [95% bootstrap] | ECE | ECE floor | "
        "ROC-AUC after JPEG q75 | ROC-AUC after blur σ=1 | ROC-AUC, shortcut test | ROC-AUC, resampled shortcut test |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *["| " + " | ".join(r) + " |" for r in rows],
    ])
    command = "python bench/default_detector.py " + shlex.join(sys.argv[1:])
    return (f"Detector `{detector.name}` (threshold {detector.threshold:.2f}, temperature "
            f"{detector.meta.temperature:.2f}). Command: `{command}` ({seconds:.0f} s here).\n\n{table}\n\n"
            f"Invariance check on the {inv['n_real']} real validation images of all three sets: false-positive rate "
            f"**{inv['fpr']:.3f}** over all variants at the shipped threshold ({per}); by set: {by_set}.\n\n"
            f"{held_out}{kinds}"
            "Accuracy, reals flagged and fakes caught are at the shipped threshold. It is chosen on these same "
            "validation reals (training config `target_fpr`: at most that share of each set's reals flagged), so "
            "those columns and the invariance figure are optimistic for unseen photos (the cross-fitted rate above is not); ROC-AUC and ECE do not "
            "depend on the threshold. "
            "ROC-AUC intervals: percentile bootstrap over the images, resampled within each class (1,000 draws, "
            "seed 0). ECE floor: the median ECE of a perfectly calibrated model with these scores on this many "
            "images (labels drawn from the scores, `ece_noise_floor`); an ECE near it is within sampling noise. "
            "Issue 3's targets for the default are faces140k ROC-AUC >= 0.97, casia1 shortcut-free ROC-AUC >= 0.80, "
            "invariance false-positive rate <= 5% and ECE <= 0.05. Its shortcut test (one JPEG q90 re-save from the "
            "pixels) leaves CASIA's first compression readable; the resampled test shrinks to 0.75x first, which "
            "removes it ([Shortcut baselines](shortcuts.md#shortcut-baselines)).\n")


if __name__ == "__main__":
    main()
