"""Find labelled images in the folder layouts forensic datasets use.

Supported (folder names in any letter case, searched recursively below each class folder):

- ``real/`` + ``fake/`` (also ``0_real/`` + ``1_fake/``), anywhere below the root, e.g. ``Train/Real`` and
  ``Test/Fake``;
- CASIA style ``Au/`` (authentic) + ``Tp/`` or ``Sp/`` (tampered).

Label 0 is real, 1 is fake. A class folder is recognised by its own name only, so ``train/real`` and
``val/real`` both count; pass the sub-folder (e.g. ``data/Test``) to use a single split.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fakescope.forensics.io import is_image_file

CLASS_NAMES = ("real", "fake")
_REAL = re.compile(r"^(\d+_)?(real|au|authentic|pristine)$", re.IGNORECASE)
_FAKE = re.compile(r"^(\d+_)?(fake|tp|sp|tampered|forged|synthetic)$", re.IGNORECASE)
_SKIP_DIRS = re.compile(r"^(masks?|gt|groundtruth|ground_truth)$", re.IGNORECASE)

log = logging.getLogger(__name__)


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


def _never(name: str) -> bool:
    return False


def is_image_name(name: str) -> bool:
    return is_image_file(Path(name))


def walk(root: str | Path, keep: Callable[[str], bool], *, sort: bool = True,
         claim: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Files below ``root`` whose name ``keep`` accepts, depth first; hidden entries and mask folders are skipped,
    symbolic links to folders are not followed, and a folder that cannot be listed is logged and skipped.

    ``sort``: each folder's entries by name (a stable order for datasets); otherwise as ``os.scandir`` lists them,
    which holds no folder's names in memory and is the same on every walk of an unchanged folder (scan workers
    each take their share of it). ``claim``: folders whose name it accepts are yielded instead of entered (the
    class folders of :func:`discover_labelled`).
    """
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError as err:
            log.warning("cannot list %s: %s", folder, err.strerror or err)
            continue
        subdirs: list[str] = []
        with entries:
            for entry in sorted(entries, key=lambda e: e.name) if sort else entries:
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir and claim is not None and claim(entry.name):
                    yield Path(entry.path)
                elif is_dir:
                    if not is_mask_folder(entry.name):
                        subdirs.append(entry.path)
                elif keep(entry.name):
                    yield Path(entry.path)
        stack.extend(reversed(subdirs))


def discover_labelled(root: str | Path, keep: Callable[[str], bool], what: str, hint: str) -> list[Sample]:
    """Every file ``keep`` accepts below the class folders under ``root`` (a class folder is taken whole, never
    searched for class folders again), labelled by its class folder; :class:`LayoutError` ``"no labelled <what>
    found; <hint>"`` when there are none."""
    root = Path(root)
    if not root.exists():
        raise LayoutError(f"{root}: path does not exist")
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    samples: list[Sample] = []
    # Mask / ground-truth trees often mirror the class folders (GT/fake/...): walk() never enters them.
    for folder in walk(root, _never, claim=lambda name: folder_label(name) is not None):
        label = folder_label(folder.name)
        samples.extend(Sample(p, label) for p in walk(folder, keep))
    if not samples:
        raise LayoutError(f"{root}: no labelled {what} found; {hint}")
    return samples


def discover_samples(root: str | Path) -> list[Sample]:
    """All labelled images below ``root``; raises :class:`LayoutError` with a hint when there are none."""
    return discover_labelled(root, is_image_name, "images", "expected class folders such as real/ + fake/, "
                             "Train/Real + Train/Fake, 0_real/ + 1_fake/ or Au/ + Tp/")


def iter_image_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders (recursively) into image paths, lazily, without listing everything first.

    A path given explicitly (even a missing one, or one with an unusual extension) is yielded as it is, so
    that the scan reports it as an error entry instead of silently dropping it.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from walk(path, is_image_name)
        else:
            yield path
