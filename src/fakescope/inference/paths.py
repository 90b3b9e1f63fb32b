"""File names as text, without losing any: the one place every output (JSON, JSONL, CSV, the console table, the
HTML report) turns a path into a string.

On Linux a file name is bytes. Python holds the bytes that are not UTF-8 as surrogate escapes (PEP 383), which a
UTF-8 file, a strict JSON parser or a strict terminal refuses. So a result's ``path`` is text with each such byte
replaced by U+FFFD, and when that replacement happened the record also carries ``path_bytes``: the name's raw
bytes as hex, from which :func:`path_from_record` gives back the exact path (a resumed scan relies on it).
"""
from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from typing import Any

#: The field holding a file name's raw bytes as hex, present only when ``path`` is not the name itself.
PATH_BYTES = "path_bytes"


def _raw(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def path_text(path: str) -> str:
    """``path`` as valid text: bytes that are not UTF-8 become U+FFFD (lossy; see :func:`path_fields`)."""
    try:
        return _raw(path).decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte (Windows names)
        return path.encode("utf-8", "replace").decode("utf-8")


def path_fields(path: str) -> dict[str, str]:
    """``{"path": text}``, plus ``path_bytes`` (hex) when the text had to replace bytes of the name."""
    text = path_text(path)
    if text == path:
        return {"path": path}
    try:
        return {"path": text, PATH_BYTES: _raw(path).hex()}
    except UnicodeEncodeError:
        return {"path": text}


def path_from_record(record: Mapping[str, Any]) -> str:
    """The exact path a record written with :func:`path_fields` names."""
    raw = record.get(PATH_BYTES)
    return bytes.fromhex(raw).decode("utf-8", "surrogateescape") if raw else record["path"]


def tolerant_stdio() -> None:
    """Let stdout and stderr show any text: on a strict encoding (``PYTHONIOENCODING=ascii``, a C locale without
    UTF-8 mode) a character it cannot encode is written as a backslash escape instead of ending the program."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
