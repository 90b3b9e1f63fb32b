"""The FastAPI application: ``create_app(settings)`` wires routers, limits, error handlers and the web page."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from fakescope._version import __version__
from fakescope.serve.deps import require_api_key
from fakescope.serve.errors import install_error_handlers
from fakescope.serve.gate import RequestGate
from fakescope.serve.routers import detect, folder, health, models
from fakescope.serve.runtime import ModelRuntime
from fakescope.serve.server import uvicorn_config
from fakescope.serve.settings import Settings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: The page may load nothing from elsewhere: every asset is served by fakescope, so it works offline.
PAGE_CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; object-src 'none'"

DESCRIPTION = """Tell real images from deepfakes and tampered images, and show why.

Upload an image to `POST /v1/detect` (multipart field `file`; `explain=true` adds ELA and Grad-CAM images) or
several to `POST /v1/detect/batch` (repeated field `files`). To label with a threshold chosen on your own real
photos, send their scores to `POST /v1/threshold` and pass its `threshold` to either. A video goes to
`POST /v1/detect/video` (per-frame scores); `POST /v1/report` returns the HTML report of several files. When the
server runs with `FAKESCOPE_API_KEY`, send it in the `X-API-Key` header."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model in the background: the server answers ``/healthz`` (and 503 on ``/readyz``) meanwhile."""
    runtime: ModelRuntime = app.state.runtime
    loading = asyncio.create_task(runtime.start())
    try:
        yield
    finally:
        loading.cancel()
        with suppress(asyncio.CancelledError):
            await loading


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    # The body limit is RequestGate's (FastAPI's max_body_size answers 413 in plain text when Content-Length is sent).
    app = FastAPI(title="fakescope", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  form_limits={"max_files": settings.max_batch_files})
    app.state.settings = settings
    app.state.runtime = ModelRuntime(settings)
    install_error_handlers(app)
    app.add_middleware(RequestGate, settings=settings)
    # The key check (and its entry in the OpenAPI schema) exists only when a key is configured.
    guarded = [Depends(require_api_key)] if settings.api_key is not None else []
    app.include_router(health.router)
    app.include_router(models.router, dependencies=guarded)
    app.include_router(detect.router, dependencies=guarded)
    app.include_router(folder.router, dependencies=guarded)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP})

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory fakescope.serve.app:app_from_env`` (settings from FAKESCOPE_* variables)."""
    return create_app(Settings.from_env())


def run(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``create_app(settings)`` with uvicorn until interrupted."""
    import uvicorn

    if settings.api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without an API key: set FAKESCOPE_API_KEY to require X-API-Key", host)
    uvicorn.Server(uvicorn_config(create_app(settings), settings, host, port)).run()
