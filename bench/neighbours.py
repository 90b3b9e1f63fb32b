"""Nearest training images as a fake score, on sets the detector never saw: a candidate for issue 29 with no training.

    python bench/neighbours.py RUNS [RUNS ...] [--leave-out SET ...] [--write]

Familiarity (:mod:`fakescope.familiarity`) measures how far an image's stage statistics lie from the detector's
training images. With the described training images split by class (the same standardisation and PCA, the cosine
distance to the k-th nearest of each class), the same distances make a fake score: an image nearer the training fakes
than the training reals is more likely fake (class-conditional deep nearest neighbours, after Sun et al., ICML 2022).
This bench scores it where issue 29 chooses a default: for each run folder made by ``bench/held_out_sets.py``, the
model trained without each set (RUNS/without-SET) describes its training images (at most 200 per folder and class, as
``fakescope train`` describes them) by class, and every image of the set it never saw is scored by

- the cosine distance to its 5th nearest training real (a real-only score: fake = farther),
- the log ratio of its distances to the k-th nearest training real and training fake (k = 5, fakescope's neighbour, and
  20), and the k = 20 ratio with each class described on its own (its own standardisation and PCA: the figure this
  bench's first measure, on a sample of wildfaces, came from),
- a linear probe: a logistic regression (C 0.01) on the described training images' standardised statistics,
- the mean of the network's final score (the left-out table's, cached by held_out_sets) and the k = 20 log ratio made a
  probability by a logistic fit on the validation images (fakescope's ``Combiner("mean")``).

``RUNS`` may also be ``default``: the shipped default, which never trained on wildfaces, scored on all of it.
The first column is the network's own left-out ROC-AUC; the "in-set" columns are the k = 20 log ratio, the network and
their mean on the run's validation images (the sets it trained on). Features are cached beside each run
(neighbour-features-SET.npz).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import REPO, SETS, data_root, write_section
from held_out_sets import auc_text, scored
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fakescope.config import TrainConfig, load_config
from fakescope.data.discovery import Sample, discover_samples
from fakescope.engine.familiarity import capped
from fakescope.engine.loaders import folder_splits
from fakescope.ensemble.combine import Combiner
from fakescope.familiarity import NEIGHBOURS, fit_feature_model
from fakescope.inference.detector import Detector
from fakescope.inference.scan import iter_prepared

#: Training images described per folder and class, as ``fakescope train`` describes a checkpoint.
PER_CELL = 200
#: The never-seen sets of the shipped default that have fakes.
DEFAULT_NEVER_SEEN = ("wildfaces",)


def labelled_features(detector: Detector, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(stage statistics, labels, paths) of the readable ``samples``, in the samples' order."""
    ready = sorted((item.index, item.array) for item in iter_prepared([s.path for s in samples], detector.preparer, 2)
                   if item.error is None)
    feats = [detector.logits_and_features(np.stack([a for _, a in ready[i:i + 32]]))[1]
             for i in range(0, len(ready), 32)]
    return (np.concatenate(feats), np.asarray([samples[i].label for i, _ in ready]),
            [str(samples[i].path) for i, _ in ready])


def run_features(model: str, cfg: TrainConfig, name: str, folder: Path) -> dict[str, np.ndarray]:
    """Stage statistics and labels of the model's described training images, its validation images and every image of
    ``name``, with the network's final score of each validation image and each image of ``name`` (the left-out
    table's, cached in ``folder`` as held_out_sets caches it; the features in its neighbour-features-NAME.npz)."""
    cache = folder / f"neighbour-features-{name}.npz"
    out = dict(np.load(cache)) if cache.exists() else {}
    if "val_network" in out:
        return out
    splits = folder_splits(cfg)
    val = [s for _, v in splits for s in v]
    if not out:
        detector = Detector.load(model, device="cpu")
        train = capped([s for t, _ in splits for s in t], [i for i, (t, _) in enumerate(splits) for _ in t], PER_CELL)
        never_seen = discover_samples(data_root() / name)
        for key, samples in (("train", train), ("val", val), ("test", never_seen)):
            out[key], out[f"{key}_labels"], paths = labelled_features(detector, samples)
        network = scored(Detector.load(model, backend="auto"), never_seen, folder / f"scores-{name}.json")
        out["test_network"] = np.asarray([network[p][1] for p in paths])
    if len(out["val"]) != len(val):
        raise SystemExit(f"{folder}: {len(val) - len(out['val'])} validation images unreadable")
    network = scored(Detector.load(model, backend="auto"), val, folder / "scores-val-neighbours.json")
    out["val_network"] = np.asarray([network[str(s.path)][1] for s in val])
    np.savez(cache, **out)
    return out


