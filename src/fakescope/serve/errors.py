"""One error shape for every 4xx and 5xx the service sends: ``{"detail": "<one line>"}``, plus ``errors`` (where in
the request, what was wrong) for a request that failed validation. Nothing a client sent is echoed back: a
non-finite number or 25 MB of input could not be written as JSON, and the detail of a 500 stays in the log."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from fakescope.serve.runtime import ServerBusy

log = logging.getLogger(__name__)


def one_line(text: object, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error_response(status: int, detail: object, headers: Mapping[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": one_line(detail), **extra}, status_code=status, headers=dict(headers or {}))


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and what, without the offending input (``input``/``ctx`` may hold NaN, bytes or megabytes)."""
    return [{"loc": [str(part) for part in e.get("loc", ())], "msg": one_line(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in exc.errors()]


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error_response(exc.status_code, exc.detail, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = validation_errors(exc)
    summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return error_response(422, f"invalid request: {summary}", errors=errors)


async def _busy(request: Request, exc: ServerBusy) -> JSONResponse:
    return error_response(503, exc, {"Retry-After": "1"})


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Details go to the log, never to the client.
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return error_response(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ServerBusy, _busy)
    app.add_exception_handler(Exception, _internal_error)
