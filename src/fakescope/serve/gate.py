"""What every request meets before a route reads it: the API key (for ``/v1``), the body size limit and the body
deadline. A pure ASGI middleware, so a refused request's body is never read, let alone parsed; and its answers
have the service's one error shape (:mod:`fakescope.serve.errors`)."""
from __future__ import annotations

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fakescope.serve.deps import API_KEY_HEADER, key_matches
from fakescope.serve.errors import error_response
from fakescope.serve.settings import Settings

#: Paths that need the API key when one is configured.
GUARDED_PREFIX = "/v1/"


class RequestGate:
    """401 without the key, 413 for a body over ``max_upload_bytes`` (at once when ``Content-Length`` says so,
    else as soon as the count passes it) and 408 for a body not received within ``body_timeout`` seconds."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope["path"], headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, self._bounded(receive), send)

    def _refusal(self, path: str, headers: Headers):
        settings = self.settings
        if (settings.api_key is not None and path.startswith(GUARDED_PREFIX)
                and not key_matches(settings.api_key, headers.get(API_KEY_HEADER))):
            return error_response(401, f"missing or wrong {API_KEY_HEADER} header",
                                  {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'})
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_upload_bytes):
            return error_response(413 if length.isdigit() else 400, self._too_large() if length.isdigit()
                                  else "invalid Content-Length header", {"Connection": "close"})
        return None

    def _too_large(self) -> str:
        return (f"request body over the limit of {self.settings.max_upload_mb:g} MB (FAKESCOPE_MAX_UPLOAD_MB); "
                "send fewer or smaller files")

    def _bounded(self, receive: Receive) -> Receive:
        limit, timeout = self.settings.max_upload_bytes, self.settings.body_timeout
        deadline = anyio.current_time() + timeout
        state = {"size": 0, "done": False}

        async def bounded_receive() -> Message:
            if state["done"]:  # the body is in: what follows is a wait for the disconnect, not bounded
                return await receive()
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as timer:
                message = await receive()
            if timer.cancelled_caught:
                raise HTTPException(408, f"request body not received within {timeout:g} s (FAKESCOPE_BODY_TIMEOUT)",
                                    headers={"Connection": "close"})
            if message["type"] == "http.request":
                state["size"] += len(message.get("body", b""))
                state["done"] = not message.get("more_body", False)
                if state["size"] > limit:
                    raise HTTPException(413, self._too_large(), headers={"Connection": "close"})
            return message

        return bounded_receive
