"""How much of a dataset's labels can be read without looking at what the pictures show: shortcut baselines.

Two model-free baselines, each a gradient-boosted tree classifier (scikit-learn's ``HistGradientBoostingClassifier``)
fitted on the training split and scored by ROC-AUC on the validation split, the same split ``fakescope train`` makes:

- ``metadata``: four numbers from the file header (JPEG quantisation level, EXIF present, width, height);
- ``compression history``: 27 numbers from the decoded pixels (the JPEG ghost curve and 8x8 blockiness,
  :mod:`fakescope.forensics.compression`).

Each is measured on the files as stored and after each shortcut test (:mod:`fakescope.evaluation.robustness`).
A detector's score on a test means little where these baselines still score high on it: a model could be reading
the same numbers. On CASIA v1.0 the compression-history baseline still scores high after the one-re-save shortcut
test and far lower after the resampled one (docs/benchmarks/shortcuts.md). The pixel numbers also see texture, so
what they score after a test is an upper bound on the compression shortcut left, not all of it shortcut.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fakescope.data.discovery import Sample
from fakescope.evaluation.robustness import PERTURBATIONS, SHORTCUT, SHORTCUT_RESAMPLED
from fakescope.forensics.compression import HEADER_NAMES, compression_history, header_numbers
from fakescope.forensics.io import ImageLoadError, image_header
from fakescope.inference.scan import auto_workers, iter_prepared

log = logging.getLogger(__name__)

AS_STORED = "as stored"
#: Condition name -> perturbation of the decoded image (None: the files as they are).
CONDITIONS: dict[str, Callable[[Image.Image], Image.Image] | None] = {
    AS_STORED: None,
    SHORTCUT: PERTURBATIONS[SHORTCUT],
    SHORTCUT_RESAMPLED: PERTURBATIONS[SHORTCUT_RESAMPLED],
}
#: Baseline name -> its columns in a file's feature vector (header numbers, then compression history).
BASELINES = {"metadata": slice(0, len(HEADER_NAMES)), "compression history": slice(len(HEADER_NAMES), None)}


class ShortcutNumbers:
    """The scan pipeline's preparer (picklable, run in its workers): a decoded and perturbed image -> the header
    numbers of that image (a perturbation's re-encoded output keeps its quantisation tables), then its
    compression history."""

    def to_array(self, img: Image.Image) -> np.ndarray:
        return np.concatenate([header_numbers(img), compression_history(img)])


def file_header(path: str | Path) -> np.ndarray:
    """:func:`header_numbers` of the file as stored (header only: a decoded copy has lost its tables and EXIF);
    :class:`ImageLoadError` for a file that cannot be opened as the decoder would."""
    with image_header(path) as raw:
        return header_numbers(raw)


def extract(paths: Sequence[str | Path], transform: Callable | None, workers: int | None = None,
            on_file: Callable[[], None] | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Feature vectors of ``paths`` under ``transform`` (None: as stored), decoded in ``workers`` processes by the
    scan pipeline (None: as many as a scan would use): (path -> features, path -> one-line error)."""
    workers = auto_workers(len(paths)) if workers is None else workers
    feats, errors = {}, {}
    for item in iter_prepared(paths, ShortcutNumbers(), workers, transform):
        if item.error is not None:
            errors[item.path] = item.error
        elif transform is None:
            try:
                feats[item.path] = np.concatenate([file_header(item.path), item.array[BASELINES["compression history"]]])
            except ImageLoadError as err:  # changed on disk since it was decoded
                errors[item.path] = err.reason
        else:
            feats[item.path] = item.array
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
    paths = [str(s.path) for s in [*train, *val]]
    rows, errors = [], {}
    for name in names:
        feats, failed = extract(paths, CONDITIONS[name], workers, on_file)
        errors.update(failed)
        rows.append(_row(name, feats, train, val))
        log.debug("%s: metadata %s, compression history %s", name, rows[-1]["metadata"], rows[-1]["compression history"])
    return {"rows": rows, "errors": [f"{path}: {reason}" for path, reason in sorted(errors.items())],
            "warning": _size_warning(np.array([s.label for s in train]), len(val))}


def _row(name: str, feats: dict[str, np.ndarray], train: Sequence[Sample], val: Sequence[Sample]) -> dict[str, Any]:
    """One condition's baselines from the readable files' features."""
    tr = [s for s in train if str(s.path) in feats]
    va = [s for s in val if str(s.path) in feats]
    row: dict[str, Any] = {"condition": name, "n_train": len(tr), "n_val": len(va)}
    if not (tr and va):
        return {**row, **dict.fromkeys(BASELINES)}
    x_tr = np.stack([feats[str(s.path)] for s in tr])
    x_va = np.stack([feats[str(s.path)] for s in va])
    y_tr, y_va = np.array([s.label for s in tr]), np.array([s.label for s in va])
    for baseline, columns in BASELINES.items():
        row[baseline] = baseline_auc(x_tr[:, columns], y_tr, x_va[:, columns], y_va)
    return row


#: Below this many training images of a class the trees barely split (scikit-learn's min_samples_leaf is 20), and
#: below this many validation images a ROC-AUC is a rough figure.
FEW_TRAIN_PER_CLASS, FEW_VAL = 40, 100


def _size_warning(train_labels: np.ndarray, n_val: int) -> str | None:
    smallest = int(np.bincount(train_labels, minlength=2).min()) if len(train_labels) else 0
    if smallest >= FEW_TRAIN_PER_CLASS and n_val >= FEW_VAL:
        return None
    return (f"{smallest} training images in the smaller class and {n_val} validation images: the baselines need at "
            f"least {FEW_TRAIN_PER_CLASS} and {FEW_VAL} to mean much (0.5 here may only say there was too little to learn)")


def shortcuts_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = ["| condition | n train / val | metadata (4 numbers) | compression history (27 numbers) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['condition']} | {r['n_train']} / {r['n_val']} | {_fmt(r['metadata'])} | "
                     f"{_fmt(r['compression history'])} |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
