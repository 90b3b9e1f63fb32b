"""Offline face detection, landmarks and aligned crops.

Two detectors whose weights ship inside installed packages, so nothing is downloaded:

- ``mtcnn`` (the default): the MTCNN cascade of Zhang et al. (2016) from ``facenet-pytorch`` (MIT; its P-, R- and
  O-Net weights are files inside the wheel). It finds faces turned sideways, tilted or small that the cascade
  below misses, and gives five landmarks (eyes, nose, mouth corners): crops are then turned so the eyes are level
  (:func:`aligned_crop`), as face-forgery detectors are usually trained.
- ``haar``: OpenCV's Viola-Jones cascade (``haarcascade_frontalface_default.xml``, inside the
  ``opencv-python-headless`` wheel; 4.x wheels carry the cascades, 5.x ones do not, hence the ``<5`` pin). Frontal
  faces only and no landmarks, so its crops are not aligned. It is the fallback when facenet-pytorch is missing.

A frame without a face is scored whole and flagged. :class:`FaceDetector` is a small frozen dataclass, so it
pickles into scan worker processes; each process loads its model once.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


class FaceDetectorError(RuntimeError):
    """The face detector cannot be used (OpenCV missing, cascade file not found)."""


Point = tuple[float, float]


@dataclass(frozen=True)
class FaceBox:
    """A face in pixel coordinates of the frame: left, top, width, height; with a landmark detector also its
    detection ``score``, ``eyes`` and ``mouth`` corners (each pair: the one on the image's left first)."""

    x: int
    y: int
    w: int
    h: int
    score: float | None = None
    eyes: tuple[Point, Point] | None = None
    mouth: tuple[Point, Point] | None = None

    def to_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    @property
    def area(self) -> int:
        return self.w * self.h

    def scaled(self, factor: float) -> FaceBox:
        """The box (and landmarks) in a frame ``factor`` times the size of the one it was found in."""
        def scale(pair: tuple[Point, Point] | None) -> tuple[Point, Point] | None:
            return None if pair is None else tuple((x * factor, y * factor) for x, y in pair)

        return replace(self, x=round(self.x * factor), y=round(self.y * factor), w=round(self.w * factor),
                       h=round(self.h * factor), eyes=scale(self.eyes), mouth=scale(self.mouth))


@functools.lru_cache(maxsize=4)
def _cascade(name: str):
    try:
        import cv2
    except ImportError as err:
        raise FaceDetectorError(f"face detection needs OpenCV: pip install 'opencv-python-headless<5' ({err})") from None
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    path = name if os.path.isabs(name) else os.path.join(folder, name)
    cascade = cv2.CascadeClassifier(path) if os.path.isfile(path) else None
    if cascade is None or cascade.empty():
        raise FaceDetectorError(f"{name}: OpenCV cascade not found in {folder or 'cv2.data'} "
                                "(the OpenCV 4.x wheels ship them; 5.x ones do not)")
    return cascade


@functools.lru_cache(maxsize=4)
def _mtcnn(min_face_size: int):
    try:
        from facenet_pytorch import MTCNN
    except ImportError as err:
        raise FaceDetectorError(f"the mtcnn face detector needs facenet-pytorch: pip install 'facenet-pytorch>=2.5.3,<2.6' "
                                f"({err})") from None
    return MTCNN(keep_all=True, min_face_size=min_face_size, device="cpu")


@functools.lru_cache(maxsize=1)
def mtcnn_available() -> bool:
    """Whether facenet-pytorch is installed (else ``mtcnn`` falls back to ``haar``, saying so once)."""
    try:
        import facenet_pytorch  # noqa: F401
    except ImportError:
        log.warning("facenet-pytorch is not installed: faces in video come from OpenCV's Haar cascade (frontal "
                    "faces only, not aligned); pip install 'facenet-pytorch>=2.5.3,<2.6' for MTCNN")
        return False
    return True


def _haar_faces(det: FaceDetector, img: Image.Image, min_side: int) -> list[FaceBox]:
    import cv2

    gray = cv2.equalizeHist(np.asarray(img.convert("L")))
    found = _cascade(det.cascade).detectMultiScale(gray, scaleFactor=det.scale_factor,
                                                   minNeighbors=det.min_neighbors, minSize=(min_side, min_side))
    return [FaceBox(*b) for b in np.asarray(found).reshape(-1, 4).tolist()]


def _mtcnn_faces(det: FaceDetector, img: Image.Image, min_side: int) -> list[FaceBox]:
    import torch

    with torch.inference_mode():
        boxes, probs, points = _mtcnn(max(12, min_side)).detect(img.convert("RGB"), landmarks=True)
    if boxes is None:
        return []
    out = []
    for (x1, y1, x2, y2), p, pts in zip(boxes.tolist(), probs.tolist(), points.tolist()):
        x1, y1 = max(0.0, x1), max(0.0, y1)
        x2, y2 = min(float(img.width), x2), min(float(img.height), y2)
        if p >= det.min_confidence and min(x2 - x1, y2 - y1) >= min_side * 0.8:
            out.append(FaceBox(round(x1), round(y1), round(x2 - x1), round(y2 - y1), float(p),
                               eyes=(tuple(pts[0]), tuple(pts[1])), mouth=(tuple(pts[3]), tuple(pts[4]))))
    return out


#: Face detectors by name: (detector settings, frame shrunk to max_side, smallest face side in px) -> boxes.
FACE_BACKENDS: dict[str, Callable[[FaceDetector, Image.Image, int], list[FaceBox]]] = {
    "mtcnn": _mtcnn_faces,
    "haar": _haar_faces,
}


@dataclass(frozen=True)
class FaceDetector:
    """Faces in an RGB image, largest first.

    ``backend``: ``mtcnn`` (landmarks, aligned crops; falls back to ``haar`` without facenet-pytorch) or ``haar``.
    ``min_size``: smallest face side as a fraction of the image's shorter side. ``max_side``: frames are shrunk
    to at most this side for detection (boxes are mapped back), which keeps 1080p video fast. ``min_confidence``:
    MTCNN's face probability a face needs.
    """

    backend: str = "mtcnn"
    cascade: str = DEFAULT_CASCADE
    scale_factor: float = 1.2  # half the pyramid levels of 1.1, same faces found on faces140k (34 of 40)
    min_neighbors: int = 4
    min_confidence: float = 0.9
    min_size: float = 0.1
    max_side: int = 640
    max_faces: int = 3

    def __post_init__(self) -> None:
        if self.backend not in FACE_BACKENDS:
            raise ValueError(f"unknown face detector {self.backend!r}; use one of {sorted(FACE_BACKENDS)}")

    @property
    def effective_backend(self) -> str:
        return "haar" if self.backend == "mtcnn" and not mtcnn_available() else self.backend

    def detect(self, img: Image.Image) -> list[FaceBox]:
        scale = min(1.0, self.max_side / max(img.size))
        small = img if scale == 1.0 else img.resize((round(img.width * scale), round(img.height * scale)),
                                                      Image.Resampling.BILINEAR)
        min_side = max(16, int(min(small.size) * self.min_size))
        if min(small.size) < min_side:  # no face of the smallest size looked for fits (MTCNN raised on it)
            return []
        boxes = [b.scaled(1.0 / scale) for b in FACE_BACKENDS[self.effective_backend](self, small, min_side)]
        return sorted(boxes, key=lambda b: b.area, reverse=True)[:self.max_faces]


def crop_box(box: FaceBox, width: int, height: int, margin: float = 0.3) -> tuple[int, int, int, int]:
    """The square (left, top, right, bottom) around ``box`` grown by ``margin`` of its side on every side,
    moved inside the image where it can be, and clipped to it where it cannot."""
    side = max(box.w, box.h) * (1.0 + 2.0 * margin)
    side = min(side, max(width, height))
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    left = min(max(0.0, cx - side / 2.0), max(0.0, width - side))
    top = min(max(0.0, cy - side / 2.0), max(0.0, height - side))
    return round(left), round(top), min(width, round(left + side)), min(height, round(top + side))


def eye_angle(box: FaceBox) -> float:
    """How far the line through the eyes is turned from level, in degrees (positive: clockwise on screen)."""
    (lx, ly), (rx, ry) = box.eyes
    return math.degrees(math.atan2(ry - ly, rx - lx))


def aligned_crop(img: Image.Image, box: FaceBox, margin: float = 0.3) -> Image.Image:
    """The square :func:`crop_box` would cut, turned about its centre so the eyes are level: one affine resample
    (OpenCV), edge pixels repeated where the turned square leaves the frame."""
    import cv2

    left, top, right, bottom = crop_box(box, img.width, img.height, margin)
    side = max(right - left, bottom - top)
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    t = math.radians(eye_angle(box))
    c, s = math.cos(t), math.sin(t)
    # output pixel (u, v) -> frame pixel: the output's x axis runs along the eyes
    to_frame = np.array([[c, -s, cx - c * side / 2 + s * side / 2], [s, c, cy - s * side / 2 - c * side / 2]])
    out = cv2.warpAffine(np.asarray(img.convert("RGB")), to_frame, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(out)


def crop_face(img: Image.Image, box: FaceBox, margin: float = 0.3, align: bool = True) -> Image.Image:
    """The face in ``box`` with ``margin`` of context around it (see :func:`crop_box`), turned so the eyes are
    level when ``align`` and the detector gave eye landmarks."""
    if align and box.eyes is not None:
        return aligned_crop(img, box, margin)
    return img.crop(crop_box(box, img.width, img.height, margin))
