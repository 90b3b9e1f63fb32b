"""Scanning a video: sampled frames, faces found and cropped, a score per face and per frame, one per video.

- Every sampled frame is searched for faces (:class:`~fakescope.video.faces.FaceDetector`: MTCNN, else OpenCV's
  Haar cascade); each face, cropped with a margin and turned so its eyes are level, is scored by the detector, and the frame's score is its most suspicious face. A frame without
  a face is scored whole and flagged (``"face": false``).
- The video's score is the mean of its ``top_k`` highest frame scores: a few convincing fake frames are enough
  to flag a video, one odd frame is not (``Detector.score_frames``). A clip detector (a temporal model) instead
  scores the sequence of frames itself: a learned aggregator.

Decoding and face detection (:func:`prepare_video`) run in the scan's worker processes; only the small
preprocessed crops travel to the main process, where :func:`score_video` batches them through the detector.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.forensics.io import MAX_PIXELS
from fakescope.video.clips import clip_spec
from fakescope.video.faces import FaceBox, FaceDetector, crop_face
from fakescope.video.frames import DEFAULT_FRAMES, iter_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoOptions:
    """How a video is sampled and scored: ``frames`` evenly spaced frames, or with ``every`` each ``every``-th
    (at most ``max_frames``); faces cropped with ``margin`` and, with ``align``, turned so the eyes are level
    (``faces=False`` scores whole frames); the video's score is the mean of the ``top_k`` highest frame scores."""

    frames: int = DEFAULT_FRAMES
    every: int | None = None
    max_frames: int | None = None
    top_k: int = 5
    faces: bool = True
    margin: float = 0.3
    align: bool = True
    face_detector: FaceDetector = field(default_factory=FaceDetector)

    def __post_init__(self) -> None:
        if self.frames < 1 or self.top_k < 1 or (self.every is not None and self.every < 1):
            raise ValueError("frames, top_k and every must be at least 1")

    def for_preparer(self, preparer: Any) -> VideoOptions:
        """A clip detector's own face settings win, so scanning crops frames as its training did."""
        spec = clip_spec(preparer)
        return self if spec is None else replace(self, faces=spec.faces, margin=spec.margin, align=spec.align)


@dataclass
class SampledFrame:
    """A sampled frame after face detection: one prepared input per face, or one for the whole frame."""

    index: int
    time: float
    boxes: list[FaceBox]
    inputs: list[Any]


@dataclass
class PreparedVideo:
    path: str
    frames: list[SampledFrame]
    options: VideoOptions


def prepare_video(path: str | Path, preparer: Any, options: VideoOptions | None = None,
                  transform: Callable | None = None, max_pixels: int = MAX_PIXELS) -> PreparedVideo:
    """Sample, (transform,) find faces and prepare every input of a video; raises ``VideoLoadError`` (frames over
    ``max_pixels``, an image's limit, see :data:`~fakescope.video.frames.FRAME_COST`, included)."""
    options = (options or VideoOptions()).for_preparer(preparer)
    faces = options.face_detector if options.faces else None
    frames = []
    for vf in iter_frames(path, options.frames, options.every, options.max_frames, max_pixels):
        img = transform(vf.image) if transform is not None else vf.image
        boxes = faces.detect(img) if faces is not None else []
        crops = [crop_face(img, b, options.margin, options.align) for b in boxes] or [img]
        frames.append(SampledFrame(vf.index, vf.time, boxes, [preparer.to_array(c) for c in crops]))
    return PreparedVideo(str(path), frames, options)


def top_k_mean(scores: list[float] | np.ndarray, k: int) -> float:
    """Mean of the ``k`` highest scores (all of them when there are fewer)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no frame scores")
    return float(scores[-k:].mean())


def _predict(detector: Any, inputs: list[Any], batch_size: int) -> np.ndarray:
    return np.concatenate([np.asarray(detector.predict_batch(inputs[i:i + batch_size]), dtype=np.float64)
                           for i in range(0, len(inputs), batch_size)])


def frame_records(video: PreparedVideo, input_scores: np.ndarray) -> list[dict[str, Any]]:
    """One JSON-ready record per sampled frame: index, time (s), score, face flag, faces with box and score."""
    records, at = [], 0
    for f in video.frames:
        scores = [float(s) for s in input_scores[at:at + len(f.inputs)]]
        at += len(f.inputs)
        records.append({"index": f.index, "time": round(f.time, 4), "score": max(scores), "face": bool(f.boxes),
                        "faces": [{"box": b.to_list(), "score": s} for b, s in zip(f.boxes, scores)]})
    return records


def score_video(video: PreparedVideo, detector: Any, batch_size: int = 32) -> tuple[float, list[dict[str, Any]]]:
    """(the video's fake probability, the frame records) for a prepared video."""
    inputs = [x for f in video.frames for x in f.inputs]
    records = frame_records(video, _predict(detector, inputs, batch_size))
    # the largest face (or the whole frame) of every frame, in order, for kinds that read sequences
    firsts = [f.inputs[0] for f in video.frames]
    return detector.score_frames(firsts, [r["score"] for r in records], video.options.top_k), records

