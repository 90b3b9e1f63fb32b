"""How much of a dataset's labels can be read without looking at what the pictures show: shortcut baselines.

Two model-free baselines, each a gradient-boosted tree classifier (scikit-learn's ``HistGradientBoostingClassifier``)
fitted on the training split and scored by ROC-AUC on the validation split, the same split ``fakescope train`` makes:

- ``metadata``: four numbers from the file header (JPEG quantisation level, EXIF present, width, height);
- ``compression history``: 27 numbers from the decoded pixels (the JPEG ghost curve and 8x8 blockiness,
  :mod:`fakescope.forensics.compression`).

Each is measured on the files as stored and after each shortcut test (:mod:`fakescope.evaluation.robustness`).
A detector's score on a test means little where these baselines still score high on it: a model could be reading
the same numbers. On CASIA v1.0 the compression-history baseline scores 0.98 after the one-re-save shortcut test and
0.61 after the resampled one (docs/benchmarks.md, "Shortcut baselines"). The pixel numbers also see texture, so
what they score after a test is an upper bound on the compression shortcut left, not all of it shortcut.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fakescope.data.discovery import Sample
from fakescope.evaluation.robustness import PERTURBATIONS, SHORTCUT, SHORTCUT_RESAMPLED
from fakescope.forensics.compression import compression_history, header_numbers
from fakescope.forensics.io import MediaLoadError, load_image

log = logging.getLogger(__name__)

AS_STORED = "as stored"
#: Condition name -> perturbation of the decoded image (None: the files as they are).
CONDITIONS: dict[str, Callable[[Image.Image], Image.Image] | None] = {
    AS_STORED: None,
    SHORTCUT: PERTURBATIONS[SHORTCUT],
    SHORTCUT_RESAMPLED: PERTURBATIONS[SHORTCUT_RESAMPLED],
}
BASELINES = ("metadata", "compression history")


def file_features(path: str | Path, transform: Callable[[Image.Image], Image.Image] | None) -> tuple[np.ndarray, np.ndarray]:
    """(header numbers, compression history) of one file as stored, or of its decoded pixels after ``transform``
    (whose output, re-encoded or not, is what the header numbers then describe). Raises ``MediaLoadError``."""
    img = load_image(path)
    if transform is None:
        with Image.open(path) as raw:  # the header only: load_image's decoded copy has no quantisation tables
            header = header_numbers(raw)
    else:
        img = transform(img)
        header = header_numbers(img)
    return header, compression_history(img)


class _Features(Dataset):
    """Features of each file under one condition, or the one-line reason it could not be read."""

    def __init__(self, paths: Sequence[Path], transform: Callable | None):
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        try:
            return i, file_features(self.paths[i], self.transform)
        except MediaLoadError as err:
            return i, err.reason
        except Exception as err:  # noqa: BLE001  one odd file is reported, not the end of the measurement
            return i, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def extract(paths: Sequence[Path], transform: Callable | None, workers: int | None = None,
            on_file: Callable[[], None] | None = None) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], dict[int, str]]:
    """Features of ``paths`` under ``transform``, computed in ``workers`` processes (None: as many as a scan would
    use; 0: in this process): (index -> features, index -> error)."""
    from fakescope.inference.scan import auto_workers

    workers = auto_workers(len(paths)) if workers is None else workers
    loader = DataLoader(_Features(paths, transform), batch_size=8, num_workers=workers, collate_fn=list)
    feats, errors = {}, {}
    for batch in loader:
        for i, value in batch:
            (errors if isinstance(value, str) else feats)[i] = value
            if on_file is not None:
                on_file()
    return feats, errors


def baseline_auc(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int = 0) -> float | None:
    """Validation ROC-AUC of a gradient-boosted tree classifier fitted on the training features (None if a split
    lacks a class)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y_train)) < 2 or len(np.unique(y_val)) < 2:
        return None
    clf = HistGradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
    return float(roc_auc_score(y_val, clf.predict_proba(x_val)[:, 1]))


def shortcut_baselines(train: Sequence[Sample], val: Sequence[Sample], conditions: Sequence[str] | None = None,
                       workers: int | None = None, on_file: Callable[[], None] | None = None) -> dict[str, Any]:
    """For each condition, the validation ROC-AUC of each baseline (``BASELINES``) fitted on ``train``.

    Returns ``{"rows": [{"condition", "metadata", "compression history", "n_train", "n_val"}, ...], "errors": [...],
    "warning": str | None}``; unreadable files are left out and listed once in ``errors`` as ``"path: reason"``;
    ``warning`` says when the splits are too small for the figures to mean much."""
    names = list(CONDITIONS) if conditions is None else list(conditions)
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; known: {', '.join(CONDITIONS)}")
    samples = list(train) + list(val)
    paths = [s.path for s in samples]
    labels = np.array([s.label for s in samples])
    rows, errors = [], {}
    for name in names:
        feats, failed = extract(paths, CONDITIONS[name], workers, on_file)
        errors.update(failed)
        rows.append(_row(name, feats, labels, len(train)))
        log.debug("%s: metadata %s, compression history %s", name, rows[-1]["metadata"], rows[-1]["compression history"])
    return {"rows": rows, "errors": [f"{paths[i]}: {reason}" for i, reason in sorted(errors.items())],
            "warning": _size_warning(labels[: len(train)], len(val))}


#: Below this many training images of a class the trees barely split (scikit-learn's min_samples_leaf is 20), and
#: below this many validation images a ROC-AUC is a rough figure.
FEW_TRAIN_PER_CLASS, FEW_VAL = 40, 100


def _size_warning(train_labels: np.ndarray, n_val: int) -> str | None:
    smallest = int(np.bincount(train_labels, minlength=2).min()) if len(train_labels) else 0
    if smallest >= FEW_TRAIN_PER_CLASS and n_val >= FEW_VAL:
        return None
    return (f"{smallest} training images in the smaller class and {n_val} validation images: the baselines need at "
            f"least {FEW_TRAIN_PER_CLASS} and {FEW_VAL} to mean much (0.5 here may only say there was too little to learn)")


def _row(name: str, feats: dict[int, tuple[np.ndarray, np.ndarray]], labels: np.ndarray, n_train: int) -> dict[str, Any]:
    """One condition's baselines from the readable files' features (indices below ``n_train`` are the training split)."""
    tr = [i for i in sorted(feats) if i < n_train]
    va = [i for i in sorted(feats) if i >= n_train]
    row: dict[str, Any] = {"condition": name, "n_train": len(tr), "n_val": len(va)}
    for k, baseline in enumerate(BASELINES):
        row[baseline] = (baseline_auc(np.stack([feats[i][k] for i in tr]), labels[tr],
                                      np.stack([feats[i][k] for i in va]), labels[va]) if tr and va else None)
    return row


def shortcuts_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = ["| condition | n train / val | metadata (4 numbers) | compression history (27 numbers) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['condition']} | {r['n_train']} / {r['n_val']} | {_fmt(r['metadata'])} | "
                     f"{_fmt(r['compression history'])} |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
