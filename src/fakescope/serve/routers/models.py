"""The detector catalogue and which detector this server answers with."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from fakescope.serve.deps import get_runtime
from fakescope.serve.runtime import ModelRuntime
from fakescope.serve.schemas import ModelInfo, ModelsResponse

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", response_model=ModelsResponse, summary="Registered detectors and the loaded one")
def list_models(runtime: Annotated[ModelRuntime, Depends(get_runtime)]) -> ModelsResponse:
    # A plain def: FastAPI runs it in the thread pool, and the first call builds the catalogue (seconds).
    return ModelsResponse(loaded=runtime.model_name, ready=runtime.ready,
                          models=[ModelInfo(**row) for row in runtime.catalog()])
