"""uvicorn as ``fakescope serve`` runs it: at most ``max_connections`` open connections (503 beyond, in the
service's error shape) and a deadline of ``header_timeout`` seconds for each request's headers, after which a
connection that is still sending them (a slow or stalled client) is closed. uvicorn has neither; its
``limit_concurrency`` counts slow connections too and answers in plain text."""
from __future__ import annotations

import asyncio
import json

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from fakescope.serve.settings import Settings


def _busy_response() -> bytes:
    body = json.dumps({"detail": "too many open connections; retry shortly"}).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
            f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n")
    return head.encode() + body


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection limit and a deadline for request headers (set by
    :func:`bounded_protocol`)."""

    max_connections = 1000
    header_timeout = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_busy_response())
            transport.close()
            return
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the request's head is in (or the connection is over)
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on this keep-alive connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()


def bounded_protocol(settings: Settings) -> type[H11Protocol]:
    return type("BoundedH11Protocol", (BoundedH11Protocol,),
                {"max_connections": settings.max_connections, "header_timeout": settings.header_timeout})


def uvicorn_config(app: object, settings: Settings, host: str = "127.0.0.1", port: int = 8000,
                   **options: object) -> uvicorn.Config:
    """The uvicorn configuration ``fakescope serve`` uses (tests and bench/serve.py use it too)."""
    return uvicorn.Config(app, host=host, port=port, http=bounded_protocol(settings), timeout_keep_alive=5,
                          **{"log_level": "info", **options})
