"""From uploaded bytes to results: media-type check, bounded decoding, scoring, explanation images.

Uploads never touch a named file: the request body is bounded before it is read (``max_body_size``) and the
image is decoded from memory.
"""
from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fakescope.familiarity import decide
from fakescope.forensics.io import ImageLoadError, MediaLoadError, image_size, open_image
from fakescope.forensics.provenance import read_provenance
from fakescope.inference.detector import Scores
from fakescope.inference.scan import trusted_label
from fakescope.serve.runtime import ModelRuntime, PixelBudget, ServerBusy
from fakescope.serve.schemas import DetectResult, Explanation
from fakescope.video.frames import is_video_file, video_pixels

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


def _check_upload(upload: Upload) -> None:
    check_media_type(upload)
    if not upload.data:
        raise UploadRejected(422, f"{upload.name}: file is empty (0 bytes)")


def _pixels(upload: Upload, max_pixels: int) -> int:
    """The upload's pixel count from its header (nothing decoded); 422 for a bad header or too many pixels."""
    _check_upload(upload)
    try:
        w, h = image_size(upload.data, max_pixels=max_pixels, name=upload.name)
    except ImageLoadError as err:
        raise UploadRejected(422, str(err)) from None
    return w * h


def decode(upload: Upload, max_pixels: int) -> Image.Image:
    """Bytes -> RGB image; 422 with the decoder's one-line reason (not an image, truncated, too many pixels)."""
    _check_upload(upload)
    try:
        return open_image(upload.data, max_pixels=max_pixels, name=upload.name)
    except ImageLoadError as err:
        raise UploadRejected(422, str(err)) from None


def media_pixels(path: Path, max_pixels: int) -> int:
    """What decoding the file at ``path`` costs against the pixel budgets, from its header: an image's pixels, a
    video's frame pixels x :data:`~fakescope.video.frames.FRAME_COST`; 0 when the header already fails (too many
    pixels included), since such a file is never decoded and its error is reported where it is scanned."""
    try:
        if is_video_file(path):
            return video_pixels(path, max_pixels)
        w, h = image_size(path, max_pixels=max_pixels)
    except MediaLoadError:
        return 0
    return w * h


async def hold_pixels(runtime: ModelRuntime, paths: list[Path], lease: PixelLease) -> None:
    """Admission for files decoded one after another in a single model call (a report, a video): each file's
    header is read in the decoder threads, nothing decoded; the request's limit counts them all and the
    server's budget holds the largest until ``lease`` ends (:class:`ServerBusy`, answered 503, when it is full)."""
    max_pixels = runtime.settings.max_pixels
    costs = [await runtime.run_decoder(media_pixels, p, max_pixels) for p in paths]
    for path, n in zip(paths, costs):
        lease.count(n, path.name)
    lease.hold(max(costs, default=0))


@dataclass
class Reading:
    """What is read besides the pixels: ``provenance`` from the uploaded bytes, and whether a valid C2PA manifest
    declaring AI generation sets the label (``trust_credentials``, see :func:`~fakescope.inference.scan.trusted_label`)."""

    provenance: bool = True
    trust_credentials: bool = False


class PixelLease:
    """One request's share of the server's :class:`PixelBudget`: at most ``limit`` pixels decoded in all, and the
    pixels it holds given back when it is done (use as a context manager)."""

    def __init__(self, budget: PixelBudget, limit: int):
        self.budget, self.limit, self.spent, self.held = budget, limit, 0, 0

    def count(self, n: int, name: str) -> None:
        """``n`` more pixels against the request's own limit (422 past it), none held yet."""
        if self.spent + n > self.limit:
            raise UploadRejected(422, f"{name}: the request's files pass its limit of {self.limit:,} pixels "
                                      f"(FAKESCOPE_MAX_REQUEST_PIXELS); send them in several requests")
        self.spent += n

    def hold(self, n: int) -> None:
        """Hold ``n`` pixels of the server's budget (:class:`ServerBusy` when it is full) until given back."""
        self.budget.take(n)
        self.held += n

    def take(self, n: int, name: str) -> None:
        """Count and hold the pixels of an image about to be decoded."""
        self.count(n, name)
        self.hold(n)

    def give(self, n: int) -> None:
        self.budget.give(n)
        self.held -= n

    def __enter__(self) -> PixelLease:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.give(self.held)


