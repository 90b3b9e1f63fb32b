"""The REST service through FastAPI's TestClient: every status code, the batch endpoint, limits and safety."""
from __future__ import annotations

import base64
import io
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
from conftest import make_image
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from fakescope.forensics.io import open_image
from fakescope.inference.detector import Detector
from fakescope.serve import Settings, create_app
from fakescope.serve.runtime import ModelRuntime

KEY = "test-key-123"


def encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def wait_ready(client: TestClient, timeout: float = 180.0) -> dict:
    # Generous: loading exports the ONNX file on first use, which takes over 30 s on two cores shared with training.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/readyz")
        if r.status_code == 200 or r.json().get("error"):
            return r.json()
        time.sleep(0.05)
    raise AssertionError("model did not load in time")


@pytest.fixture(scope="module")
def ckpt(tiny_ela_checkpoint: Path) -> Path:
    return tiny_ela_checkpoint


@pytest.fixture(scope="module")
def client(ckpt: Path):
    with TestClient(create_app(Settings(model=str(ckpt))), raise_server_exceptions=False) as c:
        assert wait_ready(c)["ready"]
        yield c


@pytest.fixture(scope="module")
def strict_client(ckpt: Path):
    """A server with an API key, a 64 KB upload limit, a 1000-pixel limit and at most 2 files per batch."""
    settings = Settings(model=str(ckpt), api_key=KEY, max_upload_mb=64 / 1024, max_pixels=1000, max_batch_files=2)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert wait_ready(c)["ready"]
        yield c


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return encode(make_image((48, 40), seed=1))


