"""``POST /v1/detect`` (one image, optional explanation) and ``POST /v1/detect/batch`` (errors per item)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile

from fakescope.serve.deps import ready_runtime
from fakescope.serve.pipeline import (
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
    UnprocessableMessage,
)

router = APIRouter(prefix="/v1", tags=["detect"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorMessage, "description": "Malformed multipart body, or more files than FAKESCOPE_MAX_BATCH_FILES."},
    401: {"model": ErrorMessage, "description": "Missing or wrong X-API-Key (when the server requires one)."},
    413: {"description": "Request body over the upload limit (FAKESCOPE_MAX_UPLOAD_MB); refused before it is read.",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    503: {"model": ErrorMessage, "description": "Model still loading or not available."},
}
_IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorMessage, "description": "Malformed multipart body, or more files than FAKESCOPE_MAX_BATCH_FILES."},
    415: {"model": ErrorMessage, "description": "The part is declared as something other than an image."},
    422: {"model": UnprocessableMessage, "description": "Not decodable as an image, over the pixel limit, or an "
          "invalid request."},
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
) -> DetectResult:
    upload = await _read(file)
    try:
        [(result, img)] = await score_uploads(runtime, [upload], strict=True)
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
) -> BatchResult:
    uploads = [await _read(f) for f in files]
    scored = await score_uploads(runtime, uploads, strict=False)
    assert runtime.detector is not None and runtime.model_name is not None
    return BatchResult(model=runtime.model_name, threshold=runtime.detector.threshold, results=[r for r, _ in scored])
