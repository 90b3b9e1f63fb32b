"""Robustness sweeps: the same metrics after JPEG re-compression, blur, downscaling and the shortcut test.

Each perturbation is a picklable module-level function (or a :func:`functools.partial` of one) applied to the
decoded image inside the scan's worker processes, so a sweep streams like any scan.

The shortcut test re-saves every image once as JPEG at quality 90 from its decoded pixels, which also drops all
metadata. A detector whose accuracy falls there leaned on the files' compression history or metadata (CASIA's
tampered and authentic images differ in both) rather than on the content. One re-save does not erase the first
compression, though: on CASIA, 27 pixel-only compression numbers still tell the classes apart after it
(:mod:`fakescope.evaluation.shortcuts`). The resampled shortcut test shrinks every image to 0.75x before the same
re-save, which moves the pixels off the old 8x8 JPEG grid and leaves those numbers far less to read
(docs/benchmarks/shortcuts.md): a detector whose score does not fall from the first test to the resampled one is
not reading the first compression.
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter

from fakescope.data.discovery import Sample
from fakescope.evaluation.metrics import compute_metrics
from fakescope.forensics.ela import resave_jpeg

log = logging.getLogger(__name__)


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` (from pixels: no EXIF, ICC or other metadata survives)."""
    return resave_jpeg(img, quality)


def gaussian_blur(img: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels."""
    return img.filter(ImageFilter.GaussianBlur(radius=float(sigma)))


def downscale(img: Image.Image, factor: float) -> Image.Image:
    """Resize by ``factor`` (< 1 shrinks) with an antialiasing filter, as sharing sites do."""
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.LANCZOS)


def resample_resave(img: Image.Image, factor: float = 0.75, quality: int = 90) -> Image.Image:
    """Shrink by ``factor`` (off the old JPEG grid), then re-save at ``quality`` from the pixels."""
    return jpeg(downscale(img, factor), quality)


#: The shortcut test's name: every image re-saved once at JPEG q90 from its pixels, metadata dropped.
SHORTCUT = "shortcut: q90, no metadata"
#: The stronger test: shrunk to 0.75x first, so the first compression's traces go too.
SHORTCUT_RESAMPLED = "shortcut: 0.75x, q90, no metadata"
#: Name -> perturbation (None = the clean images). The order is the table's and the plot's.
PERTURBATIONS: dict[str, Callable[[Image.Image], Image.Image] | None] = {
    "clean": None,
    "jpeg q95": partial(jpeg, quality=95),
    "jpeg q75": partial(jpeg, quality=75),
    "jpeg q50": partial(jpeg, quality=50),
    "jpeg q30": partial(jpeg, quality=30),
    "blur sigma 1": partial(gaussian_blur, sigma=1.0),
    "blur sigma 2": partial(gaussian_blur, sigma=2.0),
    "downscale 0.5": partial(downscale, factor=0.5),
    "downscale 0.25": partial(downscale, factor=0.25),
    SHORTCUT: partial(jpeg, quality=90),
    SHORTCUT_RESAMPLED: partial(resample_resave, factor=0.75, quality=90),
}
SUMMARY_KEYS = ("n", "accuracy", "roc_auc", "average_precision", "eer", "ece", "accuracy_real", "accuracy_fake")


def subsample(samples: Sequence[Sample], limit: int | None, seed: int = 0) -> list[Sample]:
    """At most ``limit`` samples, the same share of each class, chosen with a fixed seed (None: all)."""
    if limit is None or limit >= len(samples):
        return list(samples)
    rng = random.Random(seed)
    by_class: dict[int, list[Sample]] = {}
    for s in samples:
        by_class.setdefault(s.label, []).append(s)
    picked: list[Sample] = []
    for _, group in sorted(by_class.items()):
        k = max(1, round(limit * len(group) / len(samples)))
        picked += rng.sample(group, min(k, len(group)))
    return sorted(picked, key=lambda s: str(s.path))


def robustness_sweep(detector, samples: Sequence[Sample], names: Sequence[str] | None = None,
                     threshold: float | None = None, batch_size: int = 32, workers: int | None = None,
                     on_result: Callable | None = None) -> list[dict[str, Any]]:
    """One row of metrics per perturbation: ``{"perturbation": name, **compute_metrics(...), "n_errors": k}``."""
    from fakescope.evaluation.evaluate import score_samples

    names = list(PERTURBATIONS) if names is None else list(names)
    unknown = [n for n in names if n not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbation(s) {unknown}; known: {', '.join(PERTURBATIONS)}")
    thr = detector.threshold if threshold is None else threshold
    rows = []
    for name in names:
        labels, probs, failed = score_samples(detector, list(samples), batch_size, workers, on_result,
                                              transform=PERTURBATIONS[name])
        metrics = compute_metrics(labels, probs, thr)
        rows.append({"perturbation": name, **metrics, "n_errors": len(failed)})
        log.info("%s: accuracy %.3f, ROC-AUC %s", name, metrics["accuracy"], _fmt(metrics["roc_auc"]))
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _delta(value: float | None, clean: float | None) -> str:
    return "-" if value is None or clean is None else f"{value - clean:+.3f}"


def robustness_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table: accuracy, ROC-AUC (and their change from the clean row), EER and ECE."""
    clean = rows[0] if rows and rows[0]["perturbation"] == "clean" else {}
    lines = ["| perturbation | n | accuracy | Δ acc | ROC-AUC | Δ AUC | EER | ECE | acc real | acc fake |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['perturbation']} | {r['n']} | {_fmt(r['accuracy'])} | "
                     f"{_delta(r['accuracy'], clean.get('accuracy'))} | {_fmt(r['roc_auc'])} | "
                     f"{_delta(r['roc_auc'], clean.get('roc_auc'))} | {_fmt(r['eer'])} | {_fmt(r['ece'])} | "
                     f"{_fmt(r['accuracy_real'])} | {_fmt(r['accuracy_fake'])} |")
    return "\n".join(lines)


def robustness_table(rows: Sequence[dict[str, Any]]):
    """The same table as :func:`robustness_markdown`, for the terminal (a :class:`rich.table.Table`)."""
    from rich.table import Table

    clean = rows[0] if rows and rows[0]["perturbation"] == "clean" else {}
    table = Table("perturbation", "n", "acc", "Δ acc", "ROC-AUC", "Δ AUC", "EER", "ECE")
    for column in table.columns[1:]:
        column.no_wrap = True
    for r in rows:
        table.add_row(r["perturbation"], str(r["n"]), _fmt(r["accuracy"]), _delta(r["accuracy"], clean.get("accuracy")),
                      _fmt(r["roc_auc"]), _delta(r["roc_auc"], clean.get("roc_auc")), _fmt(r["eer"]), _fmt(r["ece"]))
    return table


def write_robustness(rows: Sequence[dict[str, Any]], out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """``robustness.json``, ``robustness.md`` and ``robustness.png`` in ``out_dir``."""
    from fakescope.evaluation.plots import plot_robustness

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "robustness.json", "markdown": out_dir / "robustness.md"}
    paths["json"].write_text(json.dumps(list(rows), indent=2) + "\n")
    paths["markdown"].write_text((f"{title}\n\n" if title else "") + robustness_markdown(rows) + "\n")
    paths["plot"] = plot_robustness(rows, out_dir / "robustness.png", title=title)
    return paths
