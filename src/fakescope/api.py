"""The Python API at the package top: ``fakescope.detect`` and ``fakescope.scan``.

Both go through the same steps as ``fakescope scan``: a file is decoded by :func:`~fakescope.forensics.io.load_image`
(EXIF orientation applied, any colour mode turned into 8-bit RGB), prepared by the detector's own preprocessing and
scored in batches by :func:`fakescope.inference.scan.score_prepared`; the answer is the same :class:`Result` that
the CLI writes as JSON (``Result.to_dict()``). An image already in memory (a PIL image or a NumPy array) gets the
same orientation and colour handling before it is scored, so a phone photo scores the same in a notebook as on
the command line.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from fakescope.forensics.io import as_rgb
from fakescope.inference.detector import Detector
from fakescope.inference.scan import Prepared, ScanResult, prepare_file, score_prepared
from fakescope.inference.scan import scan as _scan
from fakescope.video.scan import VideoOptions

#: What ``fakescope.detect`` and ``fakescope.scan`` return: one scored file (the CLI's JSON row is ``to_dict()``).
Result = ScanResult
#: An image to score: a file path, a PIL image or an array of pixels (RGB order, H x W or H x W x 3/4).
ImageSource = Union[str, Path, Image.Image, np.ndarray]
ModelSpec = Union[str, Path, Detector]


@functools.lru_cache(maxsize=4)
def _cached_detector(model: str, backend: str, device: str) -> Detector:
    return Detector.load(model, device=device, backend=backend)


def get_detector(model: ModelSpec = "default", backend: str = "auto", device: str = "auto") -> Detector:
    """A loaded detector (shipped name, checkpoint path or ``.onnx`` file), loaded once per process and reused;
    a :class:`~fakescope.inference.detector.Detector` passed in is returned as it is. ``backend`` defaults to the
    CLI's: ONNX Runtime where the export works, else PyTorch."""
    if isinstance(model, Detector):
        return model
    return _cached_detector(str(model), backend, device)


def image_from_array(array: np.ndarray) -> Image.Image:
    """A NumPy image (RGB order; H x W, H x W x 1, 3 or 4; uint8, uint16, or float in 0..1) as a PIL image.

    Arrays from OpenCV are BGR: pass ``array[..., ::-1]``.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise ValueError(f"an image array must be H x W or H x W x 3/4, not shape {a.shape}")
    if a.dtype.kind == "f":
        a = np.clip(_unit_floats(a) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif a.dtype == np.uint16:
        a = (a.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise ValueError(f"an image array must be uint8, uint16, bool or float (0..1), not {a.dtype}")
    return Image.fromarray(np.ascontiguousarray(a))


def _unit_floats(a: np.ndarray) -> np.ndarray:
    """``a`` itself when every value is in 0..1; else ValueError (pixels in 0..255 as floats would be clipped to
    white and mis-scored, and NaN is no pixel)."""
    if np.isnan(a).any():
        raise ValueError("a float image array must not contain NaN")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"a float image array must hold values in 0..1, not {lo:g}..{hi:g}: pass uint8 pixels "
                         "(e.g. array.astype(np.uint8)) or scale to 0..1 (array / 255)")
    return a


def _prepare_source(source: ImageSource, detector: Detector, video: VideoOptions | None) -> Prepared:
    if isinstance(source, (str, Path)):
        return prepare_file(0, source, detector.preparer, video=video, provenance=True)
    if isinstance(source, np.ndarray):
        img, name = image_from_array(source), "<array>"
    elif isinstance(source, Image.Image):
        img, name = source, getattr(source, "filename", "") or "<image>"
    else:
        raise TypeError(f"detect() takes a path, a PIL image or a NumPy array, not {type(source).__name__}")
    return Prepared(0, str(name), detector.prepare(as_rgb(img)), None)


def detect(source: ImageSource, model: ModelSpec = "default", *, threshold: float | None = None,
           backend: str = "auto", device: str = "auto", video: VideoOptions | None = None) -> Result:
    """Score one image (a path, a PIL image or a NumPy array) or one video file.

    ``model``: a shipped detector name (``"default"``), a checkpoint or ``.onnx`` path, or a loaded Detector
    (loaded once and reused across calls). A file path also gives the file's ``provenance``, as a scan does.
    A file that cannot be read gives a Result with ``error`` set, as in a
    scan; a source of the wrong type or shape, or a float array outside 0..1, raises ``TypeError`` / ``ValueError``.

    >>> r = fakescope.detect("photo.jpg")
    >>> r.fake_probability, r.label, r.to_dict()
    """
    detector = get_detector(model, backend, device)
    item = _prepare_source(source, detector, video)
    ((_, result),) = score_prepared([item], detector, threshold=threshold)
    return result


def scan(paths: str | Path | Iterable[str | Path], model: ModelSpec = "default", *, threshold: float | None = None,
         batch_size: int = 32, workers: int | None = None, backend: str = "auto", device: str = "auto",
         video: VideoOptions | None = None, **kwargs: Any) -> Iterator[Result]:
    """Score files and folders (searched recursively) as ``fakescope scan`` does: one Result per file, yielded as
    each is scored (in completion order), errors per file, with each image's provenance. Other keyword arguments
    (``skip``, ``transform``, ``on_result``, ``provenance=False``, ``trust_credentials``) go to
    :func:`fakescope.inference.scan.scan`.

    >>> for r in fakescope.scan(["photos/"]):
    ...     print(r.path, r.label)
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    kwargs.setdefault("provenance", True)  # as the CLI: each image's provenance beside its score
    detector = get_detector(model, backend, device)
    yield from _scan(list(paths), detector, batch_size, workers, threshold, video=video, **kwargs)
