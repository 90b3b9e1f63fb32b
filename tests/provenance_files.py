"""Real files with provenance for tests: images signed with c2pa-python's Builder and the c2pa-python test
certificate (from ../shared/fixtures/provenance), PNGs with generator text chunks, JPEGs with XMP packets and
with EXIF camera fields and an embedded thumbnail."""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
from conftest import data_root_path, make_image
from PIL import Image, PngImagePlugin

#: ../shared/fixtures/provenance, found beside the data folder (FAKESCOPE_DATA) as the other shared files are.
FIXTURES = data_root_path().parent / "fixtures" / "provenance"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
A1111_TEXT = ("a photo of an astronaut riding a horse, highly detailed\n"
              "Negative prompt: blurry, lowres\n"
              'Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567, Size: 512x512, '
              'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "a: 1, b: 2", Version: v1.7.0')
COMFY_PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle on a hill at dusk", "clip": ["4", 1]}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "cfg": 8.0, "sampler_name": "euler",
                                               "scheduler": "normal", "model": ["4", 0]}},
}


def fixture(name: str) -> Path:
    """A file of ../shared/fixtures/provenance, or skip with the reason."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"provenance fixture {path} not found (../shared beside the repo, or set FAKESCOPE_DATA)")
    return path


def signed_image(fmt: str = "JPEG", source_type: str = "trainedAlgorithmicMedia", action: str = "c2pa.created",
                 seed: int = 3) -> bytes:
    """A small image signed with the c2pa-python test certificate (es256): one ``action`` declaring
    ``source_type``, claim generator ``fakescope-tests 1.0``, software agent ``TestDiffusion 2``."""
    import c2pa

    certs, key = fixture("es256_certs.pem").read_bytes(), fixture("es256_private.key").read_bytes()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, certs, key, None))
    manifest = {"claim_generator_info": [{"name": "fakescope-tests", "version": "1.0"}], "title": f"signed.{fmt}",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": action, "digitalSourceType": IPTC + source_type,
                     "softwareAgent": {"name": "TestDiffusion", "version": "2"}}]}}]}
    src, out = io.BytesIO(), io.BytesIO()
    make_image((64, 48), seed=seed).save(src, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    src.seek(0)
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, Image.MIME[fmt], src, out)
    signer.close()
    return out.getvalue()


def png_with_text(path: Path, texts: dict[str, str], compressed: bool = False) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value, zip=compressed)
    make_image((40, 32), seed=5).save(path, pnginfo=info)
    return path


def a1111_png(path: Path) -> Path:
    return png_with_text(path, {"parameters": A1111_TEXT})


def comfyui_png(path: Path) -> Path:
    return png_with_text(path, {"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps({"nodes": []})})


def xmp_packet(source_type: str | None = None, element_form: bool = False, creator_tool: str | None = None,
               extra: str = "") -> bytes:
    """An XMP packet declaring ``source_type`` as an attribute of rdf:Description, or as an element with
    rdf:resource (``element_form``)."""
    attrs = f' xmp:CreatorTool="{creator_tool}"' if creator_tool else ""
    body = ""
    if source_type and element_form:
        body = f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{IPTC}{source_type}"/>'
    elif source_type:
        attrs += f' Iptc4xmpExt:DigitalSourceType="{IPTC}{source_type}"'
    return (f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
            f'xmlns:xmp="http://ns.adobe.com/xap/1.0/"{attrs}>{body}{extra}</rdf:Description></rdf:RDF></x:xmpmeta>'
            f'<?xpacket end="w"?>').encode()


def jpeg_with_xmp(path: Path, packet: bytes, exif: Image.Exif | None = None) -> Path:
    make_image((48, 40), seed=6).save(path, quality=90, xmp=packet, **({"exif": exif} if exif is not None else {}))
    return path


def _tiff_ifd(entries: list[tuple[int, int, bytes]], start: int, next_ifd: int) -> tuple[bytes, bytes]:
    """One little-endian IFD at offset ``start`` (entries: tag, TIFF type, value bytes) and its data area."""
    sizes = {2: 1, 3: 2, 4: 4}
    table, data = b"", b""
    data_at = start + 2 + 12 * len(entries) + 4
    for tag, kind, value in sorted(entries):
        count = len(value) // sizes[kind]
        if len(value) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", tag, kind, count, data_at + len(data))
            data += value + b"\0" * (len(value) % 2)
    return struct.pack("<H", len(entries)) + table + struct.pack("<I", next_ifd), data


def exif_with_thumbnail(thumbnail: Image.Image, make: str = "Canon", model: str = "Canon EOS 5D Mark IV",
                        taken: str = "2024:05:01 10:00:00", software: str | None = None,
                        orientation: int | None = None) -> bytes:
    """A raw EXIF block (``Exif\\0\\0`` + TIFF) with Make, Model, Software, DateTimeOriginal and an IFD1 JPEG
    thumbnail, laid out as cameras write it."""
    buf = io.BytesIO()
    thumbnail.save(buf, format="JPEG", quality=90)
    thumb = buf.getvalue()
    ascii_ = lambda s: s.encode() + b"\0"  # noqa: E731
    ifd0 = [(271, 2, ascii_(make)), (272, 2, ascii_(model)), (34665, 4, b"\0" * 4)]
    if software:
        ifd0.append((305, 2, ascii_(software)))
    if orientation:
        ifd0.append((274, 3, struct.pack("<H", orientation)))
    # Two passes: sizes first, then the real offsets.
    size0 = sum(len(b) for b in _tiff_ifd(ifd0, 8, 0))
    exif_at = 8 + size0
    ifd0 = [e if e[0] != 34665 else (34665, 4, struct.pack("<I", exif_at)) for e in ifd0]
    exif_ifd = [(36867, 2, ascii_(taken))]
    size_exif = sum(len(b) for b in _tiff_ifd(exif_ifd, exif_at, 0))
    ifd1_at = exif_at + size_exif
    thumb_at = ifd1_at + 2 + 12 * 2 + 4
    ifd1 = [(513, 4, struct.pack("<I", thumb_at)), (514, 4, struct.pack("<I", len(thumb)))]
    blocks = [_tiff_ifd(ifd0, 8, ifd1_at), _tiff_ifd(exif_ifd, exif_at, 0), _tiff_ifd(ifd1, ifd1_at, 0)]
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + b"".join(t + d for t, d in blocks) + thumb


def camera_jpeg(path: Path, thumbnail_seed: int | None = None, size: tuple[int, int] = (320, 240),
                orientation: int | None = None, **kwargs) -> Path:
    """A JPEG (libjpeg q92) with camera EXIF whose 160x120 thumbnail shows this image (a 3:2 picture between black
    bars, as cameras do), or another (``thumbnail_seed``)."""
    img = make_image(size, seed=11)
    shown = img if thumbnail_seed is None else make_image(size, seed=thumbnail_seed).transpose(
        Image.Transpose.FLIP_LEFT_RIGHT)
    thumb = Image.new("RGB", (160, 120))
    fitted = shown.copy()
    fitted.thumbnail((160, 120))
    thumb.paste(fitted, ((160 - fitted.width) // 2, (120 - fitted.height) // 2))
    img.save(path, quality=92, exif=exif_with_thumbnail(thumb, orientation=orientation, **kwargs))
    return path


def malformed_manifest_jpeg(path: Path) -> Path:
    """A JPEG with an APP11 segment holding a truncated JUMBF box labelled c2pa."""
    buf = io.BytesIO()
    make_image((40, 32), seed=9).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    payload = b"JP\x00\x01\x00\x00\x00\x01\x00\x00\x00\x20jumb\x00\x00\x00\x18jumdc2pa\x00\x11\x00\x10c2pa\x00"
    path.write_bytes(data[:2] + b"\xff\xeb" + struct.pack(">H", len(payload) + 2) + payload + data[2:])
    return path
