"""Ground-truth tampering masks: which pixels of a tampered image were changed, for the pixel-level loss.

Tampering sets ship masks in a folder beside the class folders (``masks/``, ``mask/``, ``gt/``, ``groundtruth/``),
one per tampered image, named ``<image stem>_gt.png`` (CASIA v1.0 masks), ``<stem>_mask.png`` (``fakescope
synth``) or ``<stem>.png``; white is tampered. In a set that has masks every real image is known to have no
tampered pixel; a fake without a mask, and every image of a set without masks, has no pixel target.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fakescope.data.discovery import Sample, is_mask_folder
from fakescope.forensics.io import ImageLoadError, is_image_file, load_image

#: The pixel target of a real image of a set with masks: no tampered pixel.
CLEAN = "clean"
#: A sample's pixel target: a mask file, :data:`CLEAN`, or None (unknown: no pixel loss for it).
PixelTarget = Path | str | None

_SUFFIX = re.compile(r"_(gt|mask)$", re.IGNORECASE)


def find_masks(root: str | Path) -> dict[str, Path]:
    """Mask files below ``root`` by the stem of the image they belong to (``x_gt.png`` -> ``x``)."""
    masks: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if not is_mask_folder(Path(dirpath).name):
            continue
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if is_image_file(path):
                masks.setdefault(_SUFFIX.sub("", path.stem), path)
    return masks


def pixel_targets(samples: Sequence[Sample], root: str | Path) -> list[PixelTarget]:
    """The pixel target of each sample of the set at ``root`` (see the module docstring)."""
    masks = find_masks(root)
    if not masks:
        return [None] * len(samples)
    return [CLEAN if s.label == 0 else masks.get(s.path.stem) for s in samples]


def load_mask(target: PixelTarget, size: tuple[int, int]) -> np.ndarray | None:
    """The uint8 (H, W) mask (255 = tampered) of an image of ``size`` (width, height); None when unknown.

    A mask of another size is resized to the image's with nearest-neighbour sampling (some published masks are).
    """
    if target is None:
        return None
    if target == CLEAN:
        return np.zeros((size[1], size[0]), np.uint8)
    try:
        mask = load_image(target).convert("L")  # decoded as its image is: EXIF orientation applied, bounded
    except ImageLoadError as err:
        raise ImageLoadError(target, f"unreadable mask ({err.reason})") from None
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    return np.where(np.asarray(mask) > 127, 255, 0).astype(np.uint8)
