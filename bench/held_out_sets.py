"""Leave one source out: a recipe trained without one of the shared sets, scored on the set it never saw.

    python bench/held_out_sets.py [--recipe configs/default.yaml] [--runs runs/held-out] [--leave-out SET ...]
                                  [--set KEY=VALUE ...] [--exclude SET ...] [--baseline default] [--write]
    python bench/held_out_sets.py --ensemble RUNS RUNS [...] [--leave-out SET ...]

For each shared source (casia1, faces140k, diffusiondb, wildfaces and the real-only cameras, or those named by
--leave-out) the recipe is trained on all the others into RUNS/without-SET, and (for the whole table) once on all of
them into RUNS/all, unless the run exists already with that recipe (a run saved with another recipe stops the bench,
naming the differing options); ``--set`` changes config keys of the recipe for every run (a budget probe without a new
recipe file); ``--exclude`` keeps sources out of every run (the recipe without them; in the whole table the run on
all the others is scored on them as on a left-out set). Each left-out model is scored on every image of the set it
never saw: ROC-AUC with a bootstrap interval, the share of its reals flagged and of its fakes caught at the threshold it
chose on the other sets, its ECE there, the share of the set it calls unfamiliar, the shares of its reals and fakes
labelled uncertain (unfamiliar and undecided) and its ROC-AUC on the familiar part; on cameras, which has no
fakes, the share flagged. The mean left-out ROC-AUC over the sets with fakes is the number a default is chosen by.
``--baseline`` (a checkpoint or registry name, default: the shipped default) is scored beside it on the sets it
never trained on. Each run is also scored on the validation splits of the sets it trained on (its own splits, as
``fakescope train`` made them), and the run on all sets gives the in-set table. Scores are cached beside each run
(scores-SET.json), so re-running for --write scores nothing again. --write puts the tables into the benchmark page.

``--ensemble`` trains and scores nothing: it reads the cached left-out scores of run folders made by this bench and
prints each set's ROC-AUC of their ``mean`` ensemble (fakescope's ``Combiner("mean")``: the mean fake probability),
the ensemble of those recipes on the same left-out table.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, SETS, data_root, write_section

from fakescope.checkpoint import read_meta
from fakescope.config import TrainConfig, config_differences, load_config, parse_dotted_args
from fakescope.data.discovery import Sample, discover_samples
from fakescope.engine.familiarity import add_familiarity, describable
from fakescope.engine.train import fit, folder_splits
from fakescope.ensemble.combine import Combiner
from fakescope.evaluation.metrics import compute_metrics, familiarity_metrics, roc_auc_interval
from fakescope.familiarity import familiar
from fakescope.inference.detector import Detector
from fakescope.inference.scan import scan

#: ROC-AUC on every image of each set, left out of the previous recipe (EfficientNet-Lite2, three sets), from the
#: "Held-out sets" table of docs/benchmarks/held-out.md as it stood before the five-source bench.
PREVIOUS_RECIPE = {"casia1": 0.566, "faces140k": 0.617, "diffusiondb": 0.491}


def run_config(left_out: str | None, runs: Path, recipe: Path, changes: dict[str, Any] | None = None,
               exclude: tuple[str, ...] = ()) -> TrainConfig:
    out = runs / (f"without-{left_out}" if left_out else "all")
    paths = [str(data_root() / s) for s in SETS if s != left_out and s not in exclude]
    overrides = {**(changes or {}), "data.path": paths, "out": str(out)}
    cfg = load_config(recipe, overrides)
    if left_out == "casia1" and not cfg.data.pseudo_fakes:
        cfg.mask_loss = 0.0  # no other set has tampering masks
    return cfg


def train_without(left_out: str | None, runs: Path, recipe: Path, changes: dict[str, Any] | None = None,
                  exclude: tuple[str, ...] = ()) -> tuple[Path, TrainConfig]:
    """The recipe (with ``changes``, config keys) on every shared set but ``left_out`` (None: all of them); an
    existing run with the same recipe is reused. The checkpoint gets its familiarity description if it has none (runs
    trained before it existed)."""
    cfg = run_config(left_out, runs, recipe, changes, exclude)
    out = Path(cfg.out)
    checkpoint = out / "best.safetensors"
    if (out / "config.yaml").exists():
        differ = config_differences(load_config(out / "config.yaml"), cfg, ignore=("out", "resume"))
        if differ:
            raise SystemExit(f"{out}: trained with another recipe than {recipe} ({'; '.join(differ)}); "
                             "move it away to retrain, or pass --runs with runs of this recipe")
    if not (out / "metrics.json").exists():  # written when a run finishes; an interrupted one resumes
        if (out / "last.pt").exists():
            cfg.resume = str(out / "last.pt")
        print(f"training {'without ' + left_out if left_out else 'on all sets'} into {out}", flush=True)
        fit(cfg, on_epoch=lambda r: print(f"  epoch {r['epoch']} val auc {r['val_roc_auc']:.3f} {r['seconds']:.0f}s",
                                          flush=True))
    if "familiarity" not in read_meta(checkpoint).info:
        detector = Detector.load(str(checkpoint), device="cpu")
        if describable(detector.model, detector.preprocess):  # a patch detector has none
            add_familiarity(checkpoint, folder_splits(cfg), per_cell=120, detector=detector)
    return checkpoint, cfg


def scored(detector: Detector, samples: list[Sample], cache: Path) -> dict[str, tuple[int, float, float | None]]:
    """{path: (label, fake probability, familiarity)} of ``samples``, cached in ``cache``."""
    known = json.loads(cache.read_text()) if cache.exists() else {}
    todo = [s for s in samples if str(s.path) not in known]
    if todo:
        labels = {str(s.path): s.label for s in todo}
        for r in scan([s.path for s in todo], detector):
            if r.error is not None:
                raise SystemExit(f"{r.path}: {r.error}")
            known[r.path] = (labels[r.path], r.fake_probability, r.familiarity)
        cache.write_text(json.dumps(known))
    return {str(s.path): tuple(known[str(s.path)]) for s in samples}


def columns(rows: list[tuple[int, float, float | None]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, p, f = zip(*rows)
    return np.asarray(y), np.asarray(p), np.asarray([np.nan if v is None else v for v in f], dtype=float)


def auc_text(y: np.ndarray, p: np.ndarray) -> str:
    if len(set(y.tolist())) < 2:
        return "-"
    lo, hi = roc_auc_interval(y, p)
    return f"{compute_metrics(y, p)['roc_auc']:.3f} [{lo:.2f}, {hi:.2f}]"


def left_out_row(name: str, rows: list, threshold: float) -> tuple[str, float | None]:
    """One table row for a set the model never saw, and its ROC-AUC (None for a real-only set)."""
    y, p, f = columns(rows)
    flagged = float(np.mean(p[y == 0] >= threshold)) if (y == 0).any() else float("nan")
    caught = float(np.mean(p[y == 1] >= threshold)) if (y == 1).any() else float("nan")
    fam = familiarity_metrics(y, p, [None if np.isnan(v) else v for v in f], threshold)
    described = fam["unfamiliar"] is not None
    known = familiar(f)
    uncertain = " / ".join("-" if v is None else f"{v:.3f}" for v in (fam["uncertain_real"], fam["uncertain_fake"]))
    familiar_auc = auc_text(y[known], p[known]) if fam["roc_auc_familiar"] is not None else "-"
    auc = compute_metrics(y, p)["roc_auc"] if len(set(y.tolist())) == 2 else None
    ece = compute_metrics(y, p, threshold)["ece"]
    cells = [name, f"{auc_text(y, p)} ({len(y)})", f"{flagged:.3f} / {caught:.3f}".replace("nan", "-"),
             f"{ece:.3f}", f"{fam['unfamiliar']:.3f}" if described else "-", uncertain if described else "-",
             familiar_auc]
    return " | ".join(cells), auc


def in_set_cell(detector: Detector, val: list[Sample], name: str, cache_dir: Path) -> str:
    """Validation ROC-AUC (or reals flagged, for a real-only set) of a run on a set it trained on; ``val`` is that
    set's validation split as the run made it."""
    y, p, _ = columns(list(scored(detector, val, cache_dir / f"scores-val-{name}.json").values()))
    if len(set(y.tolist())) < 2:
        return f"{np.mean(p >= detector.threshold):.3f} flagged"
    m = compute_metrics(y, p, detector.threshold)
    return f"{m['roc_auc']:.3f} ({1 - m['accuracy_real']:.3f})"


