"""Provenance reading on real files: the shared C2PA fixtures, images signed here with c2pa-python's Builder,
generator text chunks, XMP packets, camera EXIF with thumbnails, and broken inputs (one-line reasons)."""
from __future__ import annotations

import io
import json
import struct
import time
from pathlib import Path

import pytest
from conftest import make_image
from PIL import Image, JpegPresets
from provenance_files import (
    A1111_TEXT,
    a1111_png,
    camera_jpeg,
    comfyui_png,
    exif_with_thumbnail,
    fixture,
    jpeg_with_xmp,
    malformed_manifest_jpeg,
    png_with_text,
    signed_image,
    xmp_packet,
)

from fakescope.forensics.io import open_image
from fakescope.forensics.provenance import VERDICTS, Provenance, read_provenance
from fakescope.forensics.provenance.camera import match_encoder
from fakescope.forensics.provenance.generators import MAX_TEXT

SUMMARY = ("verdict", "generator", "digital_source_type", "signed_by", "valid", "source")
TEST_SIGNER = "C2PA Test Signing Cert"


def summary(r: Provenance) -> tuple:
    return tuple(getattr(r, k) for k in SUMMARY)


def test_fixture_declaring_algorithmic_media() -> None:
    r = read_provenance(fixture("C.jpg"))
    assert summary(r) == ("declared_ai", "make_test_images/0.26.0 c2pa-rs/0.26.0", "algorithmicMedia", TEST_SIGNER,
                          True, "c2pa")
    assert r.c2pa.state == "Valid" and r.c2pa.signer_name == "C2PA Signer"
    assert r.c2pa.signed_at == "2023-09-29T17:40:14+00:00"
    assert [(a.action, a.digital_source_type, a.software_agent) for a in r.c2pa.actions] == [
        ("c2pa.created", "algorithmicMedia", "Make Test Images 0.26.0")]
    assert r.c2pa.failures == ["signingCredential.untrusted"], "no trust list is loaded: valid, not trusted"
    assert r.errors == [] and "algorithmicMedia" in r.reason


def test_fixture_valid_edit_with_ingredient() -> None:
    r = read_provenance(fixture("CA.jpg"))
    assert summary(r) == ("declared_edit", "make_test_images 0.33.1", None, TEST_SIGNER, True, "c2pa")
    assert [a.action for a in r.c2pa.actions] == ["c2pa.opened", "c2pa.color_adjustments"]
    assert r.c2pa.ingredients == ["A.jpg"] and "c2pa.color_adjustments" in r.reason


@pytest.mark.parametrize(("name", "code"), [("XCA.jpg", "assertion.dataHash.mismatch"),
                                            ("E-sig-CA.jpg", "claimSignature.mismatch")])
def test_fixtures_failing_validation(name: str, code: str) -> None:
    r = read_provenance(fixture(name))
    assert (r.verdict, r.valid, r.source, r.signed_by) == ("credentials_invalid", False, "c2pa", TEST_SIGNER)
    assert r.c2pa.state == "Invalid" and code in r.c2pa.failures and code in r.reason


@pytest.mark.parametrize(("name", "verdict", "generator", "source"), [
    ("A.jpg", "declared_edit", "Adobe Lightroom 5.3 (Macintosh)", "xmp"),
    ("earth_apollo17.jpg", "declared_edit", "Adobe Photoshop CS Windows", "xmp"),
    ("sample1.png", "declared_edit", "Adobe Lightroom 5.3 (Macintosh)", "exif"),
    ("sample1.webp", "none", None, None)])
def test_fixtures_without_manifest(name: str, verdict: str, generator: str | None, source: str | None) -> None:
    r = read_provenance(fixture(name))
    assert (r.verdict, r.generator, r.source, r.c2pa, r.signed_by, r.valid) == (verdict, generator, source, None, None, None)
    assert r.errors == []


def test_fixture_camera_fields() -> None:
    cam = read_provenance(fixture("A.jpg")).camera
    assert (cam.make, cam.model, cam.lens, cam.taken_at) == ("Canon", "Canon EOS REBEL T3",
                                                             "EF-S18-55mm f/3.5-5.6 IS II", "2011:07:30 15:41:25")
    assert cam.thumbnail == "consistent" and cam.jpeg_encoder == "Adobe Photoshop (low)"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_signed_here_declares_trained_algorithmic_media(fmt: str) -> None:
    data = signed_image(fmt)
    r = read_provenance(data)
    assert summary(r) == ("declared_ai", "fakescope-tests 1.0", "trainedAlgorithmicMedia", TEST_SIGNER, True, "c2pa")
    assert [(a.action, a.software_agent) for a in r.c2pa.actions] == [("c2pa.created", "TestDiffusion 2")]
    assert r.c2pa.ingredients == [] and r.c2pa.signed_at is None  # no time-stamp authority was used


