"""Provenance in the service: /v1/detect and /v1/detect/batch return it, the OpenAPI schema documents it, and
trust_credentials labels a valid AI manifest 'fake' without touching the score."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
from fastapi.testclient import TestClient
from provenance_files import A1111_TEXT, a1111_png, malformed_manifest_jpeg, signed_image
from test_serve import wait_ready

from fakescope.forensics.provenance import VERDICTS
from fakescope.serve import Settings, create_app

SUMMARY = {"verdict", "generator", "digital_source_type", "signed_by", "valid", "source"}


@pytest.fixture(scope="module")
def client(tiny_ela_checkpoint: Path):
    with TestClient(create_app(Settings(model=str(tiny_ela_checkpoint))), raise_server_exceptions=False) as c:
        assert wait_ready(c)["ready"]
        yield c


def test_openapi_documents_provenance() -> None:
    schema = create_app(Settings(model="schema-only")).openapi()["components"]["schemas"]
    prov = schema["Provenance"]["properties"]
    assert SUMMARY <= set(prov) and all(prov[k].get("description") for k in SUMMARY)
    assert prov["verdict"]["enum"] == list(VERDICTS)
    assert {"c2pa", "xmp", "png-text", "exif"} == set(prov["source"]["anyOf"][0]["enum"])
    detect = schema["DetectResult"]["properties"]
    assert detect["provenance"]["anyOf"][0] == {"$ref": "#/components/schemas/Provenance"}
    assert "label_reason" in detect and schema["C2paManifest"]["properties"]["failures"]["description"]


def test_detect_returns_provenance(client: TestClient) -> None:
    r = client.post("/v1/detect", files={"file": ("signed.jpg", signed_image("JPEG"), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    p = body["provenance"]
    assert (p["verdict"], p["signed_by"], p["valid"], p["source"], p["digital_source_type"]) == (
        "declared_ai", "C2PA Test Signing Cert", True, "c2pa", "trainedAlgorithmicMedia")
    assert body["label_reason"] is None and 0.0 <= body["fake_probability"] <= 1.0
    off = client.post("/v1/detect?provenance=false",
                      files={"file": ("signed.jpg", signed_image("JPEG"), "image/jpeg")}).json()
    assert "provenance" not in off and off["fake_probability"] == body["fake_probability"]  # as the CLI's rows


def test_trust_credentials_sets_the_label_not_the_score(client: TestClient) -> None:
    files = {"file": ("signed.jpg", signed_image("JPEG"), "image/jpeg")}
    plain = client.post("/v1/detect?threshold=1.0", files=files).json()
    trusted = client.post("/v1/detect?threshold=1.0&trust_credentials=true", files=files).json()
    assert plain["label"] == "real" and trusted["label"] == "fake"
    assert trusted["fake_probability"] == plain["fake_probability"]
    assert "trusted Content Credentials" in trusted["label_reason"]


@pytest.mark.parametrize("route", ["/v1/detect", "/v1/detect/batch"])
def test_trust_credentials_without_provenance_is_refused(client: TestClient, route: str) -> None:
    """As the CLI refuses --no-provenance --trust-credentials: the label would come from provenance not read."""
    field = "file" if route == "/v1/detect" else "files"
    files = [(field, ("signed.jpg", signed_image("JPEG"), "image/jpeg"))]
    r = client.post(f"{route}?provenance=false&trust_credentials=true", files=files)
    assert r.status_code == 422 and r.json() == {"detail": "trust_credentials=true needs provenance (drop "
                                                 "provenance=false)"}
    off = client.post(f"{route}?provenance=false", files=files).json()
    assert "provenance" not in (off if route == "/v1/detect" else off["results"][0])


def test_batch_returns_provenance_per_item(client: TestClient, tmp_path: Path) -> None:
    png = a1111_png(tmp_path / "a.png").read_bytes()
    bad = malformed_manifest_jpeg(tmp_path / "m.jpg").read_bytes()
    files = [("files", ("a.png", png, "image/png")), ("files", ("m.jpg", bad, "image/jpeg")),
             ("files", ("junk.jpg", b"\xff\xd8 not really", "image/jpeg"))]
    r = client.post("/v1/detect/batch", files=files)
    assert r.status_code == 200, r.text
    a, m, junk = r.json()["results"]
    assert (a["provenance"]["verdict"], a["provenance"]["generator"]) == ("declared_ai", "AUTOMATIC1111")
    assert a["provenance"]["generator_settings"]["prompt"] == A1111_TEXT.splitlines()[0]
    assert m["provenance"]["verdict"] == "credentials_invalid" and m["fake_probability"] is not None
    assert junk["error"] and junk["provenance"]["verdict"] == "none" and junk["provenance"]["errors"]
