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
  probability by a logistic fit on the validation images (fakescope's ``Combiner("mean")``),
- and the same as a recipe with ``neighbour_score: true`` ships it (:mod:`fakescope.familiarity`): a copy of the run's
  model described with its training images' classes, its threshold chosen again, every never-seen image scanned (the
  mean first, then the copy-move evidence of a recipe with the check).

``RUNS`` may also be a checkpoint file of configs/default.yaml's recipe: that detector, on every image of each
``--leave-out`` set it never trained on (wildfaces). A model that already scores with its nearest training images
(``neighbour_score``, the shipped default since 2026-12-07) stops the bench: its probability is not the network's; pass
its weights from before.
The first column is the network's own left-out ROC-AUC; the "in-set" columns are the k = 20 log ratio, the network and
their mean on the run's validation images (the sets it trained on). Features are cached beside each run
(neighbour-features-SET.npz).
"""
from __future__ import annotations

import argparse
import shlex
import shutil
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

from fakescope.checkpoint import read_meta
from fakescope.config import TrainConfig, load_config
from fakescope.data.discovery import Sample, discover_samples
from fakescope.engine.familiarity import add_familiarity, capped, sample_features
from fakescope.engine.loaders import folder_splits
from fakescope.engine.threshold import threshold_final_scores
from fakescope.ensemble.combine import Combiner
from fakescope.evaluation.metrics import paired_difference
from fakescope.familiarity import NEIGHBOURS, fit_feature_model
from fakescope.inference.detector import Detector

#: Training images described per folder and class, as ``fakescope train`` describes a checkpoint.
PER_CELL = 200


def features(detector: Detector, samples: list[Sample]) -> np.ndarray:
    """Stage statistics of every one of ``samples``, in their order (an unreadable one stops the bench: the rows must
    pair with the samples' labels and scores)."""
    out = sample_features(detector, samples)
    if len(out) != len(samples):
        raise SystemExit(f"{len(samples) - len(out)} of {len(samples)} images unreadable (a shared set changed?)")
    return out


def run_features(model: str, cfg: TrainConfig, name: str, folder: Path) -> dict[str, np.ndarray]:
    """Stage statistics and labels of the model's described training images, its validation images and every image of
    ``name``, with the network's final score of each validation image and each image of ``name`` (the left-out
    table's, cached in ``folder`` as held_out_sets caches it; the features in its neighbour-features-NAME.npz)."""
    cache = folder / f"neighbour-features-{name}.npz"
    if cache.exists():
        return dict(np.load(cache))
    splits = folder_splits(cfg)
    sets = {"train": capped([s for t, _ in splits for s in t], [i for i, (t, _) in enumerate(splits) for _ in t],
                            PER_CELL),
            "val": [s for _, v in splits for s in v], "test": discover_samples(data_root() / name)}
    detector, scorer = Detector.load(model, device="cpu"), Detector.load(model, backend="auto")
    if scorer.feature_model is not None and scorer.feature_model.scores:  # its probability is already the mean
        raise SystemExit(f"{model}: already scores with its nearest training images (neighbour_score), so its "
                         "probability is not the network's; pass its weights from before (for the shipped default: "
                         "git show 156b472:src/fakescope/weights/efficientnet_lite2.safetensors)")
    out = {}
    for key, samples in sets.items():
        out[key], out[f"{key}_labels"] = features(detector, samples), np.asarray([s.label for s in samples])
    for key, cached in (("test", f"scores-{name}.json"), ("val", "scores-val-neighbours.json")):
        network = scored(scorer, sets[key], folder / cached)
        out[f"{key}_network"] = np.asarray([network[str(s.path)][1] for s in sets[key]])
    np.savez(cache, **out)
    return out


def scores(f: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(labels, score) of each score on the never-seen images, and of the k = 20 log ratio, the network and their mean
    on the validation images ("in-set"; the ratio is made a probability on those same images)."""
    train, labels, val, test, y = f["train"], f["train_labels"], f["val"], f["test"], f["test_labels"]
    # the checkpoint's description with its training images' classes, as a recipe's neighbour_score makes it
    described = fit_feature_model(train, val, labels=(labels, f["val_labels"]))
    reals = replace(described, references=described.references[labels == 0])
    alone = [fit_feature_model(train[labels == c], val) for c in (0, 1)]  # each class standardised on its own
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)).fit(train, labels)

    def mean(network: np.ndarray, x: np.ndarray) -> np.ndarray:
        return Combiner("mean", np.full(2, 0.5)).predict(np.stack([network, described.fake_probability(x)], 1))

    return {"network": (y, f["test_network"]), "to reals": (y, reals.distance(test, NEIGHBOURS)),
            "ratio 5": (y, described.log_ratio(test, 5)), "ratio 20": (y, described.log_ratio(test)),
            "ratio 20, classes alone": (y, np.log(np.maximum(alone[0].distance(test, 20), 1e-9))
                                        - np.log(np.maximum(alone[1].distance(test, 20), 1e-9))),
            "probe": (y, probe.decision_function(test)), "mean": (y, mean(f["test_network"], test)),
            "in-set": (f["val_labels"], described.log_ratio(val)),
            "in-set network": (f["val_labels"], f["val_network"]),
            "in-set mean": (f["val_labels"], mean(f["val_network"], val))}


def as_shipped(model: str, cfg: TrainConfig, name: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, final scores) of every image of ``name`` by the run's model described as a recipe with
    ``neighbour_score: true`` describes it (a copy beside the run, neighbour-score.safetensors: its training images'
    classes kept, its threshold chosen again on its final scores), scored as a scan scores (the network's probability
    averaged with the nearest training images', then the copy-move evidence added for a recipe with the check)."""
    copy = folder / "neighbour-score.safetensors"
    if not copy.exists():
        shutil.copyfile(model, copy)
        add_familiarity(copy, folder_splits(cfg), scores=True)
        threshold_final_scores(copy, cfg)
    samples = discover_samples(data_root() / name)
    final = scored(Detector.load(str(copy), backend="auto"), samples, folder / f"scores-neighbour-score-{name}.json")
    return np.asarray([s.label for s in samples]), np.asarray([final[str(s.path)][1] for s in samples])


def recipe(cfg: TrainConfig) -> str:
    return f"{cfg.model.name}, {cfg.model.size} px, {cfg.epochs} epochs, {len(cfg.data.path)} sets"


def models(runs: str, names: list[str]) -> list[tuple[str, str, TrainConfig, str, Path]]:
    """(row label, model, its training config, never-seen set, cache folder) for each finished left-out run of
    ``runs`` (or, for a checkpoint file trained by configs/default.yaml, that detector on each set it never trained
    on)."""
    if Path(runs).is_file():
        trained = [Path(p).name for p in read_meta(runs).info["data"]["path"]]
        cfg = load_config(REPO / "configs" / "default.yaml", {"data.path": [str(data_root() / t) for t in trained]})
        never_seen = [n for n in names if n not in trained]  # the sets with fakes it never trained on
        cache = REPO / "runs" / f"{Path(runs).stem}-neighbours"
        return [(f"`{runs}` ({recipe(cfg)})", runs, cfg, name, cache) for name in never_seen]
    out = []
    for name in names:
        run = Path(runs) / f"without-{name}"
        if (run / "metrics.json").exists():
            cfg = load_config(run / "config.yaml")
            out.append((f"`{runs}` ({recipe(cfg)}) without {name}", str(run / "best.safetensors"), cfg, name, run))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders of bench/held_out_sets.py or checkpoint files")
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
            s["as shipped"] = as_shipped(model, cfg, name, folder)
            gain = paired_difference(*s["as shipped"], s["network"][1])
            aucs.append([roc_auc_score(y, score) for y, score in s.values()] + [gain["difference"]])
            rows.append(f"| {label} | {name} | " + " | ".join(auc_text(y, score) for y, score in s.values())
                        + f" | {gain['difference']:+.3f} [{gain['low']:+.2f}, {gain['high']:+.2f}] |")
            print(rows[-1], flush=True)
        if len(aucs) > 1:
            *means, gain_mean = np.mean(aucs, 0)
            rows.append(f"| `{runs}`, mean of {len(aucs)} | | " + " | ".join(f"**{v:.3f}**" for v in means)
                        + f" | **{gain_mean:+.3f}** |")
    command = shlex.join(["python", "bench/neighbours.py", *sys.argv[1:]])
    body = (f"Command: `{command}` ({time.time() - t0:.0f} s here with the runs trained; features cached beside "
            "each run). ROC-AUC on every image of the set the model never saw; \"in-set\": on the run's validation "
            "images (the ratio made a probability on those same images for the mean); [95% bootstrap interval]. "
            "\"As shipped\": the run's model described as a recipe with `neighbour_score: true` describes it, its "
            "threshold chosen again, scored as a scan scores (the mean first, then the copy-move evidence). The last "
            "column: that ROC-AUC minus the network's on the same never-seen images, [95% paired bootstrap "
            "interval].\n\n"
            "| model | never seen | network | distance to the 5th nearest real | log ratio, k = 5 | "
            "log ratio, k = 20 | "
            "log ratio, k = 20, each class described alone | logistic regression on the statistics | "
            "mean of the network and the k = 20 ratio | in-set: k = 20 ratio | in-set: network | in-set: mean | "
            "as shipped (`neighbour_score: true`) | never seen: as shipped minus network (paired) |\n"
            + "|---" * 14 + "|\n"
            + "\n".join(rows) + "\n")
    print(body)
    if args.write:
        write_section("Nearest training images as a fake score", body)


if __name__ == "__main__":
    main()
