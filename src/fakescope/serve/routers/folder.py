"""What the web page's folder view needs besides ``/v1/detect/batch``: ``POST /v1/detect/video`` (a video's score
and per-frame scores), ``POST /v1/results`` (results written as ``fakescope scan`` writes them, JSON or CSV) and
``POST /v1/report`` (the HTML report of a set of files, the one ``fakescope scan --report`` writes).

Both go through files: PyAV and the report read media by path. Uploads are written to a private temporary folder
that is deleted when the answer is ready; the request body is bounded before it is read, as everywhere. Both decode
under the service's pixel limits, as ``/v1/detect`` does: each file is admitted from its header before anything is
decoded (the request's limit, and the server's in-flight budget, 503 when full) and decoded under
``FAKESCOPE_MAX_PIXELS``.
"""
from __future__ import annotations

import html
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from fakescope.inference.output import to_string
from fakescope.inference.scan import ScanResult, scan
from fakescope.serve.deps import ready_runtime
from fakescope.serve.pipeline import PixelLease, Upload, UploadRejected, hold_pixels
from fakescope.serve.routers.detect import _ERRORS, THRESHOLD_HELP, _read
from fakescope.serve.runtime import ModelRuntime
from fakescope.serve.schemas import ErrorMessage, ResultRecord, UnprocessableMessage, VideoResult
from fakescope.video.frames import VIDEO_EXTENSIONS, is_video_file

router = APIRouter(prefix="/v1", tags=["folder"])


def save_uploads(uploads: list[Upload], folder: Path) -> list[Path]:
    """Write ``uploads`` into ``folder`` under their own base names (a repeated name gets ``-2``, ``-3``, ...)."""
    paths, taken = [], set()
    for up in uploads:
        name = Path(up.name.replace("\\", "/")).name.lstrip(".") or "upload"
        stem, suffix, k = Path(name).stem, Path(name).suffix, 1
        while name.lower() in taken:
            k += 1
            name = f"{stem}-{k}{suffix}"
        taken.add(name.lower())
        path = folder / name
        path.write_bytes(up.data)
        paths.append(path)
    return paths


@router.post("/detect/video", response_model=VideoResult, summary="Score one video, frame by frame",
             responses={**_ERRORS, 422: {"model": UnprocessableMessage, "description": "Not a readable video, or "
                                         "frames too large for FAKESCOPE_MAX_PIXELS (a fifth of it per frame)."}})
async def detect_video(
    runtime: Annotated[ModelRuntime, Depends(ready_runtime)],
    file: Annotated[UploadFile, File(description=f"The video ({', '.join(sorted(VIDEO_EXTENSIONS))}).")],
    threshold: Annotated[float | None, Query(ge=0.0, le=1.0, description=THRESHOLD_HELP)] = None,
) -> VideoResult:
    """Sampled frames, faces, a score per frame and one per video, as `fakescope scan clip.mp4` gives them."""
    upload = await _read(file)
    if not is_video_file(upload.name):
        raise HTTPException(422, detail=f"{upload.name}: not a video file name ({', '.join(sorted(VIDEO_EXTENSIONS))})")
    detector, model = runtime.detector, runtime.model_name
    assert detector is not None and model is not None
    with tempfile.TemporaryDirectory(prefix="fakescope-video-") as tmp:
        (path,) = await runtime.run_decoder(save_uploads, [upload], Path(tmp))
        async with _admitted(runtime, [path]):
            (result,) = await runtime.run_model(lambda: list(scan([path], detector, workers=0, threshold=threshold,
                                                                  max_pixels=runtime.settings.max_pixels)))
    if result.error is not None:
        raise HTTPException(422, detail=f"{upload.name}: {result.error}")
    return VideoResult(path=upload.name, fake_probability=result.fake_probability, label=result.label, model=model,
                       threshold=result.threshold, frames=result.frames)


class ResultRows(BaseModel):
    results: list[ResultRecord] = Field(description="Result records as /v1/detect/batch and /v1/detect/video give "
                                        "them (their web-only fields, width, height and explanation, are "
                                        "left out of the file), or as `fakescope scan --format json` writes them.")


