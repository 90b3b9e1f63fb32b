"""Trace detectors against content-only baselines, on each shared set and across sets, at one budget in images seen.

    .venv/bin/python bench/traces.py [--crop 64] [--train-images 400] [--epochs 1] [--val-images 50] [--write]
    .venv/bin/python bench/traces.py --sanity [--detectors npr,srm,...]   # synthetic trace check, no data

Per set, the training split and the validation split are those of ``stratified_split`` (seed 0, 20%, scene-group
aware). Every detector trains on the same ``--train-images`` (balanced, seeded) for ``--epochs`` epochs with the
default robustness augmentation (JPEG, blur, rescale, flip, colour); all trace detectors are fed the very same
augmented native-resolution crops of ``--crop`` px. Each trained model then scores ``--val-images`` (balanced) of
the validation split of every set: its own (in-set) and the two others (cross-set). Trace detectors load through
``Detector.load`` as a PatchDetector and score up to ``--patches`` grid crops per image; the three aggregations
(mean, max, top-3 mean) are computed from the same patch scores.

Rows: the registered trace detectors (``--detectors``); ``spectral-1d LR``, the azimuthally averaged residual
spectrum of the same crops with a logistic regression; and two content-only baselines that cannot see pixel
traces: ``content CNN`` (timm ResNet-18 from scratch on the whole image squashed to ``--content-size`` px, trained
like the others) and ``colour-hist LR`` (3 x 16-bin colour histograms, logistic regression). The metric is ROC-AUC
(threshold-free: the models are not calibrated). ``--write`` puts the tables under "## Trace detectors" in
docs/benchmarks/traces.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import SETS, data_root, write_section
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fakescope.checkpoint import CheckpointMeta, save_checkpoint
from fakescope.config import AugmentConfig, OptimConfig
from fakescope.data.augment import build_augment
from fakescope.data.discovery import Sample, discover_samples
from fakescope.data.preprocess import Preprocess
from fakescope.data.splits import stratified_split
from fakescope.engine.loops import EpochOptions, train_one_epoch
from fakescope.engine.optim import build_optimizer
from fakescope.forensics.io import load_image
from fakescope.forensics.traces import (
    LAPLACIAN,
    azimuthal_average,
    highpass_residual,
    log_spectrum,
)
from fakescope.inference.detector import Detector
from fakescope.inference.kinds.patch import (
    AGGREGATES,
    PatchConfig,
    PatchDetector,
    PatchPreparer,
    aggregate,
    patch_info,
)
from fakescope.registry import create_detector

log = logging.getLogger("bench.traces")
HEADING = "Trace detectors"
AGG_LABEL = {"mean": "mean", "max": "max", "topk": "top-3"}


def balanced(samples: list[Sample], n: int, seed: int) -> list[Sample]:
    """``n`` samples, half of each class (fewer if a class is short), drawn with ``seed``."""
    rng = random.Random(seed)
    out = []
    for label in (0, 1):
        of_class = [s for s in samples if s.label == label]
        rng.shuffle(of_class)
        out += of_class[: n // 2]
    return out


def splits(args) -> dict[str, tuple[list[Sample], list[Sample]]]:
    out = {}
    for name in SETS:
        train, val = stratified_split(discover_samples(data_root() / name), 0.2, seed=0)
        out[name] = (balanced(train, args.train_images, 0), balanced(val, args.val_images, 0))
    return out


#: The default robustness augmentation (JPEG, blur, rescale, flip) without colour jitter: torchvision's hue
#: adjustment costs about a second per 512-px image on this CPU, more than training on its crop.
AUGMENT = AugmentConfig(color_p=0.0)


def epoch_batches(samples: list[Sample], pres: dict[str, Preprocess], epoch: int, batch_size: int) -> dict[str, list]:
    """One epoch of training batches per preprocessing key: each image is augmented once, then cut (random native
    crop) or squashed by every preprocessing, so all detectors see the same augmented images and crops."""
    torch.manual_seed(1000 + epoch)
    rng = np.random.default_rng(epoch)
    augment = build_augment(AUGMENT)
    order = rng.permutation(len(samples))
    arrays: dict[str, list] = {k: [] for k in pres}
    for i in order:
        img = augment(load_image(samples[i].path))
        for k, pre in pres.items():
            arrays[k].append(pre.to_array(img, rng if pre.resize == "crop" else None))
    labels = torch.tensor([samples[i].label for i in order])
    return {k: [(torch.as_tensor(np.stack(a[j:j + batch_size])), labels[j:j + batch_size])
                for j in range(0, len(a), batch_size)] for k, a in arrays.items()}


def train_models(names: list[str], samples: list[Sample], args, lr: float) -> tuple[dict, dict, list]:
    """Train every detector in ``names`` on the same images; returns models, seconds per detector, the crops."""
    device = torch.device("cpu")
    torch.manual_seed(0)
    built = {n: create_detector(n, size=args.content_size if n == "resnet18" else args.crop) for n in names}
    opts = {n: build_optimizer(OptimConfig(name="adamw", lr=lr, weight_decay=1e-4), m.parameters())
            for n, (m, _) in built.items()}
    pres = {pre.key(): pre for _, pre in built.values()}
    seconds = {n: 0.0 for n in names}
    loss_fn = torch.nn.CrossEntropyLoss()
    crops = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        batches = epoch_batches(samples, pres, epoch, args.batch_size)
        log.info("epoch %d: %d images augmented and cut in %.0fs", epoch + 1, len(samples), time.perf_counter() - t0)
        crops += next(b for k, b in batches.items() if pres[k].resize == "crop")
        for n, (model, pre) in built.items():
            t0 = time.perf_counter()
            train_one_epoch(model, batches[pre.key()], device, EpochOptions(opts[n], loss_fn, pre.to_tensor))
            seconds[n] += time.perf_counter() - t0
    return {n: m.eval() for n, (m, _) in built.items()}, seconds, crops


def as_detector(model, name: str, pre: Preprocess, tmp: Path, patches: int) -> Detector:
    """Save as a checkpoint and load it back through ``Detector.load`` (a PatchDetector for crop detectors)."""
    info = patch_info(pre, PatchConfig(max_patches=patches))
    path = save_checkpoint(tmp / f"{name}.safetensors", model, CheckpointMeta(name, pre, info=info))
    return Detector.load(str(path), device="cpu")


def radial_profiles(patches: np.ndarray | torch.Tensor) -> np.ndarray:
    """(P, S, S, 3) uint8 crops -> radial profile of each crop's Laplacian-residual log spectrum (channel mean)."""
    x = torch.as_tensor(patches).permute(0, 3, 1, 2).float() / 255.0
    return azimuthal_average(log_spectrum(highpass_residual(x, LAPLACIAN))).mean(dim=1).numpy()


