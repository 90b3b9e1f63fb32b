"""Offline face detection and cropping.

The detector is OpenCV's Viola-Jones cascade (``haarcascade_frontalface_default.xml``) that ships inside the
``opencv-python-headless`` wheel (``cv2.data.haarcascades``; OpenCV 4.x wheels carry the cascades, 5.x ones do
not, hence the ``<5`` pin): nothing is downloaded, it runs in a few milliseconds per frame on one CPU core, and
it finds frontal faces. Profile faces and small faces are missed; such frames are scored whole and flagged.

:class:`FaceDetector` is a small frozen dataclass, so it pickles into scan worker processes; each process loads
the cascade once.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


class FaceDetectorError(RuntimeError):
    """The face detector cannot be used (OpenCV missing, cascade file not found)."""


@dataclass(frozen=True)
class FaceBox:
    """A face in pixel coordinates of the frame: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    def to_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    @property
    def area(self) -> int:
        return self.w * self.h


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


@dataclass(frozen=True)
class FaceDetector:
    """Frontal faces in an RGB image, largest first.

    ``min_size``: smallest face side as a fraction of the image's shorter side. ``max_side``: frames are shrunk
    to at most this side for detection (boxes are mapped back), which keeps 1080p video fast.
    """

    cascade: str = DEFAULT_CASCADE
    scale_factor: float = 1.2  # half the pyramid levels of 1.1, same faces found on faces140k (34 of 40)
    min_neighbors: int = 4
    min_size: float = 0.1
    max_side: int = 640
    max_faces: int = 3

    def detect(self, img: Image.Image) -> list[FaceBox]:
        import cv2

        scale = min(1.0, self.max_side / max(img.size))
        small = img if scale == 1.0 else img.resize((round(img.width * scale), round(img.height * scale)),
                                                      Image.Resampling.BILINEAR)
        gray = cv2.equalizeHist(np.asarray(small.convert("L")))
        side = max(16, int(min(gray.shape) * self.min_size))
        found = _cascade(self.cascade).detectMultiScale(gray, scaleFactor=self.scale_factor,
                                                         minNeighbors=self.min_neighbors, minSize=(side, side))
        boxes = [FaceBox(*(round(v / scale) for v in b)) for b in np.asarray(found).reshape(-1, 4).tolist()]
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


def crop_face(img: Image.Image, box: FaceBox, margin: float = 0.3) -> Image.Image:
    """The face in ``box`` with ``margin`` of context around it (see :func:`crop_box`)."""
    return img.crop(crop_box(box, img.width, img.height, margin))