def scores(f: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(labels, score) of each score on the never-seen images, and of the k = 20 log ratio, the network and their mean
    on the validation images ("in-set"; the ratio is made a probability on those same images)."""
    train, labels, val, y = f["train"], f["train_labels"], f["val"], f["test_labels"]
    described = fit_feature_model(train, val)  # the checkpoint's description, its training images split by class
    reals, fakes = (replace(described, references=described.references[labels == c]) for c in (0, 1))

    def log_ratio(x: np.ndarray, k: int) -> np.ndarray:
        return np.log(np.maximum(reals.distance(x, k), 1e-9)) - np.log(np.maximum(fakes.distance(x, k), 1e-9))

    alone = [fit_feature_model(train[labels == c], val) for c in (0, 1)]  # each class standardised on its own
    own_ratio = np.log(np.maximum(alone[0].distance(f["test"], 20), 1e-9)) - np.log(
        np.maximum(alone[1].distance(f["test"], 20), 1e-9))
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)).fit(train, labels)
    as_probability = LogisticRegression().fit(log_ratio(val, 20)[:, None], f["val_labels"])

    def mean(network: np.ndarray, x: np.ndarray) -> np.ndarray:
        ratio = as_probability.predict_proba(log_ratio(x, 20)[:, None])[:, 1]
        return Combiner("mean", np.full(2, 0.5)).predict(np.stack([network, ratio], 1))

    return {"network": (y, f["test_network"]), "to reals": (y, reals.distance(f["test"], NEIGHBOURS)),
            "ratio 5": (y, log_ratio(f["test"], 5)), "ratio 20": (y, log_ratio(f["test"], 20)),
            "ratio 20, classes alone": (y, own_ratio), "probe": (y, probe.decision_function(f["test"])),
            "mean": (y, mean(f["test_network"], f["test"])),
            "in-set": (f["val_labels"], log_ratio(val, 20)), "in-set network": (f["val_labels"], f["val_network"]),
            "in-set mean": (f["val_labels"], mean(f["val_network"], val))}


def recipe(cfg: TrainConfig) -> str:
    return f"{cfg.model.name}, {cfg.model.size} px, {cfg.epochs} epochs, {len(cfg.data.path)} sets"


def models(runs: str, names: list[str]) -> list[tuple[str, str, TrainConfig, str, Path]]:
    """(row label, model, its training config, never-seen set, cache folder) for each finished left-out run of
    ``runs`` (or, for ``default``, the shipped default on each set it never trained on)."""
    if runs == "default":
        info = Detector.load("default", device="cpu").meta.info
        cfg = load_config(REPO / "configs" / "default.yaml",
                          {"data.path": [str(data_root() / Path(p).name) for p in info["data"]["path"]]})
        return [(f"the shipped default ({recipe(cfg)})", "default", cfg, name, REPO / "runs" / "default-neighbours")
                for name in DEFAULT_NEVER_SEEN]
    out = []
    for name in names:
        run = Path(runs) / f"without-{name}"
        if (run / "metrics.json").exists():
            cfg = load_config(run / "config.yaml")
            out.append((f"`{runs}` ({recipe(cfg)}) without {name}", str(run / "best.safetensors"), cfg, name, run))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders of bench/held_out_sets.py, or 'default'")
    ap.add_argument("--leave-out", nargs="+", choices=SETS[:-1], default=list(SETS[:-1]), metavar="SET")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    rows = []
    for runs in args.runs:
        aucs = []
        for label, model, cfg, name, folder in models(runs, args.leave_out):
            folder.mkdir(parents=True, exist_ok=True)
            s = scores(run_features(model, cfg, name, folder))
            aucs.append([roc_auc_score(y, score) for y, score in s.values()])
            rows.append(f"| {label} | {name} | " + " | ".join(auc_text(y, score) for y, score in s.values()) + " |")
            print(rows[-1], flush=True)
        if len(aucs) > 1:
            rows.append(f"| `{runs}`, mean of {len(aucs)} | | " + " | ".join(f"**{v:.3f}**" for v in np.mean(aucs, 0))
                        + " |")
    command = shlex.join(["python", "bench/neighbours.py", *sys.argv[1:]])
    body = (f"Command: `{command}` ({time.time() - t0:.0f} s here with the runs trained; features cached beside "
            "each run). ROC-AUC on every image of the set the model never saw; \"in-set\": on the run's validation "
            "images (the ratio made a probability on those same images for the mean); [95% bootstrap interval].\n\n"
            "| model | never seen | network | distance to the 5th nearest real | log ratio, k = 5 | "
            "log ratio, k = 20 | "
            "log ratio, k = 20, each class described alone | logistic regression on the statistics | "
            "mean of the network and the k = 20 ratio | in-set: k = 20 ratio | in-set: network | in-set: mean |\n"
            + "|---" * 12 + "|\n"
            + "\n".join(rows) + "\n")
    print(body)
    if args.write:
        write_section("Nearest training images as a fake score", body)


if __name__ == "__main__":
    main()
