"""Ensembles against their members on the three shared sets and on the CASIA shortcut test.

    python bench/ensembles.py [--per-class 80] [--test-per-class 100] [--epochs 3] [--write]

1. A pool of ``--per-class`` real and fake images per set is drawn from each set's *training* split (seed 0, 20%
   held out, scene-group aware) and linked into a temporary folder (nothing is copied).
2. Three small members are trained on the pool with ``fakescope.engine.train.fit`` (``--epochs`` epochs, no
   augmentation, torch threads 1): ela-cnn (ELA, 128 px, Adam 1e-4), resnet18 (RGB, 64 px, Adam 1e-3, no ImageNet
   weights: none are available offline) and scratch-cnn (ELA, 64 px, Adam 1e-4).
3. Weights and stackers are fitted on the pool's validation split (the members' own held-out 20%).
4. Everything is scored on each set's validation split (the images ``fakescope train`` holds out, never in the
   pool), at most ``--test-per-class`` per class, and on the shortcut test: the same CASIA images re-saved once at
   JPEG q90 with no metadata.

``--write`` replaces the "## Ensembles" section of docs/benchmarks/ensembles.md.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import SETS, data_root, val_split, write_section

from fakescope.config import TrainConfig
from fakescope.data.discovery import Sample, discover_samples
from fakescope.data.splits import stratified_split
from fakescope.engine.train import fit
from fakescope.ensemble.combine import Combiner
from fakescope.ensemble.fit import score_members, validation_samples
from fakescope.evaluation.metrics import compute_metrics
from fakescope.evaluation.robustness import jpeg
from fakescope.inference.detector import Detector
from fakescope.inference.kinds.ensemble import EnsembleDetector

SHORTCUT = partial(jpeg, quality=90)  # the shortcut test: one JPEG quality, pixels only (no metadata)
MEMBERS = (("ela-cnn", None, 1e-4), ("resnet18", 64, 1e-3), ("scratch-cnn", 64, 1e-4))  # name, size, Adam lr
METHODS = {  # label -> Combiner keyword arguments
    "mean": {"method": "mean"},
    "majority": {"method": "majority"},
    "weighted (val. accuracy)": {"method": "weighted"},
    "stacking (probabilities)": {"method": "stacking", "n_components": 3},
    "stacking (+ features)": {"method": "stacking", "features": True, "n_components": 16},
}


def per_class(samples: list[Sample], n: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for label in (0, 1):
        of_class = [s for s in samples if s.label == label]
        rng.shuffle(of_class)
        out += of_class[:n]
    return out


def make_pool(work: Path, n: int) -> list[Path]:
    """Symlink ``n`` images per class of each set's training split into ``work/pool/<set>/{real,fake}``."""
    dirs = []
    for name in SETS:
        train = stratified_split(discover_samples(data_root() / name), 0.2, 0)[0]
        for s in per_class(train, n, seed=1):
            link = work / "pool" / name / ("fake" if s.label else "real") / s.path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(s.path.resolve())
        dirs.append(work / "pool" / name)
    return dirs


def train_member(name: str, size: int | None, lr: float, pool: list[Path], work: Path, epochs: int) -> Path:
    cfg = TrainConfig(epochs=epochs, batch_size=32, patience=epochs, seed=0, out=str(work / "runs" / name))
    cfg.data.path, cfg.data.workers, cfg.data.cache_dir = [str(p) for p in pool], 1, str(work / "cache")
    cfg.model.name, cfg.model.size = name, size
    cfg.optim.lr, cfg.optim.schedule = lr, "none"
    cfg.augment.enabled = False
    return fit(cfg).checkpoint


def cell(m: dict) -> str:
    auc = "-" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
    return f"{m['accuracy']:.3f} / {auc}"


def evaluate_all(ensemble: EnsembleDetector, combiners: dict[str, Combiner], test_per_class: int) -> dict:
    """(model label -> condition -> metrics) for the members and every fitted combiner."""
    conditions = [(s, s, None) for s in SETS] + [("casia1", "casia1 shortcut test", SHORTCUT)]
    table: dict[str, dict[str, dict]] = {}
    for set_name, label, transform in conditions:
        samples = per_class(val_split(set_name), test_per_class, seed=2)
        scores = score_members(ensemble, samples, workers=1, transform=transform)
        for i, member in enumerate(ensemble.members):
            table.setdefault(member.name, {})[label] = compute_metrics(scores.labels, scores.probs[:, i],
                                                                       member.threshold)
        for name, combiner in combiners.items():
            table.setdefault(f"ensemble: {name}", {})[label] = compute_metrics(
                scores.labels, combiner.predict(scores.probs, scores.feats), 0.5)
        print(f"scored {label}: {len(scores.labels)} images", flush=True)
    return table