def test_pixels_changed_after_signing() -> None:
    data = bytearray(signed_image("JPEG"))
    data[-20] ^= 0x55  # inside the entropy-coded pixels, before the end-of-image marker
    r = read_provenance(bytes(data))
    assert (r.verdict, r.valid, r.digital_source_type) == ("credentials_invalid", False, "trainedAlgorithmicMedia")
    assert "assertion.dataHash.mismatch" in r.c2pa.failures


def test_signed_capture_is_camera_original() -> None:
    r = read_provenance(signed_image("JPEG", source_type="digitalCapture"))
    assert summary(r)[:3] == ("camera_original_likely", "fakescope-tests 1.0", "digitalCapture") and r.valid


def test_malformed_manifest(tmp_path: Path) -> None:
    r = read_provenance(malformed_manifest_jpeg(tmp_path / "m.jpg"))
    assert (r.verdict, r.valid, r.source, r.signed_by) == ("credentials_invalid", False, "c2pa", None)
    assert r.c2pa.error.startswith("manifest present but unreadable: ") and "\n" not in r.c2pa.error
    assert r.camera.jpeg_encoder == "libjpeg quality 90", "the other parts are still read"


def test_a1111_png(tmp_path: Path) -> None:
    r = read_provenance(a1111_png(tmp_path / "a.png"))
    assert summary(r) == ("declared_ai", "AUTOMATIC1111", None, None, None, "png-text")
    g = r.generator_settings
    assert (g.tool, g.field, g.model) == ("AUTOMATIC1111", "parameters", "v1-5-pruned-emaonly")
    assert g.prompt == "a photo of an astronaut riding a horse, highly detailed"
    assert g.settings["Steps"] == "28" and g.settings["Sampler"] == "DPM++ 2M Karras"
    assert g.settings["Seed"] == "1234567" and g.settings["Negative prompt"] == "blurry, lowres"
    assert g.settings["Lora hashes"] == "a: 1, b: 2", "a quoted value keeps its commas"