async def _admit(runtime: ModelRuntime, up: Upload, lease: PixelLease) -> tuple[Image.Image, Any, int]:
    """Header, budget, then decoding and preparing in the decoder threads: (image, model input, pixels held)."""
    max_pixels = runtime.settings.max_pixels
    assert runtime.detector is not None
    pixels = await runtime.run_decoder(_pixels, up, max_pixels)
    lease.take(pixels, up.name)
    try:
        img = await runtime.run_decoder(decode, up, max_pixels)
        return img, await runtime.run_decoder(runtime.detector.prepare, img), pixels
    except BaseException:
        lease.give(pixels)
        raise


async def score_uploads(runtime: ModelRuntime, uploads: list[Upload], strict: bool, lease: PixelLease,
                        threshold: float | None = None,
                        reading: Reading | None = None) -> list[tuple[DetectResult, Image.Image | None]]:
    """Decode, prepare and score ``uploads`` in one model call; pairs each result with its decoded image. Labels
    use ``threshold``, or the model's own when it is None; each result carries the upload's provenance unless
    ``reading`` turns it off. Each image's pixels come from ``lease`` before it is decoded (:class:`ServerBusy`
    when the server holds too many; nothing is scored then).

    ``strict`` (single-image endpoint): raise :class:`UploadRejected` for a bad upload and keep the image (and its
    pixels) for explanations. Otherwise (batch) a bad upload becomes a result with ``error`` set, the others are
    still scored, and decoded images are dropped and their pixels given back as soon as they are prepared.
    """
    detector, model = runtime.detector, runtime.model_name
    assert detector is not None and model is not None
    threshold = detector.threshold if threshold is None else threshold
    reading = reading or Reading()
    out: list[tuple[DetectResult, Image.Image | None]] = []
    arrays, scored = [], []
    for up in uploads:
        result = DetectResult(path=up.name, fake_probability=None, label=None, model=model)
        if reading.provenance and up.data:
            result.provenance = await runtime.run_decoder(read_provenance, up.data, up.name)
        img = None
        try:
            img, array, pixels = await _admit(runtime, up, lease)
        except (UploadRejected, ImageLoadError) as err:
            if strict:
                raise
            result.error = str(err)
        except ServerBusy:
            raise
        except Exception as err:  # noqa: BLE001  as in scan: one odd file must not fail the whole batch
            if strict:
                raise
            log.exception("preparing %s failed", up.name)
            result.error = f"{up.name}: cannot prepare image ({type(err).__name__})"
        else:
            result.width, result.height = img.size
            arrays.append(array)
            scored.append(result)
            if not strict:
                lease.give(pixels)
                img = None
        out.append((result, img))
    scores = await runtime.predict(arrays) if arrays else Scores(np.zeros(0))
    for i, (result, p) in enumerate(zip(scored, scores.probabilities)):
        result.familiarity = None if scores.familiarity is None else round(float(scores.familiarity[i]), 4)
        result.copy_move = None if scores.copy_move is None else int(scores.copy_move[i])
        result.fake_probability, result.label = float(p), decide(float(p), result.familiarity, threshold)
        result.threshold = threshold
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


async def explain_image(runtime: ModelRuntime, img: Image.Image, method: str | None = None) -> Explanation:
    """ELA map and class-activation overlay for ``img`` (from :mod:`fakescope.explain`), as base64 PNGs; ``method``
    defaults to the explainer's default CAM. Imported here: Grad-CAM needs PyTorch, plain detection does not."""
    from fakescope import explain

    method = method or explain.DEFAULT_CAM
    max_side = runtime.settings.explain_max_side
    out = Explanation(method=method)
    out.ela_png = await runtime.run_decoder(lambda: png_base64(explain.ela_view(img), max_side))
    try:
        heatmap = await runtime.run_model(lambda: explain.cam_heatmap(runtime.detector, img, method=method))
    except explain.ExplainError as err:
        out.error = f"{method} unavailable: {err}"
        return out
    except Exception:
        log.exception("%s failed", method)
        out.error = f"{method} failed (see the server log)"
        return out

    def overlay_png() -> str:
        small = img.copy()
        small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return png_base64(explain.overlay(small, heatmap), max_side)

    out.gradcam_png = await runtime.run_decoder(overlay_png)
    return out
