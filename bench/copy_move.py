"""Copy-move evidence (fakescope.forensics.copymove) on every shared set: alone, and beside left-out detectors.

    python bench/copy_move.py [--runs RUNS ...] [--workers 2] [--calibration-reals 200] [--write]

Every image of the five shared sets is analysed once (inlier counts cached in runs/copy-move/inliers.json).

- Alone: each set's ROC-AUC of the inlier count (casia1 also by kind of tampering: copy-moves ``Sp_S`` and splices
  ``Sp_D`` against its reals), and the share of reals and of fakes with evidence, at the inlier count that at most 1%
  of the reals of the other four sets reach (so the set is left out of the cut as of the detectors).
- Speed: images per second of the shipped default's scan (``fakescope scan``: decode, ONNX Runtime when installed)
  with its copy-move check and with the check switched off, on the same images, in the same run.
- Beside left-out detectors: for each RUNS folder made by ``bench/held_out_sets.py``, each set's left-out ROC-AUC of
  the run's fake probability alone and with the copy-move evidence added as a detector that checks for it adds it
  (``fakescope.forensics.copymove.with_copy_move``, calibrated without casia1: the calibration line, fitted on
  reals of the other sets and a ``fakescope synth`` copy-move made from each, the constants in that module).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shlex
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from _common import REPO, SETS, data_root, write_section

from fakescope.checkpoint import read_meta
from fakescope.data.discovery import discover_samples
from fakescope.data.synth import SynthConfig, copy_move
from fakescope.evaluation.metrics import compute_metrics, roc_auc_interval
from fakescope.forensics.copymove import MIN_PAIRS, PRIOR, find_copy_move, with_copy_move
from fakescope.forensics.io import load_image
from fakescope.inference.detector import Detector
from fakescope.inference.scan import scan

INTRO = ("SIFT self-matching (`fakescope.forensics.copymove`, after Amerini et al., IEEE TIFS 2011) on every image of "
         "the shared sets, at the default detector's 320 x 320 input: the keypoint pairs (each place once) one affine "
         "transform stretching at most 2x maps onto each other (inliers). First alone: each set's ROC-AUC of the "
         "inlier count, and the share of reals and fakes at or above the count that at most 1% of the other four "
         "sets' reals reach. Then the calibration of its "
         "evidence, the scan speed of the shipped default with and without the check, and the left-out ROC-AUC of "
         "earlier runs of bench/held_out_sets.py with the evidence added as the shipped default adds it "
         "(`with_copy_move`: 1 - (1 - p)(1 - q), q = 0 under 4 pairs); those runs' recipes never checked for "
         "copy-moves, so the first number of each cell is the model alone. Cameras flagged: at the run's own "
         "threshold.")

#: Share of the other sets' reals allowed to reach the cut of the "alone" table.
FALSE_ALARMS = 0.01


def inliers_of(path: str) -> int:
    return find_copy_move(np.asarray(load_image(path))).inliers


def all_inliers(workers: int, cache: Path) -> dict[str, tuple[int, int]]:
    """{path: (label, inliers)} of every image of the shared sets, cached in ``cache``."""
    known = {k: tuple(v) for k, v in json.loads(cache.read_text()).items()} if cache.exists() else {}
    samples = [s for name in SETS for s in discover_samples(data_root() / name)]
    todo = [s for s in samples if str(s.path) not in known]
    if todo:
        with ProcessPoolExecutor(workers) as pool:
            for s, n in zip(todo, pool.map(inliers_of, [str(s.path) for s in todo], chunksize=16)):
                known[str(s.path)] = (s.label, n)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    return {str(s.path): known[str(s.path)] for s in samples}


def copied_inliers(path: str) -> int:
    """Inliers of a copy-move made by ``fakescope synth`` from the real image at ``path`` (seeded by its name)."""
    img = np.asarray(load_image(path))
    rng = np.random.default_rng(zlib.crc32(Path(path).name.encode()))
    return find_copy_move(copy_move(img, rng, SynthConfig(kind="copy-move")).image).inliers


def calibration(data: dict[str, tuple[int, int]], workers: int, per_set: int, cache: Path) -> str:
    """Fit :data:`~fakescope.forensics.copymove.SLOPE` and ``INTERCEPT``: a logistic regression of "a copy was
    pasted" on log(1 + pairs) over the images with ``MIN_PAIRS`` or more, from reals of every set but casia1 (which
    stays unseen) and a synthetic copy-move made from each, shifted from the balanced classes to a prior of
    ``PRIOR``."""
    from sklearn.linear_model import LogisticRegression

    reals = []
    for name in (s for s in SETS if s != "casia1"):
        pool = [p for p, (label, _) in data.items() if label == 0 and set_of(p) == name]
        reals += random.Random(0).sample(pool, min(per_set, len(pool)))
    known = json.loads(cache.read_text()) if cache.exists() else {}
    todo = [p for p in reals if p not in known]
    if todo:
        with ProcessPoolExecutor(workers) as pool:
            for p, n in zip(todo, pool.map(copied_inliers, todo, chunksize=16)):
                known[p] = n
        cache.write_text(json.dumps(known))
    n_real, n_copy = np.asarray([data[p][1] for p in reals]), np.asarray([known[p] for p in reals])
    r, c = n_real[n_real >= MIN_PAIRS], n_copy[n_copy >= MIN_PAIRS]
    fit = LogisticRegression(C=1e6).fit(np.log1p(np.concatenate([r, c]))[:, None],
                                        np.r_[np.zeros(len(r)), np.ones(len(c))])
    slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0]) + float(np.log(PRIOR / (1 - PRIOR)))
    return (f"{len(reals)} reals (up to {per_set} of each set but casia1) and a synthetic copy-move of each; "
            f"{MIN_PAIRS} pairs or more: {np.mean(n_real >= MIN_PAIRS):.3f} of the reals, "
            f"{np.mean(n_copy >= MIN_PAIRS):.3f} of the copies. SLOPE, INTERCEPT = {slope:.3f}, {intercept:.3f}")


def set_of(path: str) -> str:
    return Path(path).parents[1].name


def auc_text(y: np.ndarray, p: np.ndarray) -> str:
    lo, hi = roc_auc_interval(y, p)
    return f"{compute_metrics(y, p)['roc_auc']:.3f} [{lo:.2f}, {hi:.2f}]"


def other_reals(data: dict[str, tuple[int, int]], left_out: str) -> np.ndarray:
    return np.asarray([n for p, (y, n) in data.items() if y == 0 and set_of(p) != left_out])


def alone_table(data: dict[str, tuple[int, int]]) -> str:
    rows = []
    for name in SETS:
        items = {p: v for p, v in data.items() if set_of(p) == name}
        reference = other_reals(data, name)
        cut = next(c for c in range(int(reference.max()) + 2) if np.mean(reference >= c) <= FALSE_ALARMS)
        groups = [(name, items)]
        if name == "casia1":
            groups += [(f"casia1, {kind} only", {p: v for p, v in items.items() if v[0] == 0 or Path(p).name.startswith(kind)})
                       for kind in ("Sp_S", "Sp_D")]
        for label, group in groups:
            y, n = (np.asarray(v) for v in zip(*group.values()))
            auc = auc_text(y, n) if len(set(y.tolist())) == 2 else "-"
            caught = f"{np.mean(n[y == 1] >= cut):.3f}" if (y == 1).any() else "-"
            rows.append(f"| {label} | {len(y)} | {auc} | {cut} | {np.mean(n[y == 0] >= cut):.3f} | {caught} |")
    return ("| set | images | ROC-AUC of the inlier count [95%] | cut (inliers) | reals at or above | fakes at or above |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows))


def speed(paths: list[str], workers: int) -> str:
    """Images per second of the shipped default's scan with its copy-move check and with the check switched off,
    on the same images, one after the other, each timed twice (the better kept)."""
    checked = Detector.load("default", backend="auto")
    if not checked.checks_copy_moves:
        raise SystemExit("the shipped default does not check for copy-moves (info['copy_move'])")
    unchecked = Detector.load("default", backend="auto")
    unchecked.meta = dataclasses.replace(unchecked.meta, info={**unchecked.meta.info, "copy_move": False})
    rates: dict[str, float] = {}
    for detector in (checked, unchecked):
        list(scan(paths[:8], detector, workers=workers))  # warm-up: ONNX session, worker start
    for _ in range(2):
        for name, detector in (("checked", checked), ("unchecked", unchecked)):
            t0 = time.perf_counter()
            list(scan(paths, detector, workers=workers))
            rates[name] = max(rates.get(name, 0.0), len(paths) / (time.perf_counter() - t0))
    return (f"Scanning {len(paths)} images of the five sets ({workers} decode workers, {checked.kind} backend): the "
            f"default with its copy-move check {rates['checked']:.1f} images/s, with the check switched off "
            f"{rates['unchecked']:.1f} images/s ({rates['checked'] / rates['unchecked']:.2f}x).")


def left_out_scores(run: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """(labels, fake probabilities, inlier counts, threshold) of a run's cached scores on the set it left out."""
    cache = run / f"without-{name}" / f"scores-{name}.json"
    if not cache.exists():
        return None
    scores = json.loads(cache.read_text())
    return (np.asarray([v[0] for v in scores.values()]), np.asarray([v[1] for v in scores.values()], dtype=float),
            np.asarray(list(scores)), read_meta(cache.parent / "best.safetensors").threshold)


