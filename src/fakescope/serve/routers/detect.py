"""``POST /v1/detect`` (one image, optional explanation), ``POST /v1/detect/batch`` (errors per item) and
``POST /v1/threshold`` (a threshold chosen on the client's own real photos)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile

from fakescope.evaluation.evaluate import threshold_from_reals
from fakescope.serve.deps import ready_runtime
from fakescope.serve.pipeline import (
    PixelLease,
    Reading,
    Upload,
    UploadRejected,
    explain_image,
    score_uploads,
)
from fakescope.serve.runtime import ModelRuntime
from fakescope.serve.schemas import (
    BatchResult,
    DetectResult,
    ErrorMessage,
    ThresholdRequest,
    ThresholdResult,
    UnprocessableMessage,
)

router = APIRouter(prefix="/v1", tags=["detect"])

THRESHOLD_HELP = "Label with this threshold instead of the model's own (e.g. one from POST /v1/threshold)."
PROVENANCE_HELP = ("Read what each file declares about its origin (C2PA Content Credentials, XMP, generator settings, "
                   "camera EXIF) into `provenance`. It never changes the score.")
TRUST_HELP = ("Label 'fake' an image whose valid C2PA manifest declares AI generation; the score stays the pixels' "
              "own and `label_reason` says why. Needs provenance=true.")


def _reading(
    provenance: Annotated[bool, Query(description=PROVENANCE_HELP)] = True,
    trust_credentials: Annotated[bool, Query(description=TRUST_HELP)] = False,
) -> Reading:
    if trust_credentials and not provenance:
        raise HTTPException(422, detail="trust_credentials=true needs provenance (drop provenance=false)")
    return Reading(provenance, trust_credentials)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorMessage, "description": "Malformed multipart body, or more files than FAKESCOPE_MAX_BATCH_FILES."},
    401: {"model": ErrorMessage, "description": "Missing or wrong X-API-Key (when the server requires one)."},
    408: {"model": ErrorMessage, "description": "The body was not received within FAKESCOPE_BODY_TIMEOUT seconds."},
    413: {"model": ErrorMessage, "description": "Request body over the upload limit (FAKESCOPE_MAX_UPLOAD_MB); "
          "refused before it is read."},
    422: {"model": UnprocessableMessage, "description": "Invalid request: a missing field or a bad value."},
    503: {"model": ErrorMessage, "description": "Model still loading or not available, or the server is decoding "
          "as many pixels as it may hold (FAKESCOPE_MAX_INFLIGHT_PIXELS); retry after Retry-After seconds."},
}
_IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorMessage, "description": "Malformed multipart body, or more files than FAKESCOPE_MAX_BATCH_FILES."},
    415: {"model": ErrorMessage, "description": "The part is declared as something other than an image."},
    422: {"model": UnprocessableMessage, "description": "Not decodable as an image, over the pixel limit "
          "(FAKESCOPE_MAX_PIXELS), or an invalid request."},
}


async def _read(file: UploadFile) -> Upload:
    # The whole body is already bounded by the app's max_body_size, so reading it into memory is bounded too.
    data = await file.read()
    await file.close()
    return Upload(name=file.filename or "upload", content_type=file.content_type, data=data)


@router.post("/detect", response_model=DetectResult, responses={**_ERRORS, **_IMAGE_ERRORS},
             summary="Score one image", response_model_exclude_none=False)
async def detect(
    runtime: Annotated[ModelRuntime, Depends(ready_runtime)],
    file: Annotated[UploadFile, File(description="The image (JPEG, PNG, WebP, TIFF, BMP).")],
    explain: Annotated[bool, Query(description="Add ELA and Grad-CAM++ images (base64 PNG).")] = False,
    threshold: Annotated[float | None, Query(ge=0.0, le=1.0, description=THRESHOLD_HELP)] = None,
    reading: Annotated[Reading, Depends(_reading)] = None,
) -> DetectResult:
    upload = await _read(file)
    with PixelLease(runtime.pixels, runtime.settings.max_request_pixels) as lease:
        try:
            [(result, img)] = await score_uploads(runtime, [upload], strict=True, lease=lease, threshold=threshold,
                                                  reading=reading)
        except UploadRejected as err:
            raise HTTPException(err.status, detail=str(err)) from None
        if explain and img is not None:
            result.explanation = await explain_image(runtime, img)
    return result


@router.post("/detect/batch", response_model=BatchResult, responses=_ERRORS,
             summary="Score several images; a bad file becomes a result with 'error' set")
async def detect_batch(
    runtime: Annotated[ModelRuntime, Depends(ready_runtime)],
    files: Annotated[list[UploadFile], File(min_length=1, description="The images, as repeated 'files' fields.")],
    threshold: Annotated[float | None, Query(ge=0.0, le=1.0, description=THRESHOLD_HELP)] = None,
    reading: Annotated[Reading, Depends(_reading)] = None,
) -> BatchResult:
    uploads = [await _read(f) for f in files]
    with PixelLease(runtime.pixels, runtime.settings.max_request_pixels) as lease:
        scored = await score_uploads(runtime, uploads, strict=False, lease=lease, threshold=threshold, reading=reading)
    assert runtime.detector is not None and runtime.model_name is not None
    return BatchResult(model=runtime.model_name, threshold=runtime.detector.threshold if threshold is None else threshold,
                       results=[r for r, _ in scored])


@router.post("/threshold", response_model=ThresholdResult, responses={
             **_ERRORS, 400: {"model": ErrorMessage, "description": "The body is not parseable JSON."},
             422: {"model": UnprocessableMessage, "description": "No scores, a score outside 0..1, or fpr outside [0, 1)."}},
             summary="Choose a threshold on scores of images you know are real")
async def threshold_for_reals(
    runtime: Annotated[ModelRuntime, Depends(ready_runtime)], body: ThresholdRequest,
) -> ThresholdResult:
    """On a kind of photo the model never trained on, its own threshold can flag far more than 5% of the reals.
    Score images you know are real with `/v1/detect/batch`, send their `fake_probability` values here, and pass the
    returned `threshold` to `/v1/detect`. A few hundred reals of the kind you will check make it reliable."""
    assert runtime.detector is not None and runtime.model_name is not None
    return ThresholdResult(**threshold_from_reals(body.fake_probabilities, runtime.model_name,
                                                  runtime.detector.threshold, body.fpr))
