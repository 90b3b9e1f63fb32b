"""Evaluation figures as PNG files: ROC, precision-recall, confusion matrix, reliability diagram, example grid,
training history and robustness sweeps; and the cross-dataset table as markdown + JSON files.

Figures are built on :class:`matplotlib.figure.Figure` and rendered by the Agg canvas (no pyplot state, no
display needed, safe in a server); scikit-learn's display classes draw the standard curves.
"""
from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
)

from fakescope.forensics.io import ImageLoadError, load_image

log = logging.getLogger(__name__)

CLASS_NAMES = ("real", "fake")


@dataclass
class Scored:
    """One labelled, scored image (label 1 = fake)."""

    path: str
    label: int
    probability: float


def new_figure(width: float = 5.0, height: float = 4.5, **subplots: Any) -> tuple[Figure, Any]:
    """A figure on the Agg canvas and its axes."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**subplots)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _two_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def plot_roc(y: Sequence[int], p: Sequence[float], path: str | Path, title: str = "") -> Path:
    fig, ax = new_figure()
    RocCurveDisplay.from_predictions(y, p, ax=ax, name="detector", pos_label=1, plot_chance_level=True)
    ax.set_title(title or "ROC curve (fake = positive)")
    return save_figure(fig, path)


def plot_pr(y: Sequence[int], p: Sequence[float], path: str | Path, title: str = "") -> Path:
    fig, ax = new_figure()
    PrecisionRecallDisplay.from_predictions(y, p, ax=ax, name="detector", pos_label=1, plot_chance_level=True)
    ax.set_title(title or "Precision-recall curve (fake = positive)")
    return save_figure(fig, path)


def plot_confusion(y: Sequence[int], p: Sequence[float], threshold: float, path: str | Path, title: str = "") -> Path:
    fig, ax = new_figure()
    pred = (np.asarray(p) >= threshold).astype(int)
    ConfusionMatrixDisplay.from_predictions(y, pred, labels=[0, 1], display_labels=list(CLASS_NAMES), ax=ax,
                                            cmap="Blues", colorbar=False)
    ax.set_title(title or f"Confusion matrix at threshold {threshold:.3f}")
    return save_figure(fig, path)


def plot_reliability(y: Sequence[int], p: Sequence[float], path: str | Path, n_bins: int = 10, title: str = "") -> Path:
    """Reliability diagram: observed fraction of fakes against the predicted fake probability, plus a histogram."""
    fig, (ax, hist) = new_figure(5.0, 6.0, nrows=2, height_ratios=[3, 1], sharex=True)
    CalibrationDisplay.from_predictions(y, p, n_bins=n_bins, ax=ax, name="detector", pos_label=1)
    ax.set_title(title or "Reliability diagram")
    ax.set(xlabel="", ylabel="fraction actually fake")
    hist.hist(np.asarray(p), bins=n_bins, range=(0, 1), color="tab:gray")
    hist.set_xlabel("predicted fake probability")
    hist.set_ylabel("images")
    return save_figure(fig, path)


def confident_examples(records: Sequence[Scored], threshold: float, n: int = 8) -> tuple[list[Scored], list[Scored]]:
    """(most confident right predictions, most confident wrong ones), ``n`` of each at most."""
    def confidence(r: Scored) -> float:
        return r.probability if r.probability >= threshold else 1.0 - r.probability

    def correct(r: Scored) -> bool:
        return int(r.probability >= threshold) == r.label

    ranked = sorted(records, key=confidence, reverse=True)
    return [r for r in ranked if correct(r)][:n], [r for r in ranked if not correct(r)][:n]


def _thumb(ax, record: Scored, threshold: float, size: int) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    try:
        img = load_image(record.path)
        img.thumbnail((size, size))
        ax.imshow(np.asarray(img))
    except ImageLoadError:
        ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes)
    pred = CLASS_NAMES[int(record.probability >= threshold)]
    ax.set_title(f"{pred} {record.probability:.2f}\ntrue {CLASS_NAMES[record.label]}: {Path(record.path).name[:18]}",
                 fontsize=7)


def plot_examples(records: Sequence[Scored], threshold: float, path: str | Path, n: int = 8, size: int = 128) -> Path:
    """A grid: the ``n`` most confident right predictions on top, the ``n`` most confident wrong ones below."""
    right, wrong = confident_examples(records, threshold, n)
    cols = max(len(right), len(wrong), 1)
    fig, axes = new_figure(1.9 * cols + 0.8, 4.6, nrows=2, ncols=cols, squeeze=False)
    for row, (name, group) in enumerate((("most confident right", right), ("most confident wrong", wrong))):
        for col in range(cols):
            ax = axes[row][col]
            if col < len(group):
                _thumb(ax, group[col], threshold, size)
            else:
                ax.axis("off")
        if not group:
            axes[row][0].text(0.5, 0.5, "none", ha="center", va="center", transform=axes[row][0].transAxes)
        axes[row][0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"Predictions at threshold {threshold:.3f} (label: fake probability)", fontsize=9)
    return save_figure(fig, path)


def write_evaluation_plots(records: Sequence[Scored], threshold: float, out_dir: str | Path) -> dict[str, Path]:
    """Every evaluation figure for ``records`` into ``out_dir``; curves that need both classes are skipped
    (with a warning) when only one is present."""
    if not records:
        raise ValueError("no scored images to plot")
    out_dir = Path(out_dir)
    y = np.array([r.label for r in records], dtype=int)
    p = np.array([r.probability for r in records], dtype=np.float64)
    written = {"confusion_matrix": plot_confusion(y, p, threshold, out_dir / "confusion_matrix.png"),
               "examples": plot_examples(records, threshold, out_dir / "examples.png")}
    if _two_classes(y):
        written["roc"] = plot_roc(y, p, out_dir / "roc.png")
        written["pr"] = plot_pr(y, p, out_dir / "pr.png")
        written["reliability"] = plot_reliability(y, p, out_dir / "reliability.png")
    else:
        log.warning("only one class in the data: ROC, PR and reliability plots skipped")
    return written


def scored_records(results: Sequence[Any], labels: dict[str, int]) -> list[Scored]:
    """Scan results (``path``, ``fake_probability``, ``error``) joined with their labels; errors dropped."""
    return [Scored(r.path, labels[r.path], float(r.fake_probability))
            for r in results if r.error is None and r.path in labels]


def plot_folder_results(results: Sequence[Any], data: str | Path, threshold: float,
                        out_dir: str | Path) -> dict[str, Path]:
    """Evaluation figures for scan results of the labelled folder ``data`` (labels from its layout)."""
    from fakescope.data.discovery import discover_samples

    labels = {str(s.path): s.label for s in discover_samples(data)}
    return write_evaluation_plots(scored_records(results, labels), threshold, out_dir)


def write_cross_table(rows: Sequence[dict[str, Any]], prefix: str | Path, key: str = "roc_auc") -> tuple[Path, Path]:
    """The model x dataset table of ``key`` as ``PREFIX.md`` and ``PREFIX.json``."""
    from fakescope.evaluation.tables import cross_markdown

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    models = list(dict.fromkeys(r["model"] for r in rows))
    datas = list(dict.fromkeys(r["data"] for r in rows))
    table = {m: {d: None for d in datas} for m in models}
    for r in rows:
        table[r["model"]][r["data"]] = r.get(key)
    md, js = prefix.with_name(prefix.name + ".md"), prefix.with_name(prefix.name + ".json")
    md.write_text(cross_markdown(list(rows), key) + "\n")
    js.write_text(json.dumps({"metric": key, "models": models, "datasets": datas, "table": table}, indent=2) + "\n")
    return md, js


def read_history(path: str | Path) -> dict[str, list[float]]:
    """A training run's ``history.csv`` as column -> values (numbers; empty cells become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no epochs recorded")
    return {k: [float(r[k]) if r.get(k) not in (None, "") else float("nan") for r in rows] for k in rows[0]}