@router.post("/results", summary="Results written as `fakescope scan` writes them (JSON list or CSV)",
             responses={400: {"model": ErrorMessage, "description": "The body is not parseable JSON."},
                        401: _ERRORS[401],
                        200: {"description": "The file, as an attachment.",
                              "content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}},
                        422: {"model": UnprocessableMessage, "description": "A record with a missing, unknown or "
                              "wrongly typed field (named in the detail)."}})
async def results_file(body: ResultRows, format: Literal["json", "csv"] = "json") -> Response:  # noqa: A002
    """The web page's downloads go through the CLI's own writer, so the file is the one `fakescope scan --format
    json|csv` writes for the same results."""
    text = to_string([ScanResult.from_dict(r.scan_row()) for r in body.results], format)
    media = "application/json" if format == "json" else "text/csv"
    return Response(text, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="fakescope-results.{format}"'})


def report_html(paths: list[Path], detector, threshold: float | None, max_pixels: int) -> str:
    """The HTML report of the saved uploads at ``paths`` (images and videos, in one folder), decoded under
    ``max_pixels``; file cells name the uploads, not the temporary folder. The report (its Grad-CAM needs PyTorch)
    is imported here, so the service starts without PyTorch."""
    from fakescope.evaluation.report import write_report

    folder = paths[0].parent
    out = folder.parent / "report.html"
    write_report(scan(paths, detector, workers=0, threshold=threshold, max_pixels=max_pixels), detector, out,
                 max_pixels=max_pixels)
    text = out.read_text(encoding="utf-8")
    for prefix in (str(folder) + os.sep, str(folder)):  # a path cell, then the folder cell beside a name
        text = text.replace(html.escape(prefix), "")
    return text


@asynccontextmanager
async def _admitted(runtime: ModelRuntime, paths: list[Path]) -> AsyncIterator[None]:
    """Inside the block the request holds its files' pixels (:func:`~fakescope.serve.pipeline.hold_pixels`): 422
    past the request's limit, 503 with Retry-After when the server holds too many for the largest of them."""
    with PixelLease(runtime.pixels, runtime.settings.max_request_pixels) as lease:
        try:
            await hold_pixels(runtime, paths, lease)
        except UploadRejected as err:
            raise HTTPException(err.status, detail=str(err)) from None
        yield


@router.post("/report", response_model=None, summary="The HTML report of several files",
             responses={**_ERRORS, 200: {"description": "The report, as an attachment (fakescope-report.html).",
                                         "content": {"text/html": {"schema": {"type": "string"}}}},
                        400: {"model": ErrorMessage, "description": "No files, or more than "
                                         "FAKESCOPE_MAX_BATCH_FILES."},
                        422: {"model": UnprocessableMessage, "description": "An invalid request (e.g. threshold), "
                                         "or files passing FAKESCOPE_MAX_REQUEST_PIXELS together."}})
async def report(
    runtime: Annotated[ModelRuntime, Depends(ready_runtime)],
    files: Annotated[list[UploadFile], File(min_length=1, description="Images and videos, as repeated 'files' fields.")],
    threshold: Annotated[float | None, Query(ge=0.0, le=1.0, description=THRESHOLD_HELP)] = None,
) -> HTMLResponse:
    """The self-contained report `fakescope scan --report` writes (thumbnails, scores, ELA and Grad-CAM++ maps,
    provenance, a video's frames), as a download; unreadable files, and files over FAKESCOPE_MAX_PIXELS, are rows
    with their reason."""
    uploads = [await _read(f) for f in files]
    with tempfile.TemporaryDirectory(prefix="fakescope-report-") as tmp:
        (Path(tmp) / "files").mkdir()
        paths = await runtime.run_decoder(save_uploads, uploads, Path(tmp) / "files")
        async with _admitted(runtime, paths):
            text = await runtime.run_model(report_html, paths, runtime.detector, threshold,
                                           runtime.settings.max_pixels)
    return HTMLResponse(text, headers={"Content-Disposition": 'attachment; filename="fakescope-report.html"'})
