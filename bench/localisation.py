"""Localisation benchmark: how well each heatmap points at the tampered pixels of CASIA v1.0 splices.

For every tampered image with a ground-truth mask (``casia1/masks/<stem>_gt.png``, white = tampered) each
heatmap is scored against the mask at the image's resolution: pixel-level ROC-AUC and the best F1 over all
thresholds, per image, then averaged. Heatmaps: ELA, ELA averaged over 16x16 pixels, the noise-residual level
and, for each ``--model`` checkpoint, Grad-CAM and Grad-CAM++ of the fake class. A "mark everything" row is the
floor: ROC-AUC 0.5 and the F1 of calling every pixel tampered.

    python bench/localisation.py --limit 60 --model runs/default/best.safetensors --write

``--write`` puts the table under "## Localisation" in docs/benchmarks/localisation.md (other sections are left alone).
"""
from __future__ import annotations

import argparse
import logging
import random
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from _common import data_root, page_of, write_section
from PIL import Image
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score

from fakescope.data.discovery import discover_samples
from fakescope.data.masks import find_masks, load_mask
from fakescope.evaluation.metrics import mean_difference
from fakescope.explain import heatmap
from fakescope.explain.cam import target_layer
from fakescope.forensics.ela import ela_map
from fakescope.forensics.io import load_image
from fakescope.inference.detector import Detector

log = logging.getLogger("bench.localisation")
HEADING = "Localisation"


def find_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(tampered image, mask) pairs, matched the way training's pixel loss matches them (``fakescope.data.masks``)."""
    masks = find_masks(root)
    fakes = sorted(s.path for s in discover_samples(root) if s.label == 1)
    return [(path, masks[path.stem]) for path in fakes if path.stem in masks]