def beside_table(data: dict[str, tuple[int, int]], runs: list[Path]) -> str:
    rows = []
    for run in runs:
        cells, alone, both = [], [], []
        for name in [s for s in SETS if s != "cameras"]:
            found = left_out_scores(run, name)
            if found is None:
                cells.append("-")
                continue
            y, p, paths, _ = found
            q = with_copy_move(p, np.asarray([data[k][1] for k in paths]))
            a, b = compute_metrics(y, p)["roc_auc"], compute_metrics(y, q)["roc_auc"]
            alone.append(a)
            both.append(b)
            cells.append(f"{a:.3f} -> {b:.3f}")
        mean = f"{np.mean(alone):.3f} -> {np.mean(both):.3f} ({len(alone)})" if alone else "-"
        cameras = left_out_scores(run, "cameras")
        if cameras is None:
            flagged = "-"
        else:
            _, p, paths, threshold = cameras
            q = with_copy_move(p, np.asarray([data[k][1] for k in paths]))
            flagged = f"{np.mean(p >= threshold):.1%} -> {np.mean(q >= threshold):.1%}"
        rows.append(f"| {run.name} | " + " | ".join(cells) + f" | {mean} | {flagged} |")
    return ("| left-out runs | casia1 | faces140k | diffusiondb | wildfaces | mean (sets) | cameras flagged |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", type=Path, default=[], metavar="RUNS",
                    help="run folders of bench/held_out_sets.py whose cached left-out scores are combined")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--speed-images", type=int, default=200)
    ap.add_argument("--calibration-reals", type=int, default=200, metavar="N",
                    help="reals of each set but casia1 (and a copy-move made from each) the calibration is fitted on")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    data = all_inliers(args.workers, REPO / "runs" / "copy-move" / "inliers.json")
    sample = sorted(data)[:: max(1, len(data) // args.speed_images)][: args.speed_images]
    parts = [INTRO, alone_table(data),
             "Calibration (the constants in `fakescope.forensics.copymove`): " +
             calibration(data, args.workers, args.calibration_reals, REPO / "runs" / "copy-move" / "copies.json") + ".",
             speed(sample, args.workers)]
    if args.runs:
        parts.append(beside_table(data, args.runs))
    command = "python bench/copy_move.py " + shlex.join(sys.argv[1:])
    text = f"Command: `{command}` ({time.time() - t0:.0f} s here).\n\n" + "\n\n".join(parts)
    print(text)
    if args.write:
        write_section("Copy-move evidence", text)


if __name__ == "__main__":
    main()