def spectrum_features(patches: np.ndarray) -> np.ndarray:
    """An image's feature for ``spectral-1d LR``: the mean radial profile over its patches."""
    return radial_profiles(patches).mean(axis=0)


def colour_histogram(img) -> np.ndarray:
    arr = np.asarray(img.convert("RGB"))
    return np.concatenate([np.histogram(arr[..., c], bins=16, range=(0, 256))[0] for c in range(3)]) / arr[..., 0].size


class ValSet:
    """A set's validation images, decoded once: patch stacks, whole images (content CNN) and colour histograms."""

    def __init__(self, samples: list[Sample], crop_pre: Preprocess, patches: int):
        prep = PatchPreparer(crop_pre, PatchConfig(max_patches=patches))
        self.labels = np.array([s.label for s in samples])
        self.patches, self.images, self.hist = [], [], []
        for s in samples:
            img = load_image(s.path)
            self.patches.append(prep.to_array(img))
            self.images.append(img)
            self.hist.append(colour_histogram(img))
        self.spectra = np.stack([spectrum_features(p) for p in self.patches])


def auc(y: np.ndarray, p) -> float:
    return float(roc_auc_score(y, np.asarray(p)))


def score(det: Detector, val: ValSet) -> dict[str, float]:
    """ROC-AUC per aggregation (patch detectors) or the single score (content CNN)."""
    if not isinstance(det, PatchDetector):
        return {"mean": auc(val.labels, det.predict_images(val.images))}
    per_image = det.patch_probabilities(val.patches)
    return {a: auc(val.labels, [aggregate(p, a, 3) for p in per_image]) for a in AGGREGATES}