def score_map(heat: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(pixel ROC-AUC, best F1 over thresholds) of ``heat`` against ``mask``."""
    y, s = mask.ravel(), heat.ravel().astype(np.float64)
    precision, recall, _ = precision_recall_curve(y, s)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(roc_auc_score(y, s)), float(f1.max())


#: CASIA v1.0's kinds of tampering, by file-name prefix.
KINDS = {"Sp_S": "copy-moves", "Sp_D": "splices"}


def kind_of(path: Path) -> str:
    """``Sp_S`` (a copy-move inside one image) or ``Sp_D`` (a splice from another), read off CASIA's file name."""
    return next((prefix for prefix in KINDS if path.name.startswith(prefix)), "other")


@dataclass
class Row:
    name: str
    aucs: list[float] = field(default_factory=list)
    f1s: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def by_kind(self, kind: str) -> str:
        picked = [a for a, k in zip(self.aucs, self.kinds) if k == kind]
        return f"{np.mean(picked):.3f} ({len(picked)})" if picked else "-"

    def markdown(self) -> str:
        n = len(self.aucs)
        ms = 1000 * self.seconds / max(n, 1)
        return (f"| {self.name} | {n} | {np.mean(self.aucs):.3f} | {np.median(self.aucs):.3f} | "
                f"{np.mean(self.f1s):.3f} | " + " | ".join(self.by_kind(k) for k in KINDS) + f" | {ms:.0f} |")


def model_label(det: Detector) -> str:
    """A shipped name, or a checkpoint's folder and file (runs' checkpoints are all called best.safetensors)."""
    path = Path(det.name)
    return f"{path.parent.name}/{path.name}" if path.suffix and path.parent.name else path.name


def cam_row(method: str, det: Detector) -> str:
    return f"{method}, {det.meta.architecture} ({model_label(det)})"


def methods(models: list[Detector]) -> dict[str, Callable[[Image.Image], np.ndarray]]:
    """Name -> heatmap function (image -> float map at the image's size)."""
    found: dict[str, Callable[[Image.Image], np.ndarray]] = {
        "ELA (q90)": lambda img: heatmap(img, "ela"),
        "ELA, 16x16 mean": lambda img: ndimage.uniform_filter(ela_map(img), size=16),
        "noise residual level": lambda img: heatmap(img, "noise"),
        "copy-move regions (SIFT self-matching)": lambda img: heatmap(img, "copy-move"),
    }
    for det in models:
        for method, label in (("gradcam", "Grad-CAM"), ("gradcam++", "Grad-CAM++")):
            found[cam_row(label, det)] = (
                lambda img, d=det, m=method: heatmap(img, m, d))
    return found


def run(pairs: list[tuple[Path, Path]], models: list[Detector]) -> list[Row]:
    fns = methods(models)
    rows = {name: Row(name) for name in fns}
    floor = Row("mark everything (floor)")
    for image_path, mask_path in pairs:
        img = load_image(image_path)
        mask = load_mask(mask_path, img.size) > 127
        if mask.all() or not mask.any():
            log.warning("%s: mask is empty or full, skipped", mask_path.name)
            continue
        for name, fn in fns.items():
            t = time.perf_counter()
            heat = fn(img)
            rows[name].seconds += time.perf_counter() - t
            auc, f1 = score_map(heat, mask)
            rows[name].aucs.append(auc)
            rows[name].f1s.append(f1)
            rows[name].kinds.append(kind_of(image_path))
        share = mask.mean()
        floor.aucs.append(0.5)
        floor.f1s.append(2 * share / (1 + share))
        floor.kinds.append(kind_of(image_path))
    return [*rows.values(), floor]


def table(rows: list[Row]) -> str:
    kinds = " | ".join(f"mean ROC-AUC, {name} ({prefix})" for prefix, name in KINDS.items())
    lines = [f"| heatmap | images | mean pixel ROC-AUC | median ROC-AUC | mean best F1 | {kinds} | ms / image |",
             "|---|---|---|---|---|" + "---|" * len(KINDS) + "---|"]
    return "\n".join(lines + [r.markdown() for r in rows])


def comparison(rows: list[Row], models: list[Detector]) -> str:
    """Per model, Grad-CAM++ minus Grad-CAM (the report's default against the other); then per CAM method, each later
    model minus the first. Per-image pixel ROC-AUC and F1 on the same images, paired bootstrap 95% interval of the
    mean difference."""
    by_name = {r.name: r for r in rows}
    lines = ["| heatmaps compared | mean pixel ROC-AUC difference | mean best F1 difference |", "|---|---|---|"]

    def line(label: str, row: Row, base: Row) -> str:
        cells = [mean_difference(getattr(row, k), getattr(base, k)) for k in ("aucs", "f1s")]
        return f"| {label} | " + " | ".join(f"{c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
                                            for c in cells) + " |"

    for det in models:
        lines.append(line(f"{model_label(det)}: Grad-CAM++ - Grad-CAM", by_name[cam_row("Grad-CAM++", det)],
                          by_name[cam_row("Grad-CAM", det)]))
    first, *others = models
    for label in ("Grad-CAM", "Grad-CAM++"):
        for det in others:
            lines.append(line(f"{label}, {model_label(det)} - {model_label(first)}", by_name[cam_row(label, det)],
                              by_name[cam_row(label, first)]))
    return "\n".join(lines)


def cam_grid(det: Detector) -> tuple[int, int]:
    """Cells of the CAM layer for the model's own input size (the shape its Grad-CAM is upsampled from)."""
    shape: list[int] = []
    size = det.meta.preprocess.size
    hook = target_layer(det.model, det.meta.architecture).register_forward_hook(
        lambda _m, _i, out: shape.extend(out.shape[-2:]))
    try:
        with torch.no_grad():
            det.model(torch.zeros(1, det.meta.preprocess.channels, size, size, device=det.device))
    finally:
        hook.remove()
    return shape[0], shape[1]


def describe(det: Detector) -> str:
    """One line on a Grad-CAM model: file, architecture, input and CAM grid, and its recorded validation score."""
    auc = det.meta.info.get("metrics", {}).get("roc_auc")
    recorded = f", validation ROC-AUC {auc:.3f} as recorded in the checkpoint" if auc is not None else ""
    origin = "a checkpoint file, not shipped weights" if Path(det.name).suffix else "shipped weights"
    size, (rows, cols) = det.meta.preprocess.size, cam_grid(det)
    return f"- `{model_label(det)}` ({origin}): {det.meta.architecture}, {size} px input, {rows}x{cols} CAM cells{recorded}."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=data_root() / "casia1", help="CASIA v1.0 folder with fake/ and masks/")
    ap.add_argument("--limit", type=int, default=60, help="images to score (seeded random subset; 0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", action="append", default=[], help="checkpoint or shipped name for Grad-CAM rows")
    ap.add_argument("--write", action="store_true", help="put the table into docs/benchmarks/localisation.md")
    ap.add_argument("--doc", type=Path, default=page_of(HEADING))
    ap.add_argument("--val-only", action="store_true",
                    help="only images of the validation split fakescope train holds out (seed 0, 20%%), so a model "
                         "trained on casia1 is not scored on its own training images")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    if not (args.data / "masks").is_dir():
        log.error("%s: no masks/ folder (set FAKESCOPE_DATA or --data)", args.data)
        return 2
    pairs = find_pairs(args.data)
    if args.val_only:
        from fakescope.data.splits import stratified_split

        held_out = {s.path.name for s in stratified_split(discover_samples(args.data), 0.2, 0)[1]}
        pairs = [pair for pair in pairs if pair[0].name in held_out]
    if args.limit and args.limit < len(pairs):
        pairs = sorted(random.Random(args.seed).sample(pairs, args.limit))
    models = [Detector.load(m, device="cpu") for m in args.model]
    labels = [model_label(m) for m in models]
    if len(set(labels)) < len(labels):
        log.error("two --model options have the same label (%s); name them apart", ", ".join(labels))
        return 2
    rows = run(pairs, models)
    md = table(rows)
    if models:
        md += "\n\n" + comparison(rows, models)
    print(md)
    if args.write:
        command = "python bench/localisation.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        body = (f"Pixel-level localisation on {len(rows[0].aucs)} CASIA v1.0 tampered images with ground-truth "
                f"masks (seeded subset, seed {args.seed}), each heatmap scored at the image's resolution; per-image "
                f"ROC-AUC and best F1 over thresholds, averaged. Produced by:\n\n    {command}\n\n{md}\n")
        if models:
            body += "\nGrad-CAM models:\n" + "\n".join(describe(d) for d in models) + "\n"
        body += ("\nThe CAM maps come from the last convolutional stage (the cells listed per model above), so they "
                 "point at regions, not outlines; ELA and the noise level are per-pixel. The copy-move regions are the "
                 "hulls of the keypoints one transform maps onto each other, the copy and its source both (CASIA's "
                 "masks mark the pasted copy only), and nothing where the check finds no evidence (a constant map, "
                 "ROC-AUC 0.5). Per kind: the mean over that kind's images (how many in brackets). \"Mark "
                 "everything\" is the floor: ROC-AUC 0.5 and the F1 of calling every pixel tampered.\n")
        if models:
            body += ("\nDifferences: per-image scores of one heatmap minus another's on the same images (Grad-CAM++ "
                     "minus Grad-CAM for each model; each later model minus the first, per method); mean, with a "
                     "paired bootstrap 95% interval over the images (2,000 draws, seed 0). The scan report, the REST "
                     "service and `fakescope explain` draw Grad-CAM++ unless told otherwise "
                     "(`fakescope.explain.DEFAULT_CAM`).\n")
        write_section(HEADING, body, args.doc)
        log.info("wrote %s to %s", HEADING, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