def markdown(table: dict, args: argparse.Namespace, seconds: dict[str, float], n_val: int) -> str:
    conditions = list(next(iter(table.values())))
    lines = ["| model | " + " | ".join(conditions) + " |", "|---|" + "---|" * len(conditions)]
    lines += [f"| {model} | " + " | ".join(cell(row[c]) for c in conditions) + " |" for model, row in table.items()]
    n = {c: next(iter(table.values()))[c]["n"] for c in conditions}
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    return "\n".join([
        (f"Command: `python bench/ensembles.py --per-class {args.per_class} --test-per-class {args.test_per_class} "
         f"--epochs {args.epochs} --write` (torch threads 1, 1 data worker; budget ~10 minutes on 2 shared cores: "
         f"{timing})."),
        "",
        (f"Members trained on {args.per_class} real + {args.per_class} fake images per set from the training "
         f"splits ({args.epochs} epochs, no augmentation, Adam): ela-cnn 128 px (lr 1e-4), resnet18 64 px from "
         f"random init (lr 1e-3), scratch-cnn 64 px (lr 1e-4). Weights and stackers fitted on the members' "
         f"validation split ({n_val} images). Cells: accuracy / ROC-AUC on each set's held-out validation split "
         f"(n = {', '.join(f'{k} {v}' for k, v in n.items())}); the shortcut test re-saves the same CASIA images "
         "once at JPEG q90 with no metadata."),
        "",
        *lines,
        "",
        *summary(table, conditions),
    ])


def summary(table: dict, conditions: list[str]) -> list[str]:
    """Best member against best ensemble per column (ROC-AUC), and a warning when the members are weak."""
    def best(prefix_is_ensemble: bool, c: str) -> tuple[str, float]:
        rows = [(m, r[c]["roc_auc"] or 0.0) for m, r in table.items() if m.startswith("ensemble") == prefix_is_ensemble]
        return max(rows, key=lambda x: x[1])

    out = []
    for c in conditions:
        (bm, ba), (be, ea) = best(False, c), best(True, c)
        out.append(f"- {c}: best member {bm} {ba:.3f}, best ensemble {be.removeprefix('ensemble: ')} {ea:.3f} "
                   f"({ea - ba:+.3f}).")
    if max(best(False, c)[1] for c in conditions) < 0.75:
        out.append("- The members are weak (every ROC-AUC below 0.75): with a few hundred training images and "
                   "minutes of CPU this table exercises the ensembling, it does not rank the methods; differences "
                   "of a few hundredths are within the noise of 200 test images.")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=80, help="pool images per class and set (training + ensemble fit)")
    ap.add_argument("--test-per-class", type=int, default=100, help="test images per class and set")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write the table into docs/benchmarks/ensembles.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fakescope-ensembles-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        pool = make_pool(work, args.per_class)
        ckpts = [train_member(name, size, lr, pool, work, args.epochs) for name, size, lr in MEMBERS]
        seconds["training"] = time.perf_counter() - t0
        members = [Detector.load(str(c), device="cpu") for c in ckpts]
        for m, (name, size, _) in zip(members, MEMBERS):
            m.name = name if size is None else f"{name} {size}px"
        thresholds = [m.threshold for m in members]
        ensemble = EnsembleDetector(members, Combiner("stacking", thresholds, features=True), device="cpu")
        t0 = time.perf_counter()
        val = score_members(ensemble, validation_samples(pool), workers=1)
        combiners = {label: Combiner(thresholds=thresholds, **kw).fitted(val.probs, val.feats, val.labels)
                     for label, kw in METHODS.items()}
        print("weights from validation accuracy:", np.round(combiners["weighted (val. accuracy)"].weights, 3))
        table = evaluate_all(ensemble, combiners, args.test_per_class)
        seconds["fitting and scoring"] = time.perf_counter() - t0
    text = markdown(table, args, seconds, len(val.labels))
    print(text)
    if args.write:
        write_section("Ensembles", text)


if __name__ == "__main__":
    main()
