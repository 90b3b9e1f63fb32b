"""XMP packets: the IPTC ``DigitalSourceType``, the AI system named, and the creator tool, parsed as XML.

The packet comes from where Pillow exposes it (JPEG APP1 and WebP ``XMP `` as ``info["xmp"]``, PNG's
``XML:com.adobe.xmp`` text chunk, TIFF tag 700) and is parsed with defusedxml, which refuses entity expansion
and external references. An RDF property may be written as an attribute of ``rdf:Description``, as an element
with text, as an element with ``rdf:resource``, or as an ``rdf:Alt``/``rdf:Seq`` list; all four are read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from fakescope.forensics.provenance.terms import source_type_term

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
XMP = "http://ns.adobe.com/xap/1.0/"
#: The largest packet parsed (XMP in JPEG is at most 64 kB per segment; extended XMP is not read).
MAX_PACKET = 4 * 1024 * 1024


class XmpError(ValueError):
    """The packet is not well-formed (or refused) XML; ``str(err)`` is one line."""


@dataclass
class XmpFindings:
    """What the file's XMP packet declares."""

    __pydantic_config__ = {"use_attribute_docstrings": True}
    digital_source_type: str | None = None
    """``Iptc4xmpExt:DigitalSourceType``, last path segment (e.g. ``trainedAlgorithmicMedia``)."""
    ai_system: str | None = None
    """``Iptc4xmpExt:AISystemUsed`` (and version), the generator the IPTC AI fields name."""
    creator_tool: str | None = None
    """``xmp:CreatorTool``: the application that wrote the file."""


def xmp_packet(img: Any) -> bytes | str | None:
    """The raw XMP packet of an opened (not necessarily decoded) Pillow image, or None."""
    info = img.info
    packet = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if packet is None and hasattr(img, "tag_v2"):
        packet = img.tag_v2.get(700)
    return packet or None


def _value(el: Element) -> str | None:
    if el.get(f"{{{RDF}}}resource"):
        return el.get(f"{{{RDF}}}resource")
    items = [li.text for li in el.iter(f"{{{RDF}}}li") if li.text and li.text.strip()]
    text = items[0] if items else el.text
    return text.strip() if text and text.strip() else None


def xmp_property(root: Element, ns: str, name: str) -> str | None:
    """The first value of property ``ns:name`` anywhere in the packet (attribute or element form)."""
    key = f"{{{ns}}}{name}"
    for el in root.iter():
        if key in el.attrib and el.attrib[key].strip():
            return el.attrib[key].strip()
        if el.tag == key and (v := _value(el)):
            return v
    return None


def parse_xmp(packet: bytes | str) -> XmpFindings:
    """The findings in one XMP packet; :class:`XmpError` when it is not well-formed XML."""
    if isinstance(packet, str):
        packet = packet.encode("utf-8", "surrogateescape")
    if len(packet) > MAX_PACKET:
        raise XmpError(f"XMP packet is {len(packet):,} bytes, over the {MAX_PACKET:,}-byte limit")
    try:
        root = fromstring(packet.strip(b"\x00 \t\r\n"))
    except (ParseError, DefusedXmlException) as err:
        raise XmpError(f"XMP packet is not well-formed XML ({str(err).splitlines()[0][:120]})") from None
    system = xmp_property(root, IPTC_EXT, "AISystemUsed")
    version = xmp_property(root, IPTC_EXT, "AISystemVersionUsed")
    return XmpFindings(
        digital_source_type=source_type_term(xmp_property(root, IPTC_EXT, "DigitalSourceType")),
        ai_system=" ".join(v for v in (system, version) if v) or None,
        creator_tool=xmp_property(root, XMP, "CreatorTool"))
