"""Evaluation figures, the cross-dataset table files and training-history plots."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.evaluation.plots import (
    Scored,
    confident_examples,
    plot_history,
    read_history,
    write_evaluation_plots,
)

runner = CliRunner()
HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_roc_auc", "lr",
                   "train_images_per_s", "seconds"]


def _is_png_with_content(path: Path, min_side: int = 200) -> None:
    assert path.is_file(), path
    with Image.open(path) as img:
        assert img.format == "PNG" and min(img.size) >= min_side
        arr = np.asarray(img.convert("L"))
    assert arr.std() > 5, f"{path.name} looks blank"


def _records(tiny_images, n: int = 6) -> list[Scored]:
    paths = tiny_images(n, folder="imgs")
    probs = [0.95, 0.1, 0.8, 0.3, 0.45, 0.6]
    return [Scored(str(p), int(i % 2 == 0), probs[i]) for i, p in enumerate(paths)]


def test_confident_examples_ranks_by_confidence(tiny_images) -> None:
    recs = _records(tiny_images)
    right, wrong = confident_examples(recs, threshold=0.5, n=2)
    # labels alternate fake, real, ...: confidence is that of the predicted class, so 0.1 on a real image
    # (0.9 sure of "real") outranks 0.8 on a fake one; 0.6 on a real image and 0.45 on a fake one are wrong.
    assert [r.probability for r in right] == [0.95, 0.1]
    assert [r.probability for r in wrong] == [0.6, 0.45]


def test_write_evaluation_plots(tmp_path: Path, tiny_images) -> None:
    written = write_evaluation_plots(_records(tiny_images), 0.5, tmp_path / "plots")
    assert set(written) == {"roc", "pr", "confusion_matrix", "reliability", "examples"}
    for path in written.values():
        _is_png_with_content(path)
    one_class = [r for r in _records(tiny_images) if r.label == 1]
    assert set(write_evaluation_plots(one_class, 0.5, tmp_path / "one")) == {"confusion_matrix", "examples"}
    with pytest.raises(ValueError):
        write_evaluation_plots([], 0.5, tmp_path / "none")


def _write_history(run: Path, epochs: int = 4) -> None:
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HISTORY_COLUMNS)
        for e in range(1, epochs + 1):
            w.writerow([e, 0.7 / e, 0.5 + e / 10, 0.8 / e, 0.5 + e / 12, 0.55 + e / 10, 1e-3, 150.0, 12.5])


def test_plot_history(tmp_path: Path) -> None:
    _write_history(tmp_path / "run")
    h = read_history(tmp_path / "run" / "history.csv")
    assert h["epoch"] == [1.0, 2.0, 3.0, 4.0] and h["val_loss"][1] == pytest.approx(0.4)
    _is_png_with_content(plot_history(tmp_path / "run"))
    res = runner.invoke(app, ["plot-history", str(tmp_path / "run"), "--out", str(tmp_path / "h.png")])
    assert res.exit_code == 0, res.output
    _is_png_with_content(tmp_path / "h.png")
    res = runner.invoke(app, ["plot-history", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "cannot plot the history" in res.output


def _labelled(tiny_images, name: str, seed: int) -> Path:
    tiny_images(3, folder=f"{name}/real", seed=seed)
    return tiny_images(3, folder=f"{name}/fake", seed=seed + 50)[0].parents[1]


def test_evaluate_writes_plots_and_cross_table(tmp_path: Path, tiny_images, tiny_ela_checkpoint: Path) -> None:
    a, b = _labelled(tiny_images, "setA", 1), _labelled(tiny_images, "setB", 2)
    res = runner.invoke(app, ["evaluate", "--data", str(a), "--model", str(tiny_ela_checkpoint),
                              "--plots", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    for name in ("roc", "pr", "confusion_matrix", "reliability", "examples"):
        _is_png_with_content(tmp_path / "plots" / f"{name}.png")

    prefix = tmp_path / "tables" / "cross"
    res = runner.invoke(app, ["evaluate", "--data", str(a), "--data", str(b), "--model", str(tiny_ela_checkpoint),
                              "--table-out", str(prefix), "--plots", str(tmp_path / "many"), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout[res.stdout.index("["):])
    table = json.loads(prefix.with_suffix(".json").read_text())
    assert table["metric"] == "roc_auc" and table["datasets"] == [str(a), str(b)]
    model = rows[0]["model"]
    assert table["table"][model][str(b)] == pytest.approx(rows[1]["roc_auc"])
    md = prefix.with_suffix(".md").read_text()
    assert md.startswith("| roc_auc |") and str(b) in md and f"{rows[0]['roc_auc']:.3f}" in md
    assert len([p for p in (tmp_path / "many").iterdir() if (p / "roc.png").is_file()]) == 2
