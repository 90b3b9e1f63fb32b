"""Metadata findings: EXIF, camera, editing software and C2PA Content Credentials.

These are a separate signal from the detector's score and never change it: metadata is trivial to strip or
forge, and datasets are biased by it (CASIA's tampered images carry EXIF far more often than its authentic
ones), so a detector must not read it. An analyst still wants to see it next to the score.

The C2PA check uses ``c2pa-python`` (the Content Authenticity Initiative's reader) when it is installed, with
remote manifest and OCSP fetching turned off so that nothing goes to the network; otherwise a byte-level scan
for the JUMBF ``jumb`` box and the ``c2pa`` label (or PNG's ``caBX`` chunk) says whether a manifest seems
present, without validating it.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

#: EXIF tag ids (TIFF/EXIF 2.3): Make, Model, Software.
EXIF_MAKE, EXIF_MODEL, EXIF_SOFTWARE = 271, 272, 305
#: Files larger than this are only partly scanned for the byte-level C2PA marker.
MAX_SCAN_BYTES = 64 * 1024 * 1024
_XMP_TOOL = re.compile(rb"(?:xmp:CreatorTool|CreatorTool)\s*(?:=\s*\"([^\"]{1,200})\"|>([^<]{1,200})<)")
BYTE_SCAN = "byte scan for a JUMBF/c2pa marker (not validated)"
C2PA_PYTHON = "c2pa-python"


@dataclass
class MetadataFindings:
    """What the file's metadata says. ``c2pa_manifest`` is None when it could not be checked."""

    exif_present: bool = False
    camera_make: str | None = None
    camera_model: str | None = None
    software: str | None = None
    c2pa_manifest: bool | None = None
    c2pa_method: str = BYTE_SCAN
    c2pa_detail: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def exif_findings(path: str | Path) -> tuple[bool, str | None, str | None, str | None]:
    """(EXIF present, camera make, camera model, software tag) read from the file's header only."""
    with Image.open(path) as img:
        exif = img.getexif()
        return (len(exif) > 0, _clean(exif.get(EXIF_MAKE)), _clean(exif.get(EXIF_MODEL)),
                _clean(exif.get(EXIF_SOFTWARE)))


def xmp_creator_tool(data: bytes) -> str | None:
    """The XMP ``CreatorTool`` (editing software) found in the raw bytes, if any."""
    m = _XMP_TOOL.search(data)
    return _clean(m.group(1) or m.group(2)) if m else None


def has_c2pa_marker(data: bytes) -> bool:
    """Byte-level check: a JUMBF superbox labelled ``c2pa`` (JPEG APP11, ISO BMFF, WebP) or PNG's ``caBX`` chunk."""
    return (b"jumb" in data and b"c2pa" in data) or b"caBX" in data


@functools.lru_cache(maxsize=1)
def _c2pa_context():
    """A c2pa reading context that never touches the network, or None when c2pa-python is not installed."""
    try:
        import c2pa
    except ImportError:
        return None
    settings = c2pa.Settings.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
    return c2pa, c2pa.Context(settings)


def c2pa_findings(path: str | Path, data: bytes) -> tuple[bool | None, str, str | None]:
    """(manifest present, method, detail) for the file at ``path`` whose bytes are ``data``."""
    ctx = _c2pa_context()
    if ctx is None:
        return has_c2pa_marker(data), BYTE_SCAN, None
    c2pa, context = ctx
    try:
        with c2pa.Reader(str(path), context=context) as reader:
            status = reader.get_validation_state()
            return True, C2PA_PYTHON, f"validation state: {status}" if status else None
    except c2pa.C2paError.ManifestNotFound:
        return False, C2PA_PYTHON, None
    except c2pa.C2paError.NotSupported:
        return has_c2pa_marker(data), BYTE_SCAN, "format not supported by c2pa-python"
    except c2pa.C2paError as err:
        # A manifest that is there but broken or unverifiable is still a finding.
        present = has_c2pa_marker(data)
        return present, C2PA_PYTHON, f"{type(err).__name__.lstrip('_')}: {str(err).splitlines()[0][:200]}"


def read_metadata(path: str | Path) -> MetadataFindings:
    """Metadata findings for one file; problems become ``error`` instead of raising."""
    path = Path(path)
    found = MetadataFindings()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SCAN_BYTES)
        found.exif_present, found.camera_make, found.camera_model, found.software = exif_findings(path)
        found.software = found.software or xmp_creator_tool(data)
        found.c2pa_manifest, found.c2pa_method, found.c2pa_detail = c2pa_findings(path, data)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        found.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        log.debug("metadata of %s: %s", path, found.error)
    return found