def plot_history(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Loss and accuracy per epoch from ``RUN_DIR/history.csv`` -> ``RUN_DIR/history.png`` (or ``out``)."""
    run_dir = Path(run_dir)
    h = read_history(run_dir / "history.csv")
    epochs = h["epoch"]
    fig, (loss_ax, acc_ax) = new_figure(9.0, 3.8, ncols=2)
    for key, style in (("train_loss", "-o"), ("val_loss", "-s")):
        if key in h:
            loss_ax.plot(epochs, h[key], style, label=key.replace("_", " "))
    for key, style in (("train_accuracy", "-o"), ("val_accuracy", "-s"), ("val_roc_auc", "--^")):
        if key in h:
            acc_ax.plot(epochs, h[key], style, label=key.replace("_", " "))
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy / ROC-AUC", title="Accuracy", ylim=(0, 1.02))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Training history: {run_dir.name}", fontsize=10)
    return save_figure(fig, out or run_dir / "history.png")


def plot_robustness(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Accuracy and ROC-AUC under each perturbation, as horizontal bars (clean on top)."""
    names = [r["perturbation"] for r in rows]
    ypos = np.arange(len(names))
    fig, axes = new_figure(9.0, 0.45 * len(names) + 1.6, ncols=2, sharey=True)
    for ax, key, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "roc_auc", "ROC-AUC")):
        values = [np.nan if r.get(key) is None else r[key] for r in rows]
        ax.barh(ypos, values, color=["tab:green" if i == 0 else "tab:blue" for i in range(len(rows))])
        if values and not np.isnan(values[0]):
            ax.axvline(values[0], color="tab:green", linestyle=":", linewidth=1)
        for y, v in zip(ypos, values):
            if not np.isnan(v):
                ax.text(min(v + 0.01, 0.9), y, f"{v:.3f}", va="center", fontsize=7)
        ax.set(xlim=(0, 1), xlabel=label)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ypos, names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title or "Robustness to perturbations", fontsize=10)
    return save_figure(fig, path)
