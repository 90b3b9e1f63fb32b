"""Provenance in scan results: JSON/JSONL/CSV rows and the table, --no-provenance, --trust-credentials, and
broken metadata that never costs the pixel score."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import make_image
from provenance_files import a1111_png, camera_jpeg, jpeg_with_xmp, malformed_manifest_jpeg, png_with_text, signed_image
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.inference.detector import Detector
from fakescope.inference.scan import scan

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    (d / "signed.jpg").write_bytes(signed_image("JPEG"))
    a1111_png(d / "a1111.png")
    camera_jpeg(d / "camera.jpg")
    make_image(seed=2).save(d / "plain.png")
    return d


def _rows(folder: Path, ckpt: Path, *extra: str) -> dict[str, dict]:
    res = runner.invoke(app, ["scan", str(folder), "--model", str(ckpt), "--format", "json", "--backend", "torch", *extra])
    assert res.exit_code == 0, res.output
    return {Path(r["path"]).name: r for r in json.loads(res.stdout)}


def test_json_rows_carry_provenance(folder: Path, tiny_ela_checkpoint: Path) -> None:
    rows = _rows(folder, tiny_ela_checkpoint)
    verdicts = {name: (r["provenance"]["verdict"], r["provenance"]["source"]) for name, r in rows.items()}
    assert verdicts == {"signed.jpg": ("declared_ai", "c2pa"), "a1111.png": ("declared_ai", "png-text"),
                        "camera.jpg": ("camera_original_likely", "exif"), "plain.png": ("none", None)}
    signed = rows["signed.jpg"]["provenance"]
    assert (signed["signed_by"], signed["valid"], signed["digital_source_type"]) == (
        "C2PA Test Signing Cert", True, "trainedAlgorithmicMedia")
    assert signed["c2pa"]["actions"][0]["action"] == "c2pa.created"
    assert all("label_reason" not in r for r in rows.values()), "no label is set by provenance by default"


def test_provenance_never_changes_score_or_label(folder: Path, tiny_ela_checkpoint: Path) -> None:
    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    off = {Path(r.path).name: r for r in scan([folder], detector, workers=0)}
    on = {Path(r.path).name: r for r in scan([folder], detector, workers=0, provenance=True)}
    plain = {"path", "fake_probability", "label", "threshold", "model", "error", "familiarity"}
    assert all(r.provenance is None and set(r.to_dict()) == plain for r in off.values())
    for name, r in on.items():
        assert r.provenance is not None
        assert (r.fake_probability, r.label) == (off[name].fake_probability, off[name].label)


def test_trust_credentials_labels_a_valid_ai_manifest(folder: Path, tiny_ela_checkpoint: Path) -> None:
    plain = _rows(folder, tiny_ela_checkpoint, "--threshold", "1.0")
    trusted = _rows(folder, tiny_ela_checkpoint, "--threshold", "1.0", "--trust-credentials")
    assert all(r["label"] == "real" for r in plain.values())
    assert trusted["signed.jpg"]["label"] == "fake"
    assert trusted["signed.jpg"]["fake_probability"] == plain["signed.jpg"]["fake_probability"]
    assert "trusted Content Credentials" in trusted["signed.jpg"]["label_reason"]
    assert "trainedAlgorithmicMedia" in trusted["signed.jpg"]["label_reason"]
    # unsigned declarations never set the label
    assert trusted["a1111.png"]["label"] == "real" and "label_reason" not in trusted["a1111.png"]


def test_invalid_credentials_are_not_trusted(tmp_path: Path, tiny_ela_checkpoint: Path) -> None:
    data = bytearray(signed_image("JPEG"))
    data[-20] ^= 0x55
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tampered.jpg").write_bytes(bytes(data))
    rows = _rows(tmp_path / "in", tiny_ela_checkpoint, "--threshold", "1.0", "--trust-credentials")
    row = rows["tampered.jpg"]
    assert row["provenance"]["verdict"] == "credentials_invalid" and row["label"] == "real"


def test_no_provenance_and_csv_columns(folder: Path, tiny_ela_checkpoint: Path) -> None:
    rows = _rows(folder, tiny_ela_checkpoint, "--no-provenance")
    assert all("provenance" not in r for r in rows.values())
    res = runner.invoke(app, ["scan", str(folder), "--model", str(tiny_ela_checkpoint), "--format", "csv"])
    assert res.exit_code == 0, res.output
    table = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert (table["a1111.png"]["provenance_verdict"], table["a1111.png"]["provenance_generator"]) == (
        "declared_ai", "AUTOMATIC1111")
    assert table["plain.png"]["provenance_verdict"] == "none" and table["plain.png"]["provenance_generator"] == ""
    bad = runner.invoke(app, ["scan", str(folder), "--model", str(tiny_ela_checkpoint), "--no-provenance",
                              "--trust-credentials"])
    assert bad.exit_code != 0 and "--trust-credentials needs provenance" in bad.output


def test_table_shows_each_verdict(folder: Path, tiny_ela_checkpoint: Path) -> None:
    res = runner.invoke(app, ["scan", str(folder), "--model", str(tiny_ela_checkpoint)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for text in ("declared_ai (signed by C2PA Test Signing Cert)", "declared_ai (AUTOMATIC1111)",
                 "camera_original_likely", "none"):
        assert text in res.output


def test_broken_metadata_keeps_the_pixel_score(tmp_path: Path, tiny_ela_checkpoint: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    jpeg_with_xmp(d / "broken_xmp.jpg", b"<x:xmpmeta><rdf:RDF>unclosed")
    png_with_text(d / "huge_text.png", {"parameters": "y" * (3 * 1024 * 1024)})
    malformed_manifest_jpeg(d / "bad_manifest.jpg")
    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    results = {Path(r.path).name: r for r in scan([d], detector, workers=2, provenance=True)}  # read in workers
    for r in results.values():
        assert r.error is None and 0.0 <= r.fake_probability <= 1.0 and r.label in ("real", "fake")
    assert results["broken_xmp.jpg"].provenance.errors[0].startswith("XMP packet is not well-formed XML")
    assert "read the first" in results["huge_text.png"].provenance.errors[0]
    bad = results["bad_manifest.jpg"].provenance
    assert bad.verdict == "credentials_invalid" and bad.c2pa.error.startswith("manifest present but unreadable")


def test_unreadable_pixels_keep_the_provenance(tmp_path: Path, tiny_ela_checkpoint: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    data = signed_image("JPEG")
    (d / "cut.jpg").write_bytes(data[: len(data) - 400])  # pixels truncated; the manifest (in APP11) is whole
    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    (r,) = scan([d], detector, workers=0, provenance=True)
    assert r.error is not None and r.fake_probability is None
    assert r.provenance.verdict == "credentials_invalid" and r.provenance.signed_by == "C2PA Test Signing Cert"


def test_compressed_text_over_pillows_limit_keeps_the_pixel_score(tmp_path: Path, tiny_ela_checkpoint: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    png_with_text(d / "ztxt.png", {"parameters": "z" * (2 * 1024 * 1024)}, compressed=True)  # over Pillow's 1 MB
    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    (r,) = scan([d], detector, workers=0, provenance=True)
    assert r.error is None and 0.0 <= r.fake_probability <= 1.0
    assert len(r.provenance.errors) == 1 and "MAX_TEXT_CHUNK" in r.provenance.errors[0]
    (plain,) = scan([d], detector, workers=0)
    assert plain.fake_probability == r.fake_probability


@pytest.mark.parametrize(("make", "model", "shown"), [("Apple", "iPhone 4", "Apple iPhone 4"),
                                                      ("Canon", "Canon EOS 5D", "Canon EOS 5D")])
def test_the_table_names_a_cameras_device_not_its_firmware(make, model, shown):
    """A camera original's EXIF Software is its firmware version ("4.1" on an iPhone), no generator: the table
    names the device."""
    from fakescope.forensics.provenance import Provenance
    from fakescope.forensics.provenance.camera import CameraEvidence
    from fakescope.inference.output import provenance_cell
    from fakescope.inference.scan import ScanResult

    prov = Provenance(verdict="camera_original_likely", source="exif", generator="4.1",
                      camera=CameraEvidence(make=make, model=model, software="4.1"))
    result = ScanResult(path="photo.jpg", fake_probability=0.1, label="real", model="m", provenance=prov)
    assert provenance_cell(result) == f"camera_original_likely ({shown})"
