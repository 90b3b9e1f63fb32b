"""Provenance: what the file itself declares about where it came from, kept apart from the pixel score.

One reader, :func:`read_provenance`, returns a :class:`Provenance` record per file from, in order of weight:

1. C2PA Content Credentials (:mod:`.c2pa_reader`): a signed manifest naming the generator, the actions
   (``c2pa.created`` with a ``digitalSourceType``, ``c2pa.edited``, ...) and the ingredients;
2. the XMP packet's IPTC ``DigitalSourceType`` and AI-system fields (:mod:`.xmp`);
3. generator settings in PNG text chunks and EXIF text (:mod:`.generators`);
4. camera evidence: EXIF make, model, lens, dates, the embedded thumbnail and the JPEG tables (:mod:`.camera`).

The verdict is ``declared_ai``, ``declared_edit``, ``camera_original_likely``, ``credentials_invalid`` or
``none``. It is evidence about the file, never about the pixels: everything but a valid signature is trivial to
strip or forge, and a file without any of it proves nothing (docs/provenance.md). A part that cannot be read
adds a one-line reason to ``errors`` and the others are still read; reading never raises for a bad file.
"""
from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

from fakescope.forensics.io import decoder_formats, irregular_file_reason, own_pixel_limit
from fakescope.forensics.provenance.c2pa_reader import C2paAction, C2paManifest, read_c2pa
from fakescope.forensics.provenance.camera import CameraEvidence, camera_evidence, exif_texts
from fakescope.forensics.provenance.generators import (
    KNOWN_EDITORS,
    KNOWN_GENERATORS,
    MAX_TEXT,
    GeneratorSettings,
    generator_settings,
    known_name,
)
from fakescope.forensics.provenance.terms import AI_SOURCE_TYPES, CAPTURE_SOURCE_TYPES, EDIT_SOURCE_TYPES
from fakescope.forensics.provenance.xmp import XmpError, XmpFindings, parse_xmp, xmp_packet

__all__ = ["VERDICTS", "C2paAction", "C2paManifest", "CameraEvidence", "GeneratorSettings", "Provenance",
           "XmpFindings", "read_provenance"]

log = logging.getLogger(__name__)

