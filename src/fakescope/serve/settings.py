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
    ``max_pixels`` bounds width x height of each decoded image (422 beyond it).
    ``api_key``: when set, every ``/v1`` endpoint needs the header ``X-API-Key`` with this value (401 otherwise).
    """

    model: str = "default"
    device: str = "auto"
    api_key: str | None = None
    max_upload_mb: float = 20.0
    max_pixels: int = 50_000_000
    max_batch_files: int = 32
    #: Longest side of the ELA and Grad-CAM images returned by ``explain=true`` (keeps responses small).
    explain_max_side: int = 512
    #: PyTorch intra-op threads (0: PyTorch's default, one per core). Whether 1 helps on a busy, shared CPU depends
    #: on the load: measure it with bench/serve.py (docs/benchmarks/serve.md).
    torch_threads: int = 0

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0 or self.max_pixels <= 0 or self.max_batch_files <= 0 or self.explain_max_side <= 0:
            raise ValueError("max_upload_mb, max_pixels, max_batch_files and explain_max_side must be positive")
        if self.torch_threads < 0:
            raise ValueError("torch_threads must be 0 (PyTorch's default) or more")

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
