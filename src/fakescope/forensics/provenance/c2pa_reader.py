"""Content Credentials (C2PA) through c2pa-python's ``Reader``, with nothing fetched from the network.

A manifest's signature is checked against the certificate it carries; fakescope loads no trust list, so a
correctly signed manifest reads ``Valid`` (not ``Trusted``) and its validation codes include
``signingCredential.untrusted``: the signer's name is what its certificate says, not a verified identity.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from fakescope.forensics.provenance.terms import AI_SOURCE_TYPES, source_type_term

log = logging.getLogger(__name__)

#: PIL format name -> MIME type c2pa-python reads (None: let it detect the container from the bytes).
MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff",
              "GIF": "image/gif", "AVIF": "image/avif", "HEIF": "image/heif"}
#: Validation states that mean the manifest is intact and its signature matches its certificate.
VALID_STATES = frozenset({"Valid", "Trusted"})


@dataclass
class C2paAction:
    """One action of the active manifest (``c2pa.created``, ``c2pa.edited``, ``c2pa.color_adjustments``, ...)."""

    __pydantic_config__ = {"use_attribute_docstrings": True}
    action: str
    """The action's label, e.g. ``c2pa.created``."""
    digital_source_type: str | None = None
    """The IPTC digital source type the action declares (last path segment), if any."""
    software_agent: str | None = None
    """The software the action names, if any."""


@dataclass
class C2paManifest:
    """What the active C2PA manifest declares and whether it validates."""

    __pydantic_config__ = {"use_attribute_docstrings": True}
    state: str | None = None
    """c2pa-python's validation state: ``Trusted``, ``Valid`` or ``Invalid`` (None when the manifest is unreadable)."""
    claim_generator: str | None = None
    """The application that wrote the manifest (claim_generator_info name and version, or claim_generator)."""
    signed_by: str | None = None
    """Issuer of the signing certificate, as the certificate states it."""
    signer_name: str | None = None
    """Common name of the signing certificate."""
    signed_at: str | None = None
    """Signing time from a trusted time stamp, if the manifest has one."""
    failures: list[str] = field(default_factory=list)
    """Failing validation codes, e.g. ``assertion.dataHash.mismatch``; ``signingCredential.untrusted`` only means
    the signer is not on a trust list (fakescope loads none)."""
    actions: list[C2paAction] = field(default_factory=list)
    """The active manifest's actions, in order."""
    ingredients: list[str] = field(default_factory=list)
    """Titles of the ingredients (the files this one was made from)."""
    ingredient_source_types: list[str] = field(default_factory=list)
    """Machine-made source types declared in the ingredients' own manifests."""
    error: str | None = None
    """Why a manifest that is present could not be read (one line)."""

    @property
    def valid(self) -> bool:
        return self.state in VALID_STATES


def jpeg_header(data: bytes) -> bytes:
    """A JPEG's bytes up to its first scan (SOS): where APP11 segments, and so C2PA manifests, live. Walks the
    segment lengths, so marker-like bytes inside EXIF or a thumbnail are skipped; other data is returned whole."""
    if not data.startswith(b"\xff\xd8"):
        return data
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        if data[i + 1] == 0xDA:
            return data[:i]
        if data[i + 1] == 0xFF:  # fill byte
            i += 1
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return data


def has_c2pa_marker(data: bytes) -> bool:
    """A JUMBF store labelled ``c2pa`` may be present (JPEG APP11, PNG ``caBX``, ISO BMFF, WebP, TIFF all hold one).

    A cheap gate: files without the label are not handed to c2pa-python (most files have no manifest); a JPEG is
    searched only up to its pixel data."""
    return b"c2pa" in jpeg_header(data)


@functools.lru_cache(maxsize=2)
def _context(pid: int):
    """c2pa-python and a reading context that never touches the network, one per process (``pid``: forked scan
    workers must not share the parent's native handle)."""
    import c2pa

    settings = c2pa.Settings.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
    return c2pa, c2pa.Context(settings)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__.lstrip('_')}: {text[0][:200] if text else ''}".rstrip(": ")


def read_c2pa(data: bytes, pil_format: str | None) -> C2paManifest | None:
    """The active manifest of the file whose bytes are ``data``; None when it has none."""
    if not has_c2pa_marker(data):
        return None
    c2pa, context = _context(os.getpid())
    try:
        with c2pa.Reader(MIME_TYPES.get(pil_format or ""), io.BytesIO(data), context=context) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return None
    except c2pa.C2paError.NotSupported:
        return None  # a format c2pa-python cannot read; the marker bytes may be chance
    except (c2pa.C2paError, ValueError) as err:
        return C2paManifest(error=f"manifest present but unreadable: {_one_line(err)}")
    return manifest_from_store(store)


def _claim_generator(m: dict[str, Any]) -> str | None:
    info = m.get("claim_generator_info") or []
    if info and isinstance(info[0], dict) and info[0].get("name"):
        return " ".join(str(info[0][k]) for k in ("name", "version") if info[0].get(k))
    return m.get("claim_generator")


def _agent(action: dict[str, Any]) -> str | None:
    agent = action.get("softwareAgent")
    if isinstance(agent, dict):
        return " ".join(str(agent[k]) for k in ("name", "version") if agent.get(k)) or None
    return str(agent) if agent else None


def _actions(m: dict[str, Any]) -> list[C2paAction]:
    out = []
    for assertion in m.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for a in (assertion.get("data") or {}).get("actions") or []:
                out.append(C2paAction(str(a.get("action")), source_type_term(a.get("digitalSourceType")), _agent(a)))
    return out


def manifest_from_store(store: dict[str, Any]) -> C2paManifest:
    """The :class:`C2paManifest` of a manifest store as ``Reader.json()`` returns it."""
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest") or "")
    if active is None:
        return C2paManifest(state=store.get("validation_state"), error="manifest store has no active manifest")
    sig = active.get("signature_info") or {}
    others = [m for label, m in manifests.items() if label != store.get("active_manifest")]
    return C2paManifest(
        state=store.get("validation_state"), claim_generator=_claim_generator(active), signed_by=sig.get("issuer"),
        signer_name=sig.get("common_name"), signed_at=sig.get("time"),
        failures=[s.get("code", "?") for s in store.get("validation_status") or []],
        actions=_actions(active), ingredients=[str(i.get("title")) for i in active.get("ingredients") or []],
        ingredient_source_types=sorted({a.digital_source_type for m in others for a in _actions(m)
                                        if a.digital_source_type in AI_SOURCE_TYPES}))
