"""Find labelled images in the folder layouts forensic datasets use.

Supported (folder names in any letter case, searched recursively below each class folder):

- ``real/`` + ``fake/`` (also ``0_real/`` + ``1_fake/``), anywhere below the root, e.g. ``Train/Real`` and
  ``Test/Fake``;
- CASIA style ``Au/`` (authentic) + ``Tp/`` or ``Sp/`` (tampered).

Label 0 is real, 1 is fake. A class folder is recognised by its own name only, so ``train/real`` and
``val/real`` both count; pass the sub-folder (e.g. ``data/Test``) to use a single split.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fakescope.forensics.io import is_image_file

CLASS_NAMES = ("real", "fake")
_REAL = re.compile(r"^(\d+_)?(real|au|authentic|pristine)$", re.IGNORECASE)
_FAKE = re.compile(r"^(\d+_)?(fake|tp|sp|tampered|forged|synthetic)$", re.IGNORECASE)
_SKIP_DIRS = re.compile(r"^(masks?|gt|groundtruth|ground_truth)$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 = real, 1 = fake


class LayoutError(ValueError):
    """The folder holds no labelled images in a known layout."""


def is_mask_folder(name: str) -> bool:
    """Whether a folder of this name holds masks / ground truth (never read as images)."""
    return bool(_SKIP_DIRS.match(name))


def folder_label(name: str) -> int | None:
    """0 for a real-class folder name, 1 for a fake-class one, None otherwise."""
    if _REAL.match(name):
        return 0
    if _FAKE.match(name):
        return 1
    return None


def _walk_images(root: Path) -> Iterator[Path]:
    """Image files below ``root`` in a stable (sorted) order, skipping mask folders and hidden entries."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _SKIP_DIRS.match(d))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and is_image_file(path):
                yield path


def discover_samples(root: str | Path) -> list[Sample]:
    """All labelled images below ``root``; raises :class:`LayoutError` with a hint when there are none."""
    root = Path(root)
    if not root.exists():
        raise LayoutError(f"{root}: path does not exist")
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    samples: list[Sample] = []
    for dirpath, dirnames, _ in os.walk(root):
        # Mask / ground-truth trees often mirror the class folders (GT/fake/...): never read them as images.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _SKIP_DIRS.match(d))
        for d in list(dirnames):
            label = folder_label(d)
            if label is None:
                continue
            dirnames.remove(d)  # a class folder is consumed whole; do not descend twice
            samples.extend(Sample(p, label) for p in _walk_images(Path(dirpath) / d))
    if not samples:
        raise LayoutError(
            f"{root}: no labelled images found; expected class folders such as real/ + fake/, "
            "Train/Real + Train/Fake, 0_real/ + 1_fake/ or Au/ + Tp/"
        )
    return samples


def iter_image_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders (recursively) into image paths, lazily, without listing everything first.

    A path given explicitly (even a missing one, or one with an unusual extension) is yielded as it is, so
    that the scan reports it as an error entry instead of silently dropping it.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _walk_images(path)
        else:
            yield path
