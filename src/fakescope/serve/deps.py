"""Request dependencies: settings, the shared model runtime, the optional API key."""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from fakescope.serve.runtime import ModelRuntime
from fakescope.serve.settings import Settings

API_KEY_HEADER = "X-API-Key"
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                               description="Needed when the server runs with FAKESCOPE_API_KEY set.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_runtime(request: Request) -> ModelRuntime:
    return request.app.state.runtime


def key_matches(expected: str, given: str | None) -> bool:
    """Whether ``given`` is the key, compared in constant time."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def require_api_key(settings: Annotated[Settings, Depends(get_settings)],
                    key: Annotated[str | None, Security(_api_key_header)] = None) -> None:
    """401 unless the server has no key or ``X-API-Key`` matches it. :class:`~fakescope.serve.gate.RequestGate`
    has checked it before the body was read; this dependency puts the key in the OpenAPI schema."""
    if settings.api_key is None:
        return
    if not key_matches(settings.api_key, key):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=f"missing or wrong {API_KEY_HEADER} header",
                            headers={"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'})


def ready_runtime(runtime: Annotated[ModelRuntime, Depends(get_runtime)]) -> ModelRuntime:
    """The runtime once its model is loaded; 503 (retry later) before."""
    if not runtime.ready:
        detail = f"model not available: {runtime.public_error}" if runtime.error else "model is still loading"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail, headers={"Retry-After": "5"})
    return runtime