def test_a1111_in_jpeg_exif_user_comment(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[37510] = b"UNICODE\0" + A1111_TEXT.encode("utf-16-be")
    path = tmp_path / "a.jpg"
    make_image().save(path, quality=90, exif=exif)
    r = read_provenance(path)
    assert summary(r) == ("declared_ai", "AUTOMATIC1111", None, None, None, "exif")
    assert r.generator_settings.field == "UserComment" and r.generator_settings.settings["Steps"] == "28"


def test_comfyui_png(tmp_path: Path) -> None:
    r = read_provenance(comfyui_png(tmp_path / "c.png"))
    assert summary(r) == ("declared_ai", "ComfyUI", None, None, None, "png-text")
    g = r.generator_settings
    assert (g.model, g.prompt) == ("sd_xl_base_1.0.safetensors", "a castle on a hill at dusk")
    assert g.settings == {"seed": "42", "steps": "20", "cfg": "8.0", "sampler_name": "euler", "scheduler": "normal"}


@pytest.mark.parametrize(("texts", "tool", "model"), [
    ({"Software": "NovelAI", "Source": "NovelAI Diffusion V4", "Comment": json.dumps({"prompt": "1girl", "steps": 28})},
     "NovelAI", "NovelAI Diffusion V4"),
    ({"invokeai_metadata": json.dumps({"positive_prompt": "a fox", "model": {"name": "juggernaut"}, "steps": 30})},
     "InvokeAI", "juggernaut"),
    ({"Description": "a red fox in snow --ar 3:2 Job ID: 0f4b7c1e-1111-2222-3333-444455556666"}, "Midjourney", None)])
def test_other_generators(tmp_path: Path, texts: dict, tool: str, model: str | None) -> None:
    r = read_provenance(png_with_text(tmp_path / "g.png", texts))
    assert (r.verdict, r.generator, r.source, r.generator_settings.model) == ("declared_ai", tool, "png-text", model)
    assert r.generator_settings.prompt


@pytest.mark.parametrize("element_form", [False, True])
def test_xmp_digital_source_type(tmp_path: Path, element_form: bool) -> None:
    packet = xmp_packet("compositeWithTrainedAlgorithmicMedia", element_form, creator_tool="Adobe Firefly")
    r = read_provenance(jpeg_with_xmp(tmp_path / "x.jpg", packet))
    assert summary(r) == ("declared_ai", "Adobe Firefly", "compositeWithTrainedAlgorithmicMedia", None, None, "xmp")
    assert r.xmp.digital_source_type == "compositeWithTrainedAlgorithmicMedia" and "unsigned" in r.reason


def test_xmp_in_png_and_ai_system(tmp_path: Path) -> None:
    extra = ('<Iptc4xmpExt:AISystemUsed>Imagen</Iptc4xmpExt:AISystemUsed>'
             '<Iptc4xmpExt:AISystemVersionUsed>3</Iptc4xmpExt:AISystemVersionUsed>')
    path = png_with_text(tmp_path / "x.png", {"XML:com.adobe.xmp": xmp_packet("trainedAlgorithmicMedia", extra=extra).decode()})
    r = read_provenance(path)
    assert (r.verdict, r.generator, r.source, r.xmp.ai_system) == ("declared_ai", "Imagen 3", "xmp", "Imagen 3")


def test_xmp_edit_and_capture_terms(tmp_path: Path) -> None:
    edit = read_provenance(jpeg_with_xmp(tmp_path / "e.jpg", xmp_packet("humanEdits")))
    assert (edit.verdict, edit.source, edit.digital_source_type) == ("declared_edit", "xmp", "humanEdits")
    cap = read_provenance(jpeg_with_xmp(tmp_path / "c.jpg", xmp_packet("digitalCapture", element_form=True)))
    assert (cap.verdict, cap.source, cap.digital_source_type) == ("camera_original_likely", "xmp", "digitalCapture")


def test_broken_xmp_is_one_line_and_other_parts_still_read(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[271], exif[272], exif[305] = "Canon", "EOS 5D", "Adobe Photoshop 25.0"
    r = read_provenance(jpeg_with_xmp(tmp_path / "b.jpg", b"<x:xmpmeta><rdf:RDF>unclosed", exif))
    assert len(r.errors) == 1 and r.errors[0].startswith("XMP packet is not well-formed XML")
    assert (r.verdict, r.source, r.generator) == ("declared_edit", "exif", "Adobe Photoshop 25.0")


def test_xmp_entity_expansion_is_refused(tmp_path: Path) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>')
    r = read_provenance(jpeg_with_xmp(tmp_path / "bomb.jpg", bomb))
    assert r.verdict == "none" and len(r.errors) == 1 and "XMP packet is not well-formed XML" in r.errors[0]


def test_huge_text_chunk_is_cut(tmp_path: Path) -> None:
    huge = "x" * (5 * 1024 * 1024) + "\n" + A1111_TEXT
    path = png_with_text(tmp_path / "huge.png", {"parameters": huge})
    start = time.process_time()
    r = read_provenance(path)
    assert time.process_time() - start < 5, "a 5 MB chunk is cut, not parsed"
    assert r.errors == [f"text field 'parameters' is {len(huge):,} characters; read the first {MAX_TEXT:,}"]
    assert r.verdict == "none", "the settings line lies beyond the part read"


def test_camera_original_with_matching_thumbnail(tmp_path: Path) -> None:
    r = read_provenance(camera_jpeg(tmp_path / "cam.jpg"))
    assert summary(r) == ("camera_original_likely", None, None, None, None, "exif")
    cam = r.camera
    assert (cam.make, cam.model, cam.taken_at, cam.thumbnail) == ("Canon", "Canon EOS 5D Mark IV",
                                                                  "2024:05:01 10:00:00", "consistent")
    assert cam.thumbnail_correlation > 0.95 and (cam.jpeg_encoder, cam.jpeg_quality) == ("libjpeg quality 92", 92)
    assert r.reason.startswith("EXIF names Canon EOS 5D Mark IV, taken 2024:05:01 10:00:00; the thumbnail matches")


def test_thumbnail_of_another_picture(tmp_path: Path) -> None:
    r = read_provenance(camera_jpeg(tmp_path / "cam.jpg", thumbnail_seed=3))
    assert (r.verdict, r.camera.thumbnail) == ("none", "inconsistent") and r.camera.thumbnail_correlation < 0.8
    assert "thumbnail does not show this image" in r.reason


def test_thumbnail_between_bars_and_after_rotation(tmp_path: Path) -> None:
    wide = read_provenance(camera_jpeg(tmp_path / "wide.jpg", size=(360, 240)))  # 3:2 in a 4:3 thumbnail
    assert (wide.verdict, wide.camera.thumbnail) == ("camera_original_likely", "consistent")
    turned = camera_jpeg(tmp_path / "turned.jpg", orientation=6)  # shown upright when decoded; thumbnail as stored
    decoded = open_image(turned.read_bytes())
    assert decoded.size == (240, 320)
    r = read_provenance(turned, decoded=decoded)
    assert r.camera.thumbnail == "consistent" and r.camera.thumbnail_correlation > 0.95
    assert read_provenance(turned).camera.thumbnail_correlation == pytest.approx(r.camera.thumbnail_correlation, abs=0.02)


def test_cropped_image_keeps_the_old_thumbnail(tmp_path: Path) -> None:
    path = camera_jpeg(tmp_path / "cam.jpg")
    with Image.open(path) as img:
        exif = img.info["exif"]
        img.crop((0, 0, 200, 200)).save(tmp_path / "cropped.jpg", quality=92, exif=exif)  # an editor keeping EXIF
    r = read_provenance(tmp_path / "cropped.jpg")
    assert (r.verdict, r.camera.thumbnail, r.camera.thumbnail_correlation) == ("none", "inconsistent", None)
    assert "another framing" in r.reason


def test_camera_exif_with_editor_software(tmp_path: Path) -> None:
    r = read_provenance(camera_jpeg(tmp_path / "cam.jpg", software="GIMP 2.10.36"))
    assert (r.verdict, r.generator, r.source) == ("declared_edit", "GIMP 2.10.36", "exif")


@pytest.mark.parametrize("quality", [10, 50, 75, 95, 100])
def test_libjpeg_quality_recognised(quality: int) -> None:
    buf = io.BytesIO()
    make_image().save(buf, format="JPEG", quality=quality)
    assert match_encoder(Image.open(buf).quantization) == (f"libjpeg quality {quality}", quality)


@pytest.mark.parametrize("preset", ["web_high", "maximum"])
def test_photoshop_tables_recognised(preset: str) -> None:
    buf = io.BytesIO()
    make_image().save(buf, format="JPEG", qtables=preset)
    encoder, nearest = match_encoder(Image.open(buf).quantization)
    assert encoder == f"Adobe Photoshop ({preset})" and 1 <= nearest <= 100
    custom = {0: [v + 1 for v in JpegPresets.presets[preset]["quantization"][0]]}
    assert match_encoder(custom)[0] is None, "a table of neither group names no encoder"


def test_nothing_declared_and_unreadable_files(tmp_path: Path) -> None:
    plain = tmp_path / "plain.png"
    make_image().save(plain)
    r = read_provenance(plain)
    assert summary(r) == ("none", None, None, None, None, None) and r.errors == [] and r.camera is None
    missing = read_provenance(tmp_path / "missing.jpg")
    assert missing.verdict == "none" and len(missing.errors) == 1 and "missing.jpg" in missing.errors[0]
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    assert read_provenance(junk).errors == ["image header unreadable: not a recognised image file"]


def test_record_json_shape() -> None:
    d = read_provenance(signed_image("JPEG")).to_dict()
    assert set(SUMMARY) <= set(d) and d["verdict"] in VERDICTS
    assert json.loads(json.dumps(d)) == d


def test_thumbnail_declaring_a_huge_image_is_not_decoded(tmp_path: Path) -> None:
    """The 64 KB EXIF block can hold a JPEG header declaring 10000 x 10000: refused from its header, a one-line
    finding (Pillow would decode it, 300 MB, from a 16 x 16 picture's data)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 90, 90)).save(buf, format="JPEG", quality=90)  # as exif_with_thumbnail
    small = buf.getvalue()
    exif = exif_with_thumbnail(Image.new("RGB", (16, 16), (90, 90, 90)))
    assert exif.endswith(small)
    sof = small.index(b"\xff\xc0")
    bomb = small[:sof + 5] + struct.pack(">HH", 10_000, 10_000) + small[sof + 9:]
    img_buf = io.BytesIO()
    make_image((64, 48)).save(img_buf, format="JPEG", exif=exif[: -len(small)] + bomb)
    r = read_provenance(img_buf.getvalue(), name="cam.jpg")
    assert r.camera is None or r.camera.thumbnail is None
    assert any("EXIF thumbnail: image is 10000x10000 = 100,000,000 pixels, over the limit of 1,000,000" in e
               for e in r.errors), r.errors
