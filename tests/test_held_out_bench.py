"""bench/held_out_sets.py's pieces that decide its figures without training: the mean ensemble read from cached
left-out scores, and the sources each run trains on (``--exclude``); bench/neighbours.py's scores from features."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import held_out_sets  # noqa: E402
import neighbours  # noqa: E402


def _scores(run: Path, name: str, rows: dict[str, tuple[int, float, float | None]]) -> None:
    folder = run / f"without-{name}"
    folder.mkdir(parents=True)
    (folder / f"scores-{name}.json").write_text(json.dumps(rows))


def test_ensemble_is_the_mean_probability_over_the_images_every_run_scored(tmp_path: Path):
    rng = np.random.default_rng(0)
    paths = [f"/data/casia1/{'fake' if i % 2 else 'real'}/{i}.jpg" for i in range(40)]
    labels = [i % 2 for i in range(40)]
    a, b = rng.random(40), rng.random(40)
    _scores(tmp_path / "a", "casia1", {p: (y, float(s), 0.5) for p, y, s in zip(paths, labels, a)})
    _scores(tmp_path / "b", "casia1", {p: (y, float(s), None) for p, y, s in zip(paths[:30], labels, b)})
    table = held_out_sets.ensemble_table([tmp_path / "a", tmp_path / "b"], ["casia1"])
    expected = roc_auc_score(labels[:30], (a[:30] + b[:30]) / 2)  # only the 30 images both runs scored
    assert f"mean left-out ROC-AUC {expected:.3f}" in table and "(30) |" in table
    with pytest.raises(SystemExit, match="scores-faces140k.json"):
        held_out_sets.ensemble_table([tmp_path / "a"], ["faces140k"])


def test_excluded_sources_are_in_no_run(tmp_path: Path):
    recipe = REPO / "configs" / "five-sources.yaml"
    without = held_out_sets.run_config("casia1", tmp_path, recipe, {"epochs": "1"}, exclude=("wildfaces",))
    on_all = held_out_sets.run_config(None, tmp_path, recipe, exclude=("wildfaces",))
    assert [Path(p).name for p in without.data.path] == ["faces140k", "diffusiondb", "cameras"]
    assert [Path(p).name for p in on_all.data.path] == ["casia1", "faces140k", "diffusiondb", "cameras"]
    assert without.epochs == 1 and without.mask_loss == 0.0  # no set left with tampering masks
    assert Path(without.out) == tmp_path / "without-casia1" and Path(on_all.out) == tmp_path / "all"


def test_neighbour_scores_follow_the_class_of_the_nearest_training_images():
    """An unseen image lying among the training fakes scores fake and one among the training reals real, whatever the
    network said: every neighbour score then reads ROC-AUC 1, the network's own column its own figure."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 48)) * 3

    def cloud(label: int, n: int) -> np.ndarray:
        return centres[label] + rng.normal(size=(n, 48))

    test_labels = np.repeat([0, 1], 30)
    network = rng.random(60)
    f = {"train": np.concatenate([cloud(0, 80), cloud(1, 80)]), "train_labels": np.repeat([0, 1], 80),
         "val": np.concatenate([cloud(0, 40), cloud(1, 40)]), "val_labels": np.repeat([0, 1], 40),
         "test": np.concatenate([cloud(0, 30), cloud(1, 30)]), "test_labels": test_labels, "test_network": network,
         "val_network": (val_network := rng.random(80))}
    s = {name: roc_auc_score(*pair) for name, pair in neighbours.scores(f).items()}
    assert s["network"] == pytest.approx(roc_auc_score(test_labels, network))
    assert s["ratio 5"] == s["ratio 20"] == s["in-set"] == 1.0
    assert s["to reals"] == 1.0  # the fakes lie far from every training real
    assert s["mean"] > s["network"]
    assert s["in-set network"] == pytest.approx(roc_auc_score(f["val_labels"], val_network))
    assert s["in-set mean"] > s["in-set network"]  # the ratio separates the validation images the network does not
