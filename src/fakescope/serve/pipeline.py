"""From uploaded bytes to results: media-type check, bounded decoding, scoring, explanation images.

Uploads never touch a named file: the request body is bounded before it is read (``max_body_size``) and the
image is decoded from memory.
"""
from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass

from PIL import Image
from starlette.concurrency import run_in_threadpool

from fakescope import explain
from fakescope.explain.cam import DEFAULT_CAM
from fakescope.familiarity import decide
from fakescope.forensics.io import ImageLoadError, open_image
from fakescope.forensics.provenance import read_provenance
from fakescope.inference.scan import trusted_label
from fakescope.serve.runtime import ModelRuntime
from fakescope.serve.schemas import DetectResult, Explanation

log = logging.getLogger(__name__)

#: Declared content types accepted besides ``image/*``: what clients send when they do not know the type.
GENERIC_TYPES = frozenset({"", "application/octet-stream"})


class UploadRejected(Exception):
    """An upload that cannot be scored: ``status`` is the HTTP code, ``str(err)`` the one-line reason."""

    def __init__(self, status: int, reason: str):
        self.status = status
        super().__init__(reason)


@dataclass
class Upload:
    name: str
    content_type: str | None
    data: bytes


def check_media_type(upload: Upload) -> None:
    """415 for a part declared as something other than an image (e.g. ``text/plain``)."""
    ctype = (upload.content_type or "").split(";")[0].strip().lower()
    if ctype not in GENERIC_TYPES and not ctype.startswith("image/"):
        raise UploadRejected(415, f"{upload.name}: content type {ctype!r} is not an image")


def decode(upload: Upload, max_pixels: int) -> Image.Image:
    """Bytes -> RGB image; 422 with the decoder's one-line reason (not an image, truncated, too many pixels)."""
    check_media_type(upload)
    if not upload.data:
        raise UploadRejected(422, f"{upload.name}: file is empty (0 bytes)")
    try:
        return open_image(upload.data, max_pixels=max_pixels, name=upload.name)
    except ImageLoadError as err:
        raise UploadRejected(422, str(err)) from None


@dataclass
class Reading:
    """What is read besides the pixels: ``provenance`` from the uploaded bytes, and whether a valid C2PA manifest
    declaring AI generation sets the label (``trust_credentials``, see :func:`~fakescope.inference.scan.trusted_label`)."""

    provenance: bool = True
    trust_credentials: bool = False


async def score_uploads(runtime: ModelRuntime, uploads: list[Upload], strict: bool,
                        threshold: float | None = None,
                        reading: Reading | None = None) -> list[tuple[DetectResult, Image.Image | None]]:
    """Decode, prepare and score ``uploads`` in one model call; pairs each result with its decoded image. Labels
    use ``threshold``, or the model's own when it is None; each result carries the upload's provenance unless
    ``reading`` turns it off.

    ``strict`` (single-image endpoint): raise :class:`UploadRejected` for a bad upload and keep the image for
    explanations. Otherwise (batch) a bad upload becomes a result with ``error`` set, the others are still scored,
    and decoded images are dropped as soon as they are prepared (so many small, highly compressed uploads cannot
    pile up gigabytes of pixels).
    """
    detector, model = runtime.detector, runtime.model_name
    assert detector is not None and model is not None
    threshold = detector.threshold if threshold is None else threshold
    reading = reading or Reading()
    out: list[tuple[DetectResult, Image.Image | None]] = []
    arrays, scored = [], []
    for up in uploads:
        result = DetectResult(path=up.name, fake_probability=None, label=None, model=model, threshold=threshold)
        if reading.provenance and up.data:
            result.provenance = await run_in_threadpool(read_provenance, up.data, up.name)
        try:
            img = await run_in_threadpool(decode, up, runtime.settings.max_pixels)
            arrays.append(await run_in_threadpool(detector.prepare, img))
        except UploadRejected as err:
            if strict:
                raise
            result.error = str(err)
        except Exception as err:  # noqa: BLE001  as in scan: one odd file must not fail the whole batch
            if strict:
                raise
            log.exception("preparing %s failed", up.name)
            result.error = f"{up.name}: cannot prepare image ({type(err).__name__})"
        else:
            result.width, result.height = img.size
            scored.append(result)
        out.append((result, img if strict and result.error is None else None))
    probs, familiar = await runtime.predict(arrays) if arrays else ([], None)
    for i, (result, p) in enumerate(zip(scored, probs)):
        result.familiarity = None if familiar is None else round(float(familiar[i]), 4)
        result.fake_probability, result.label = float(p), decide(float(p), result.familiarity, threshold)
        if reading.trust_credentials:
            trusted_label(result)
    return out


def png_base64(img: Image.Image, max_side: int) -> str:
    """A display-sized copy of ``img`` as base64 PNG."""
    view = img.copy()
    view.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    view.convert("RGB").save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


async def explain_image(runtime: ModelRuntime, img: Image.Image, method: str = DEFAULT_CAM) -> Explanation:
    """ELA map and class-activation overlay for ``img`` (from :mod:`fakescope.explain`), as base64 PNGs."""
    max_side = runtime.settings.explain_max_side
    out = Explanation(method=method)
    out.ela_png = await run_in_threadpool(lambda: png_base64(explain.ela_view(img), max_side))
    try:
        heatmap = await runtime.run_model(lambda: explain.cam_heatmap(runtime.detector, img, method=method))
    except explain.ExplainError as err:
        out.error = f"{method} unavailable: {err}"
        return out
    except Exception:
        log.exception("%s failed", method)
        out.error = f"{method} failed (see the server log)"
        return out
    small = img.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out.gradcam_png = await run_in_threadpool(lambda: png_base64(explain.overlay(small, heatmap), max_side))
    return out