def test_detect_matches_the_library(client: TestClient, ckpt: Path, jpeg: bytes) -> None:
    r = client.post("/v1/detect", files={"file": ("photo.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200
    body = r.json()
    expected = float(Detector.load(str(ckpt)).predict_images([open_image(jpeg)])[0])
    assert body["fake_probability"] == pytest.approx(expected, abs=1e-6)
    assert body["path"] == "photo.jpg" and body["model"] == ckpt.name and body["error"] is None
    assert body["label"] == ("fake" if expected >= body["threshold"] else "real")
    assert (body["width"], body["height"]) == (48, 40)
    assert body["explanation"] is None


def test_detect_explain_returns_ela_and_gradcam_pngs(client: TestClient, jpeg: bytes) -> None:
    from fakescope.explain import ela_view

    r = client.post("/v1/detect", params={"explain": "true"}, files={"file": ("photo.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200
    ex = r.json()["explanation"]
    assert ex["error"] is None and ex["method"] == "gradcam++"  # the default, DEFAULT_CAM
    ela = Image.open(io.BytesIO(base64.b64decode(ex["ela_png"])))
    cam = Image.open(io.BytesIO(base64.b64decode(ex["gradcam_png"])))
    assert ela.format == cam.format == "PNG" and ela.size == cam.size == (48, 40)
    # The ELA view is the library's, pixel for pixel (PNG is lossless; the image is under the display size).
    np.testing.assert_array_equal(np.asarray(ela.convert("RGB")), np.asarray(ela_view(open_image(jpeg))))


def test_explain_images_are_display_sized(client: TestClient) -> None:
    big = encode(make_image((900, 600), seed=2))
    r = client.post("/v1/detect?explain=true", files={"file": ("big.jpg", big, "image/jpeg")})
    ex = r.json()["explanation"]
    for key in ("ela_png", "gradcam_png"):
        assert Image.open(io.BytesIO(base64.b64decode(ex[key]))).size == (512, 341)


@pytest.mark.parametrize(("name", "data", "ctype", "status", "reason"), [
    ("notes.txt", b"hello, not an image", "text/plain", 415, "content type 'text/plain' is not an image"),
    ("fake.jpg", b"hello, not an image", "image/jpeg", 422, "not a recognised image file"),
    ("empty.png", b"", "image/png", 422, "file is empty"),
    ("cut.png", encode(make_image((64, 64)), "PNG")[:300], "image/png", 422, "truncated"),
])
def test_unreadable_uploads_get_the_reason(client: TestClient, name, data, ctype, status, reason) -> None:
    r = client.post("/v1/detect", files={"file": (name, data, ctype)})
    assert r.status_code == status
    detail = r.json()["detail"]
    assert detail.startswith(name) and reason in detail and "Traceback" not in detail


def test_missing_file_field_is_422(client: TestClient) -> None:
    assert client.post("/v1/detect", data={"other": "x"}).status_code == 422
    assert client.post("/v1/detect/batch", data={"other": "x"}).status_code == 422


def test_batch_scores_each_file_and_reports_errors_per_item(client: TestClient, jpeg: bytes) -> None:
    png = encode(make_image((40, 56), seed=3), "PNG")
    files = [("files", ("a.jpg", jpeg, "image/jpeg")), ("files", ("b.txt", b"nope", "application/octet-stream")),
             ("files", ("c.png", png, "image/png"))]
    r = client.post("/v1/detect/batch", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["path"] for x in results] == ["a.jpg", "b.txt", "c.png"]
    assert results[1]["fake_probability"] is None and "not a recognised image" in results[1]["error"]
    for res, data, ctype in ((results[0], jpeg, "image/jpeg"), (results[2], png, "image/png")):
        single = client.post("/v1/detect", files={"file": (res["path"], data, ctype)}).json()
        assert res["error"] is None
        assert res["fake_probability"] == pytest.approx(single["fake_probability"], abs=1e-6)
        assert res["label"] == single["label"]


def test_threshold_from_known_reals_then_applied_to_detect(client: TestClient) -> None:
    from fakescope.evaluation.evaluate import threshold_from_reals

    reals = [encode(make_image((48, 40), seed=10 + i)) for i in range(10)]
    batch = client.post("/v1/detect/batch", files=[("files", (f"r{i}.jpg", d, "image/jpeg")) for i, d in enumerate(reals)])
    probs = [x["fake_probability"] for x in batch.json()["results"]]
    r = client.post("/v1/threshold", json={"fake_probabilities": probs, "fpr": 0.2})
    assert r.status_code == 200, r.text
    out = r.json()
    runtime = client.app.state.runtime
    assert out == pytest.approx(threshold_from_reals(probs, runtime.model_name, runtime.detector.threshold, 0.2))
    assert out["n"] == 10 and out["flagged_at_threshold"] <= 0.2 and "10 reals is rough" in out["warning"]
    # detect and batch label with the chosen threshold: exactly the reported share of these reals is "fake"
    rescored = client.post(f"/v1/detect/batch?threshold={out['threshold']}",
                           files=[("files", (f"r{i}.jpg", d, "image/jpeg")) for i, d in enumerate(reals)]).json()
    assert rescored["threshold"] == out["threshold"]
    assert sum(x["label"] == "fake" for x in rescored["results"]) == round(out["flagged_at_threshold"] * 10)
    one = client.post(f"/v1/detect?threshold={out['threshold']}", files={"file": ("r0.jpg", reals[0], "image/jpeg")})
    assert one.json()["threshold"] == out["threshold"]
    assert one.json()["label"] == ("fake" if probs[0] >= out["threshold"] else "real")
    # bad requests are 422 with the field named
    for bad in ({"fake_probabilities": []}, {"fake_probabilities": [0.2, 1.5]}, {"fake_probabilities": [0.2], "fpr": 1}):
        res = client.post("/v1/threshold", json=bad)
        assert res.status_code == 422 and res.json()["errors"][0]["loc"][1] in ("fake_probabilities", "fpr")
    assert client.post("/v1/detect?threshold=2", files={"file": ("r0.jpg", reals[0], "image/jpeg")}).status_code == 422


def test_an_unexpected_failure_stays_with_its_batch_item(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = client.app.state.runtime.detector
    real = detector.prepare

    def picky(img: Image.Image):
        if img.width == 33:
            raise ValueError("cannot handle 33 px")
        return real(img)

    monkeypatch.setattr(detector, "prepare", picky)
    files = [("files", (f"{w}.png", encode(make_image((w, 30)), "PNG"), "image/png")) for w in (33, 34)]
    results = client.post("/v1/detect/batch", files=files).json()["results"]
    assert results[0]["error"] == "33.png: cannot prepare image (ValueError)" and results[0]["label"] is None
    assert results[1]["error"] is None and 0.0 <= results[1]["fake_probability"] <= 1.0


def test_models_lists_the_catalogue_and_the_loaded_model(client: TestClient, ckpt: Path) -> None:
    body = client.get("/v1/models").json()
    assert body["loaded"] == ckpt.name and body["ready"] is True
    names = {m["name"]: m for m in body["models"]}
    assert names["ela-cnn"]["input_size"] == 128 and names["ela-cnn"]["params"] > 7_000_000
    assert sum(m["default"] for m in body["models"]) == 1


def test_api_key_is_required_when_configured(strict_client: TestClient) -> None:
    tiny = encode(make_image((30, 30)), "PNG")
    for path in ("/v1/models",):
        assert strict_client.get(path).status_code == 401
    no_key = strict_client.post("/v1/detect", files={"file": ("a.png", tiny, "image/png")})
    wrong = strict_client.post("/v1/detect", files={"file": ("a.png", tiny, "image/png")}, headers={"X-API-Key": "x"})
    right = strict_client.post("/v1/detect", files={"file": ("a.png", tiny, "image/png")}, headers={"X-API-Key": KEY})
    assert no_key.status_code == wrong.status_code == 401
    assert "X-API-Key" in no_key.json()["detail"] and no_key.headers["www-authenticate"].startswith("ApiKey")
    assert right.status_code == 200
    # Probes stay open for orchestrators, and say a key is needed.
    assert strict_client.get("/healthz").status_code == 200
    assert strict_client.get("/readyz").json()["api_key_required"] is True
    # the limits the web page sizes its batches by
    assert strict_client.get("/readyz").json()["max_batch_files"] == 2
    assert strict_client.get("/readyz").json()["max_upload_mb"] == pytest.approx(64 / 1024)


def test_pixel_limit_is_422_with_the_reason(strict_client: TestClient) -> None:
    big = encode(make_image((40, 30)), "PNG")  # 1,200 pixels > 1,000
    r = strict_client.post("/v1/detect", files={"file": ("big.png", big, "image/png")}, headers={"X-API-Key": KEY})
    assert r.status_code == 422
    assert "40x30 = 1,200 pixels, over the limit of 1,000" in r.json()["detail"]


def test_upload_limit_is_413(strict_client: TestClient) -> None:
    blob = bytes(70 * 1024)
    r = strict_client.post("/v1/detect", files={"file": ("big.png", blob, "image/png")}, headers={"X-API-Key": KEY})
    assert r.status_code == 413


def test_upload_limit_holds_without_content_length(strict_client: TestClient) -> None:
    """A chunked body (no Content-Length) is counted while it is read."""
    boundary = "xYzBoundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    chunks = [head] + [bytes(8192)] * 12 + [f"\r\n--{boundary}--\r\n".encode()]
    r = strict_client.post("/v1/detect", content=iter(chunks),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "X-API-Key": KEY})
    assert r.status_code == 413


def test_batch_file_count_limit(strict_client: TestClient) -> None:
    tiny = encode(make_image((20, 20)), "PNG")
    files = [("files", (f"{i}.png", tiny, "image/png")) for i in range(3)]
    r = strict_client.post("/v1/detect/batch", files=files, headers={"X-API-Key": KEY})
    assert r.status_code == 400 and "Too many files" in r.json()["detail"]
    ok = strict_client.post("/v1/detect/batch", files=files[:2], headers={"X-API-Key": KEY})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 2


def test_503_until_the_model_is_loaded_while_health_answers(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_load = ModelRuntime.load

    def slow_load(self: ModelRuntime) -> None:
        release.wait(20)
        real_load(self)

    monkeypatch.setattr(ModelRuntime, "load", slow_load)
    with TestClient(create_app(Settings(model=str(ckpt)))) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        not_ready = c.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["ready"] is False
        r = c.post("/v1/detect", files={"file": ("a.png", encode(make_image(), "PNG"), "image/png")})
        assert r.status_code == 503 and r.json()["detail"] == "model is still loading" and "retry-after" in r.headers
        release.set()
        assert wait_ready(c)["model"] == ckpt.name
        assert c.get("/readyz").status_code == 200


def test_a_model_that_fails_to_load_keeps_the_reason_in_the_log_only(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The reason names the checkpoint's path on the server: the log gets it, clients do not."""
    missing = tmp_path / "missing.safetensors"
    with TestClient(create_app(Settings(model=str(missing)))) as c:
        body = wait_ready(c)
        assert body["ready"] is False and body["error"] == "the model failed to load (see the server log)"
        assert c.get("/readyz").status_code == 503 and c.get("/healthz").status_code == 200
        r = c.post("/v1/detect", files={"file": ("a.png", encode(make_image(), "PNG"), "image/png")})
        assert r.status_code == 503 and r.json()["detail"].startswith("model not available: ")
        assert str(tmp_path) not in c.get("/readyz").text + r.text
    assert "missing.safetensors" in caplog.text


def test_internal_errors_are_500_without_details(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                                 jpeg: bytes) -> None:
    runtime: ModelRuntime = client.app.state.runtime

    async def broken(items: list) -> np.ndarray:
        raise RuntimeError("secret internal state /very/private/path")

    monkeypatch.setattr(runtime, "predict", broken)
    r = client.post("/v1/detect", files={"file": ("a.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error"}
    assert "secret" not in r.text and "Traceback" not in r.text


def test_uploads_leave_no_files_behind(client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1.6 MB upload (over the 1 MB kept in memory by the multipart parser) leaves the temp folder empty."""
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 800, 3), dtype=np.uint8))
    data = encode(noise, "PNG")
    assert len(data) > 1024 * 1024
    r = client.post("/v1/detect", files={"file": ("noise.png", data, "image/png")})
    assert r.status_code == 200 and r.json()["width"] == 800
    assert list(spool.iterdir()) == []


def test_web_page_is_served_with_every_asset_local(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in r.text
        served = client.get(asset)
        assert served.status_code == 200
        assert "http://" not in served.text and "https://" not in served.text
    assert "http://" not in r.text and "https://" not in r.text


def test_openapi_documents_the_endpoints(client: TestClient, strict_client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/v1/detect", "/v1/detect/batch", "/v1/threshold", "/v1/models", "/healthz", "/readyz"} <= set(schema["paths"])
    detect = schema["paths"]["/v1/detect"]["post"]
    assert {"400", "413", "415", "422", "503"} <= set(detect["responses"])
    assert client.get("/docs").status_code == 200
    # The key appears in the schema exactly when the server requires it.
    assert "security" not in detect and "securitySchemes" not in schema.get("components", {})
    guarded = strict_client.get("/openapi.json").json()
    assert "X-API-Key" in str(guarded["components"]["securitySchemes"])
    assert guarded["paths"]["/v1/detect"]["post"]["security"] and "security" not in guarded["paths"]["/healthz"]["get"]


def test_settings_from_env() -> None:
    env = {"FAKESCOPE_MODEL": "m.safetensors", "FAKESCOPE_MAX_UPLOAD_MB": "2.5", "FAKESCOPE_MAX_PIXELS": "1000",
           "FAKESCOPE_API_KEY": "k", "FAKESCOPE_MAX_BATCH_FILES": ""}
    s = Settings.from_env(env, model="other")
    assert (s.model, s.max_upload_bytes, s.max_pixels, s.api_key, s.max_batch_files) == (
        "other", int(2.5 * 1024 * 1024), 1000, "k", Settings.max_batch_files)
    with pytest.raises(ValueError, match="FAKESCOPE_MAX_PIXELS='many'"):
        Settings.from_env({"FAKESCOPE_MAX_PIXELS": "many"})
    with pytest.raises(ValueError):
        Settings(max_upload_mb=0)


def test_cli_serve_hands_settings_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import fakescope.serve
    from fakescope.cli import app

    seen = {}
    monkeypatch.setattr(fakescope.serve, "run", lambda settings, host, port: seen.update(s=settings, h=host, p=port))
    monkeypatch.setenv("FAKESCOPE_MAX_UPLOAD_MB", "3")
    result = CliRunner().invoke(app, ["serve", "--port", "8123", "--model", "x.safetensors"])
    assert result.exit_code == 0, result.output
    assert (seen["h"], seen["p"], seen["s"].model, seen["s"].max_upload_mb) == ("127.0.0.1", 8123, "x.safetensors", 3.0)
    monkeypatch.setenv("FAKESCOPE_MAX_PIXELS", "lots")
    bad = CliRunner().invoke(app, ["serve"])
    assert bad.exit_code == 1 and "FAKESCOPE_MAX_PIXELS" in bad.output
