"""Liveness and readiness probes (no API key: orchestrators call them)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from fakescope.serve.deps import get_runtime
from fakescope.serve.runtime import ModelRuntime
from fakescope.serve.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Readiness, summary="Readiness: 200 once the model is loaded, 503 before",
            responses={503: {"model": Readiness, "description": "Model still loading or failed to load."}})
async def readyz(runtime: Annotated[ModelRuntime, Depends(get_runtime)]) -> Readiness | JSONResponse:
    body = Readiness(ready=runtime.ready, model=runtime.model_name,
                     error=runtime.public_error, api_key_required=runtime.settings.api_key is not None,
                     max_batch_files=runtime.settings.max_batch_files,
                     max_upload_mb=runtime.settings.max_upload_mb)
    if not runtime.ready:
        return JSONResponse(body.model_dump(), status_code=503)
    return body
