"""Clips: what a temporal detector reads, ``T`` evenly spaced frames of a video, each the largest face (cropped
with a margin, eyes levelled when the face detector gives landmarks) or the whole frame when no face is found, prepared by the frame :class:`Preprocess`.

A detector declares that it reads clips in its preprocessing: ``Preprocess.extra["clip"]`` holds a
:class:`ClipSpec`. That travels in the checkpoint with the weights, so training (:class:`ClipPreparer` in the
video dataset) and scanning (:func:`fakescope.video.scan.prepare_video`) cut clips the same way.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fakescope.data.preprocess import Preprocess
from fakescope.video.faces import FaceBox, FaceDetector, crop_face
from fakescope.video.frames import iter_frames

CLIP_KEY = "clip"
#: ``meta.info["kind"]`` of checkpoints whose model reads clips (loaded as a clip detector).
CLIP_KIND = "clip"


@dataclass(frozen=True)
class ClipSpec:
    """``frames``: clip length T; ``faces``: crop the largest face of each frame; ``margin``: context kept around
    the face, as a fraction of its side on every side; ``align``: turn each face so its eyes are level."""

    frames: int = 8
    faces: bool = True
    margin: float = 0.3
    align: bool = True

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"a clip needs at least one frame, got {self.frames}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipSpec:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown clip settings: {sorted(unknown)}")
        # checkpoints saved before alignment existed were trained on unaligned crops: keep reading them so
        return cls(**{"align": False, **d})


def clip_preprocess(size: int, spec: ClipSpec, input_mode: str = "rgb", imagenet_norm: bool = True) -> Preprocess:
    """The frame preprocessing of a clip detector, carrying ``spec``."""
    return Preprocess.for_mode(input_mode, size, imagenet_norm, extra={CLIP_KEY: spec.to_dict()})


def clip_spec(preprocess: Any) -> ClipSpec | None:
    """The clip settings a preprocessing declares, or None for a detector of single images."""
    extra = getattr(preprocess, "extra", None)
    if not isinstance(extra, dict) or CLIP_KEY not in extra:
        return None
    return ClipSpec.from_dict(extra[CLIP_KEY])


def clip_info(preprocess: Preprocess) -> dict[str, Any]:
    """Checkpoint ``info`` entries that make ``Detector.load`` build a clip detector ({} for image models)."""
    return {"kind": CLIP_KIND} if clip_spec(preprocess) is not None else {}


def fit_length(items: list, length: int) -> list:
    """``length`` items evenly spread over ``items`` (repeating some when there are fewer)."""
    if not items:
        raise ValueError("no frames")
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, length).round()]


def face_input(img: Image.Image, preparer: Any, faces: FaceDetector | None, margin: float,
               align: bool = True) -> tuple[np.ndarray, list[FaceBox]]:
    """The largest face of ``img`` (or the whole image) through ``preparer``, and the face boxes found."""
    boxes = faces.detect(img) if faces is not None else []
    return preparer.to_array(crop_face(img, boxes[0], margin, align) if boxes else img), boxes


@dataclass(frozen=True)
class ClipPreparer:
    """Picklable ``to_array(video_path) -> uint8 (T, H, W, C)`` for training data loaders."""

    preprocess: Preprocess
    faces: FaceDetector = field(default_factory=FaceDetector)

    @property
    def spec(self) -> ClipSpec:
        spec = clip_spec(self.preprocess)
        if spec is None:
            raise ValueError("this preprocessing declares no clip (Preprocess.extra['clip'])")
        return spec

    def to_array(self, path: str | Path) -> np.ndarray:
        spec = self.spec
        detector = self.faces if spec.faces else None
        arrays = [face_input(f.image, self.preprocess, detector, spec.margin, spec.align)[0]
                  for f in iter_frames(path, frames=spec.frames)]
        return np.ascontiguousarray(np.stack(fit_length(arrays, spec.frames)))