def fit_lr(x: np.ndarray, y: np.ndarray):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0)).fit(x, y)


def run_set(train_set: str, train: list[Sample], vals: dict[str, ValSet], args, tmp: Path) -> dict:
    """Train everything on ``train_set``; ROC-AUC on every set's validation images."""
    names = args.detectors + ["resnet18"]
    models, seconds, crops = train_models(names, train, args, args.lr)
    res: dict[str, dict] = {}
    for n, model in models.items():
        _, pre = create_detector(n, size=args.content_size if n == "resnet18" else args.crop)
        det = as_detector(model, n, pre, tmp, args.patches)
        t0 = time.perf_counter()
        row = "content CNN" if n == "resnet18" else n
        res[row] = {v: score(det, vals[v]) for v in vals}
        log.info("%s on %s: train %.0fs, score %.0fs", n, train_set, seconds[n], time.perf_counter() - t0)
    x = np.concatenate([radial_profiles(a) for a, _ in crops])
    y = np.concatenate([lbl.numpy() for _, lbl in crops])
    lr = fit_lr(x, y)
    res["spectral-1d LR"] = {v: {"mean": auc(vals[v].labels, lr.predict_proba(vals[v].spectra)[:, 1])} for v in vals}
    hist = fit_lr(np.stack([colour_histogram(load_image(s.path)) for s in train]), np.array([s.label for s in train]))
    res["colour-hist LR"] = {v: {"mean": auc(vals[v].labels, hist.predict_proba(np.stack(vals[v].hist))[:, 1])}
                             for v in vals}
    res["_seconds"] = {("content CNN" if n == "resnet18" else n): s for n, s in seconds.items()}
    return res