def ensemble_table(runs: list[Path], names: list[str]) -> str:
    """ROC-AUC on each left-out set of the mean ensemble of the runs' models trained without it (cached scores)."""
    rows, aucs = [], []
    for name in names:
        caches = [run / f"without-{name}" / f"scores-{name}.json" for run in runs]
        if missing := [str(c) for c in caches if not c.exists()]:
            raise SystemExit(f"no cached left-out scores: {', '.join(missing)} (run the bench on that run folder first)")
        members = [json.loads(c.read_text()) for c in caches]
        paths = sorted(set.intersection(*(set(m) for m in members)))
        y = columns([members[0][p] for p in paths])[0]
        probs = np.stack([columns([m[p] for p in paths])[1] for m in members], axis=1)  # (images, runs)
        p = Combiner("mean", np.full(len(runs), 0.5)).predict(probs)
        aucs.append(compute_metrics(y, p)["roc_auc"])
        rows.append(f"| {name} | {auc_text(y, p)} ({len(y)}) |")
    return (f"Mean ensemble of {', '.join(str(r) for r in runs)}: **mean left-out ROC-AUC {np.mean(aucs):.3f}**\n\n"
            "| set never seen in training | ROC-AUC [95%] (images) |\n|---|---|\n" + "\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=REPO / "configs" / "default.yaml")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "held-out", help="folder of the runs")
    ap.add_argument("--leave-out", nargs="+", choices=SETS, default=list(SETS), metavar="SET")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change one config key of the recipe for every run (repeatable), e.g. data.max_per_class=500")
    ap.add_argument("--exclude", nargs="+", choices=SETS, default=[], metavar="SET",
                    help="sources no run trains on (the recipe without them), e.g. to test whether one of them hurts")
    ap.add_argument("--baseline", default="default", help="checkpoint scored beside, on sets it never trained on")
    ap.add_argument("--write", action="store_true", help="write the tables into the benchmark page")
    ap.add_argument("--ensemble", nargs="+", type=Path, metavar="RUNS",
                    help="only score the mean ensemble of these run folders from their cached left-out scores")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.ensemble:
        print(ensemble_table(args.ensemble, [s for s in args.leave_out if s != "cameras"]))
        return
    t0 = time.time()
    changes = parse_dotted_args([f"--{change}" for change in args.set])  # as fakescope train reads --KEY=VALUE
    if overlap := set(args.exclude) & set(args.leave_out):
        raise SystemExit(f"--exclude {' '.join(sorted(overlap))}: a source no run trains on cannot be left out too")
    exclude = tuple(args.exclude)
    runs = {name: train_without(name, args.runs, args.recipe, changes, exclude) for name in args.leave_out}
    if set(args.leave_out) | set(exclude) == set(SETS):  # the whole table: also the run on all sets, the candidate
        runs["all"] = train_without(None, args.runs, args.recipe, changes, exclude)
    baseline = Detector.load(args.baseline, backend="auto")
    trained_on = {Path(p).name for p in baseline.meta.info.get("data", {}).get("path", [])}
    left, aucs, base_rows = [], {}, []
    never_seen = [*args.leave_out, *(exclude if "all" in runs else ())]  # an excluded set: scored by the run on all
    for name in never_seen:
        checkpoint, _ = runs.get(name, runs.get("all"))
        model = Detector.load(str(checkpoint), backend="auto")
        every = discover_samples(data_root() / name)
        row, auc = left_out_row(name, list(scored(model, every, checkpoint.parent / f"scores-{name}.json").values()),
                                model.threshold)
        left.append(row)
        aucs[name] = auc
        print(row, flush=True)
        if name not in trained_on:
            cache = args.runs / f"baseline-scores-{name}.json"
            base_rows.append(left_out_row(name, list(scored(baseline, every, cache).values()), baseline.threshold)[0])
    in_set, all_label = [], "all but " + ", ".join(exclude) if exclude else "all five"
    for key, (checkpoint, cfg) in runs.items():
        model = Detector.load(str(checkpoint), backend="auto")
        val = {Path(root).name: v for root, (_, v) in zip(cfg.data.path, folder_splits(cfg))}  # one walk per run
        cells = ["(left out)" if name not in val else in_set_cell(model, val[name], name, checkpoint.parent)
                 for name in SETS]
        in_set.append(f"{all_label if key == 'all' else 'without ' + key} | " + " | ".join(cells))
        print(in_set[-1], flush=True)
    body = report(left, aucs, base_rows, in_set, args, time.time() - t0)
    print(body)
    if args.write:
        write_section("Leave one source out", body)


def report(left: list[str], aucs: dict, base_rows: list[str], in_set: list[str], args, seconds: float) -> str:
    command = shlex.join(["python", "bench/held_out_sets.py", *sys.argv[1:]])
    with_fakes = [v for v in aucs.values() if v is not None]
    mean = f"{np.mean(with_fakes):.3f} over {len(with_fakes)} sets" if with_fakes else "-"
    head = ("| set never seen in training | ROC-AUC [95%] (images) | reals flagged / fakes caught | ECE | "
            "called unfamiliar | labelled uncertain, reals / fakes | ROC-AUC on the familiar part |\n"
            "|---|---|---|---|---|---|---|")
    previous = ", ".join(f"{k} {v:.3f}" for k, v in PREVIOUS_RECIPE.items())
    return (
        f"Command: `{command}` ({seconds:.0f} s here, training included when runs were missing). Recipe "
        f"`{args.recipe.relative_to(REPO) if args.recipe.is_relative_to(REPO) else args.recipe}`, trained once "
        f"without each source and once on all {'but ' + ', '.join(args.exclude) if args.exclude else 'five'}.\n\n"
        f"**Mean left-out ROC-AUC: {mean}** (none below: {min(with_fakes):.3f}). The previous recipe (Lite2, three "
        f"sets) scored {previous} on the set it never saw.\n\n{head}\n" + "\n".join(f"| {r} |" for r in left) +
        "\n\nThe baseline (`" + args.baseline + "`) on the sets it never trained on:\n\n" + head + "\n" +
        "\n".join(f"| {r} |" for r in base_rows) +
        "\n\nEach run on the validation splits of the sets it trained on (ROC-AUC, reals flagged at its threshold "
        "in brackets; cameras: its reals flagged):\n\n| run | " + " | ".join(SETS) + " |\n" + "|---" * (len(SETS) + 1)
        + "|\n" + "\n".join(f"| {r} |" for r in in_set) + "\n")


if __name__ == "__main__":
    main()
