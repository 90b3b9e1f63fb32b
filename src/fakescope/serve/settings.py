"""Service settings, read from ``FAKESCOPE_*`` environment variables (as a twelve-factor service is configured)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

ENV_PREFIX = "FAKESCOPE_"


@dataclass(frozen=True)
class Settings:
    """How ``fakescope serve`` runs. Every field can be set from the environment: ``model`` <- ``FAKESCOPE_MODEL``.

    ``max_upload_mb`` bounds a whole request body (a batch too): larger requests get 413 before being read.
    ``max_pixels`` bounds width x height of each decoded image (422 beyond it); ``max_request_pixels`` the pixels
    one request may have decoded in all (a batch's later files get an error past it); ``max_inflight_pixels`` the
    decoded pixels the whole server holds at once (503 with ``Retry-After`` when a request would pass it).
    ``api_key``: when set, every ``/v1`` endpoint needs the header ``X-API-Key`` with this value (401 otherwise,
    checked before the body is read).
    ``max_connections``: open connections beyond it get 503; ``header_timeout``: seconds a client has to send a
    request's headers (then the connection is closed); ``body_timeout``: seconds to send its body (408).
    """

    model: str = "default"
    device: str = "auto"
    #: ``auto``: ONNX Runtime when the model's ONNX file is at hand (the shipped default's is), so the server starts
    #: without importing PyTorch; ``torch`` or ``onnx`` to choose (as ``fakescope scan --backend``).
    backend: str = "auto"
    api_key: str | None = None
    max_upload_mb: float = 20.0
    max_pixels: int = 50_000_000
    max_request_pixels: int = 200_000_000
    max_inflight_pixels: int = 60_000_000
    max_batch_files: int = 32
    #: Longest side of the ELA and Grad-CAM images returned by ``explain=true`` (keeps responses small).
    explain_max_side: int = 512
    #: PyTorch intra-op threads; 0: automatic (:func:`auto_threads`), which keeps its speed when another process is
    #: busy on the same cores, where one thread per core collapses (docs/benchmarks/serve.md).
    torch_threads: int = 0
    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 120.0

    def __post_init__(self) -> None:
        positive = ("max_upload_mb", "max_pixels", "max_request_pixels", "max_inflight_pixels", "max_batch_files",
                    "explain_max_side", "max_connections", "header_timeout", "body_timeout")
        if any(not getattr(self, name) > 0 for name in positive):  # "not >" refuses NaN too
            raise ValueError(f"{', '.join(positive)} must be positive")
        if self.max_inflight_pixels < self.max_pixels or self.max_request_pixels < self.max_pixels:
            raise ValueError("max_inflight_pixels and max_request_pixels must be at least max_pixels")
        if self.torch_threads < 0:
            raise ValueError("torch_threads must be 0 (automatic) or more")

    @property
    def threads(self) -> int:
        """PyTorch intra-op threads to use."""
        return self.torch_threads or auto_threads()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``FAKESCOPE_<FIELD>`` variables, then ``overrides`` (None values are ignored)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw, _CASTS.get(str(f.type), str))
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


_CASTS: dict[str, type] = {"int": int, "float": float}


def _parse(name: str, raw: str, kind: type) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind.__name__}") from None


def auto_threads() -> int:
    """Half the cores this process may use, 1 to 4: a model call then leaves cores for decoding and the event loop,
    and when another process is busy on the same cores, fewer threads lose less to waiting for each other
    (docs/benchmarks/serve.md, from bench/serve.py --busy)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 2))