def synthetic_batch(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random content plus noise; label 1 = the same image re-sampled 2x (average down, bilinear up), a pure
    up-sampling trace with the same content distribution in both classes."""
    base = torch.rand(n, 3, size // 8, size // 8, generator=gen)
    x = F.interpolate(base, size=size, mode="bicubic", align_corners=False)
    x = (x + 0.05 * torch.randn(n, 3, size, size, generator=gen)).clamp(0, 1)
    y = torch.randint(0, 2, (n,), generator=gen)
    up = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    return torch.where(y[:, None, None, None] == 1, up, x), y


def sanity(names: list[str], steps: int = 30, size: int = 32) -> str:
    """Can each detector learn a trace that certainly exists? ROC-AUC on 256 held-out synthetic crops."""
    rows = ["| detector | ROC-AUC, synthetic 2x up-sampling (30 steps of 16 crops, 32 px) |", "|---|---|"]
    for name in names:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        model, _ = create_detector(name, size=size)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        model.train()
        for _ in range(steps):
            x, y = synthetic_batch(16, size, gen)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        x, y = synthetic_batch(256, size, gen)
        with torch.no_grad():
            p = model.eval()(x).softmax(1)[:, 1]
        rows.append(f"| {name} | {auc(y.numpy(), p.numpy()):.3f} |")
    return "\n".join(rows)


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def trace_rows(args) -> list[tuple[str, str, str]]:
    """(row label, result key, aggregation) of every table row, trace detectors first."""
    rows = [(f"{n} ({AGG_LABEL[a]})", n, a) for n in args.detectors for a in AGGREGATES]
    rows.append(("spectral-1d LR", "spectral-1d LR", "mean"))
    return rows + [("content CNN (32 px)", "content CNN", "mean"), ("colour-hist LR", "colour-hist LR", "mean")]


def tables(results: dict, args) -> str:
    in_set = ["| detector | " + " | ".join(SETS) + " |", "|---" * (len(SETS) + 1) + "|"]
    for label, key, agg in trace_rows(args):
        in_set.append(f"| {label} | " + " | ".join(fmt(results[s][key][s][agg]) for s in SETS) + " |")
    pairs = [(a, b) for a in SETS for b in SETS if a != b]
    cross = ["| detector | " + " | ".join(f"{a} → {b}" for a, b in pairs) + " |", "|---" * (len(pairs) + 1) + "|"]
    for label, key, agg in trace_rows(args):
        if agg in ("mean",):
            cross.append(f"| {label} | " + " | ".join(fmt(results[a][key][b][agg]) for a, b in pairs) + " |")
    secs = ["| detector | " + " | ".join(f"train s, {s}" for s in SETS) + " |", "|---" * (len(SETS) + 1) + "|"]
    for key in list(results[SETS[0]]["_seconds"]):
        secs.append(f"| {key} | " + " | ".join(f"{results[s]['_seconds'][key]:.0f}" for s in SETS) + " |")
    return "\n".join(["In-set ROC-AUC (trained and evaluated on the same set):", "", *in_set, "",
                      "Cross-set ROC-AUC (trained on the left set, evaluated on the right one; patch aggregation: mean):",
                      "", *cross, "", "Training wall time (shared, loaded 2-core CPU: indicative only):", "", *secs])


def verdicts(results: dict, args) -> str:
    """Per set: the best trace row against the best content-only row (in-set, mean aggregation)."""
    lines = []
    traces = [n for n in args.detectors] + ["spectral-1d LR"]
    for s in SETS:
        best_t = max(traces, key=lambda n: results[s][n][s]["mean"])
        best_c = max(["content CNN", "colour-hist LR"], key=lambda n: results[s][n][s]["mean"])
        t, c = results[s][best_t][s]["mean"], results[s][best_c][s]["mean"]
        word = "beats" if t > c else "does not beat"
        lines.append(f"- {s}: best trace detector {best_t} ({t:.3f}) {word} the best content baseline {best_c} ({c:.3f})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detectors", default="npr_resnet18,srm,spectral",
                    help="registered trace detectors, comma-separated (npr, the ResNet-50 NPR, is ~2x slower)")
    ap.add_argument("--crop", type=int, default=64, help="native crop side for trace detectors")
    ap.add_argument("--content-size", type=int, default=32, help="squash size of the content CNN")
    ap.add_argument("--train-images", type=int, default=400)
    ap.add_argument("--val-images", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--patches", type=int, default=6, help="grid crops per image at scoring time (at most)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--write", action="store_true", help="write the tables into docs/benchmarks/traces.md")
    ap.add_argument("--sanity", action="store_true",
                    help="only check that each detector learns a synthetic up-sampling trace (no data needed)")
    args = ap.parse_args()
    args.detectors = [d for d in args.detectors.split(",") if d]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.sanity:
        print(sanity(args.detectors))
        return
    crop_pre = Preprocess.for_mode("rgb", args.crop, imagenet_norm=False, resize="crop")
    for n in args.detectors:
        if create_detector(n, size=args.crop)[1].key() != crop_pre.key():
            raise SystemExit(f"{n} does not take plain RGB native crops; it cannot share the crops")
    t0 = time.time()
    data = splits(args)
    vals = {s: ValSet(val, crop_pre, args.patches) for s, (_, val) in data.items()}
    log.info("validation sets decoded in %.0fs", time.time() - t0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s, (train, _) in data.items():
            results[s] = run_set(s, train, vals, args, Path(tmp))
    minutes = (time.time() - t0) / 60
    text = tables(results, args)
    print(f"{text}\n\n{verdicts(results, args)}\n\n{minutes:.1f} min")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.write:
        cmd = "python bench/traces.py " + shlex.join(sys.argv[1:])
        setup = (f"`{cmd}` ({minutes:.0f} min on the shared 2-core CPU). Per set {args.train_images} training images "
                 f"(balanced) x {args.epochs} epochs with the default JPEG/blur/rescale augmentation, {args.crop}-px "
                 f"native crops (the same crops for every trace detector), AdamW lr {args.lr}, batch {args.batch_size}; "
                 f"{args.val_images} validation images per set (balanced, from stratified_split seed 0), up to "
                 f"{args.patches} grid crops per image.")
        write_section(HEADING, f"{setup}\n\n{text}\n\nIn-set, mean aggregation:\n\n{verdicts(results, args)}")


if __name__ == "__main__":
    main()