Verdict = Literal["declared_ai", "declared_edit", "camera_original_likely", "credentials_invalid", "none"]
VERDICTS: tuple[str, ...] = Verdict.__args__
Source = Literal["c2pa", "xmp", "png-text", "exif"]
#: Files larger than this are not read for provenance (the pixel decoder refuses far smaller ones anyway).
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass
class Provenance:
    """What a file declares about its origin (see docs/provenance.md for what each verdict does and does not prove)."""

    __pydantic_config__ = {"use_attribute_docstrings": True}
    verdict: Verdict = "none"
    """declared_ai (a manifest or metadata says machine-made), declared_edit (says edited, or an editor wrote it),
    camera_original_likely (camera metadata and nothing contradicting it), credentials_invalid (a C2PA manifest
    that fails validation: the file changed after signing, or the manifest is broken), none (nothing declared)."""
    generator: str | None = None
    """The claim generator, generator tool or software the file names, else null."""
    digital_source_type: str | None = None
    """The IPTC digital source type declared (last path segment, e.g. trainedAlgorithmicMedia), else null."""
    signed_by: str | None = None
    """Issuer of the C2PA signing certificate; null when unsigned."""
    valid: bool | None = None
    """Whether the C2PA manifest validates (true/false); null when there is none."""
    source: Source | None = None
    """Where the verdict came from: c2pa, xmp, png-text, exif, or null."""
    reason: str = "no provenance metadata"
    """The verdict in one line, naming the evidence."""
    c2pa: C2paManifest | None = None
    """The active C2PA manifest, if the file has one."""
    xmp: XmpFindings | None = None
    """What the XMP packet declares, if the file has one."""
    generator_settings: GeneratorSettings | None = None
    """Generator settings found in text chunks or EXIF text."""
    camera: CameraEvidence | None = None
    """EXIF camera fields, thumbnail check and JPEG encoder match."""
    errors: list[str] = field(default_factory=list)
    """One line per part of the file that could not be read (the other parts still were)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_bytes(source: str | Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    path = Path(source)
    irregular = irregular_file_reason(path)
    if irregular is not None:  # a FIFO would block the read for ever
        raise ValueError(irregular)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"file is over {MAX_FILE_BYTES // 2**20} MB; provenance not read")
    return path.read_bytes()


def _text_fields(img: Image.Image, record: Provenance) -> dict[str, str]:
    """PNG/WebP text chunks Pillow read before the pixels, and EXIF text; each cut to MAX_TEXT characters."""
    texts = {k: v for k, v in img.info.items() if isinstance(k, str) and isinstance(v, str) and k != "XML:com.adobe.xmp"}
    try:
        texts.update(exif_texts(img))
    except Exception as err:  # noqa: BLE001  a broken EXIF block is a finding, not a failure
        record.errors.append(f"EXIF unreadable: {type(err).__name__}: {str(err)[:120]}")
    for key, value in texts.items():
        if len(value) > MAX_TEXT:
            record.errors.append(f"text field {key!r} is {len(value):,} characters; read the first {MAX_TEXT:,}")
            texts[key] = value[:MAX_TEXT]
    return texts


def _part(record: Provenance, what: str, fn, *args):
    """Run one reader; a failure becomes a one-line entry in ``record.errors``."""
    try:
        return fn(*args)
    except XmpError as err:
        record.errors.append(str(err))
    except UnidentifiedImageError:
        record.errors.append(f"{what} unreadable: not a recognised image file")
    except Exception as err:  # noqa: BLE001  one unreadable part must not hide the others
        text = str(err).strip().splitlines()
        record.errors.append(f"{what} unreadable: {type(err).__name__}{': ' + text[0][:160] if text else ''}")
        log.debug("%s: %s", what, record.errors[-1])
    return None


def read_provenance(source: str | Path | bytes, name: str | None = None,
                    decoded: Image.Image | None = None) -> Provenance:
    """The :class:`Provenance` record of one file (a path, or the file's bytes as uploaded). Never raises for a
    bad file: what cannot be read becomes a line in ``errors``. ``decoded``: the file's pixels when the caller has
    already decoded them (EXIF orientation applied, as :func:`~fakescope.forensics.io.open_image` returns them),
    which spares the thumbnail check a second decode."""
    record = Provenance()
    try:
        data = _read_bytes(source)
    except (OSError, ValueError) as err:
        record.errors.append(f"{name or source}: {getattr(err, 'strerror', None) or err}")
        return decide(record)
    with own_pixel_limit():
        img = _part(record, "image header", lambda: Image.open(io.BytesIO(data), formats=decoder_formats()))
    record.c2pa = _part(record, "C2PA manifest", read_c2pa, data, img.format if img else None)
    if img is not None:
        with img:
            packet = _part(record, "XMP", xmp_packet, img)
            record.xmp = _part(record, "XMP", parse_xmp, packet) if packet else None
            record.generator_settings = _part(record, "text fields", lambda: generator_settings(_text_fields(img, record)))
            record.camera = _part(record, "EXIF", camera_evidence, img, data, decoded)
    return decide(record)


def _from_c2pa(r: Provenance, m: C2paManifest) -> Provenance:
    r.source, r.generator, r.signed_by = "c2pa", m.claim_generator, m.signed_by
    r.valid = m.valid
    declared = [a.digital_source_type for a in m.actions if a.digital_source_type]
    ai = [t for t in declared + m.ingredient_source_types if t in AI_SOURCE_TYPES]
    r.digital_source_type = (ai or declared or [None])[0]
    signer = f"signed by {m.signed_by}" if m.signed_by else "signer unknown"
    if not m.valid:
        bad = [c for c in m.failures if c != "signingCredential.untrusted"] or m.failures
        r.verdict = "credentials_invalid"
        r.reason = m.error or f"C2PA manifest ({signer}) fails validation: {', '.join(bad) or m.state}"
    elif ai:
        r.verdict, r.reason = "declared_ai", f"valid C2PA manifest ({signer}) declares {ai[0]}"
    elif any(t in EDIT_SOURCE_TYPES for t in declared) or m.ingredients or any(
            a.action not in ("c2pa.created", "c2pa.published") for a in m.actions):
        edits = sorted({a.action for a in m.actions if a.action != "c2pa.opened"}) or ["ingredients"]
        r.verdict, r.reason = "declared_edit", f"valid C2PA manifest ({signer}) records {', '.join(edits)}"
    elif any(t in CAPTURE_SOURCE_TYPES for t in declared):
        r.verdict, r.reason = "camera_original_likely", f"valid C2PA manifest ({signer}) declares {declared[0]}"
    else:
        r.reason = f"valid C2PA manifest ({signer}) declares no AI generation, edit or capture"
    return r


def _from_metadata(r: Provenance) -> Provenance:
    """The verdict of an unsigned file: XMP source type, generator settings, software names, camera EXIF."""
    x, g, cam = r.xmp or XmpFindings(), r.generator_settings, r.camera or CameraEvidence()
    r.digital_source_type = x.digital_source_type
    tools = [("xmp", x.ai_system), ("xmp", x.creator_tool), ("exif", cam.software)]
    if x.digital_source_type in AI_SOURCE_TYPES:
        r.verdict, r.source, r.generator = "declared_ai", "xmp", x.ai_system or x.creator_tool or cam.software
        r.reason = f"XMP declares {x.digital_source_type} (unsigned)"
    elif g is not None:
        r.verdict, r.generator = "declared_ai", g.tool
        r.source = "exif" if g.field in ("UserComment", "ImageDescription") else "png-text"
        r.reason = f"{g.tool} generation settings in the {g.field!r} field (unsigned)"
    elif (hit := next(((s, t) for s, t in tools if known_name(t, KNOWN_GENERATORS)), None)) is not None:
        r.verdict, r.source, r.generator = "declared_ai", hit[0], hit[1]
        r.reason = f"{'XMP' if hit[0] == 'xmp' else 'EXIF'} names the generator {hit[1]!r} (unsigned)"
    elif x.digital_source_type in EDIT_SOURCE_TYPES:
        r.verdict, r.source, r.generator = "declared_edit", "xmp", x.creator_tool or cam.software
        r.reason = f"XMP declares {x.digital_source_type} (unsigned)"
    elif (hit := next(((s, t) for s, t in tools if known_name(t, KNOWN_EDITORS)), None)) is not None:
        r.verdict, r.source, r.generator = "declared_edit", hit[0], hit[1]
        r.reason = f"{'XMP' if hit[0] == 'xmp' else 'EXIF'} names the editor {hit[1]!r}"
    else:
        return _camera_verdict(r, x, cam)
    return r


def _camera_verdict(r: Provenance, x: XmpFindings, cam: CameraEvidence) -> Provenance:
    if not cam.present and x.digital_source_type not in CAPTURE_SOURCE_TYPES:
        r.generator = x.creator_tool or cam.software
        return r
    r.generator = cam.software or x.creator_tool
    device = cam.device or "a capture device"
    against = []
    if cam.thumbnail == "inconsistent":
        against.append("the EXIF thumbnail does not show this image" + (
            f" (correlation {cam.thumbnail_correlation})" if cam.thumbnail_correlation is not None else
            " (another framing)"))
    if cam.jpeg_encoder and cam.jpeg_encoder.startswith("Adobe Photoshop"):
        against.append(f"the JPEG tables are {cam.jpeg_encoder}'s")
    if against:
        r.source, r.reason = "exif", f"EXIF names {device}, but {' and '.join(against)}"
        return r
    r.verdict = "camera_original_likely"
    if x.digital_source_type in CAPTURE_SOURCE_TYPES:
        r.source, r.reason = "xmp", f"XMP declares {x.digital_source_type} (unsigned)"
    else:
        r.source = "exif"
        r.reason = f"EXIF names {device}" + (f", taken {cam.taken_at}" if cam.taken_at else "") + (
            "; the thumbnail matches" if cam.thumbnail == "consistent" else "") + " (unsigned)"
    return r


def decide(record: Provenance) -> Provenance:
    """Fill in the verdict and its summary fields from the parts read."""
    if record.c2pa is not None:
        return _from_c2pa(record, record.c2pa)
    return _from_metadata(record)
