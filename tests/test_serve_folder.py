"""The endpoints behind the web page's folder view: POST /v1/detect/video and POST /v1/report (TestClient)."""
from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
from conftest import make_image
from fastapi.testclient import TestClient
from test_serve import wait_ready
from test_video import pattern_frames, write_video

import fakescope
from fakescope.inference.output import to_string
from fakescope.inference.scan import ScanResult
from fakescope.serve import Settings, create_app
from fakescope.serve.pipeline import Upload
from fakescope.serve.routers.folder import save_uploads

FRAME_KEYS = {"index", "time", "score", "face", "faces"}


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    make_image((64, 48), seed=seed).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tiny_ela_checkpoint: Path):
    with TestClient(create_app(Settings(model=str(tiny_ela_checkpoint))), raise_server_exceptions=False) as c:
        assert wait_ready(c)["ready"]
        yield c


def test_video_endpoint_gives_the_scan_frames(client, tiny_ela_checkpoint, tmp_path):
    path = write_video(tmp_path / "clip.mp4", pattern_frames(6, seed=3))
    r = client.post("/v1/detect/video", files={"file": ("clip.mp4", path.read_bytes(), "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = fakescope.detect(path, model=tiny_ela_checkpoint)  # what the API and `fakescope scan` give
    p, frames = expected.fake_probability, expected.frames
    assert body["path"] == "clip.mp4" and body["fake_probability"] == pytest.approx(p, abs=1e-6)
    assert [set(f) for f in body["frames"]] == [FRAME_KEYS] * len(frames)
    assert [f["score"] for f in body["frames"]] == pytest.approx([f["score"] for f in frames], abs=1e-6)
    assert expected.threshold is not None and body["threshold"] == expected.threshold  # as the scan row has it
    bad = client.post("/v1/detect/video", files={"file": ("clip.mp4", b"\x00" * 300, "video/mp4")})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("clip.mp4: not a readable video")
    named = client.post("/v1/detect/video", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert named.status_code == 422 and "not a video file name" in named.json()["detail"]


def test_report_endpoint_returns_the_scan_report(client, tmp_path):
    files = [("files", (f"dir/img{i}.jpg", jpeg(i), "image/jpeg")) for i in range(3)]
    files.append(("files", ("broken.jpg", b"not a jpeg", "image/jpeg")))
    r = client.post("/v1/report", files=files)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'filename="fakescope-report.html"' in r.headers["content-disposition"]
    page = r.text
    assert page.count('<tr data-index=') == 3 and page.count('<tr class="error"') == 1
    assert all(f"img{i}.jpg" in page for i in range(3)) and "broken.jpg" in page
    assert "fakescope-report-" not in page  # file cells name the uploads, not the server's temporary folder


def png_header(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` over a few bytes of data: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b""))


def test_report_refuses_a_bomb_from_its_header(client):
    """81 Mpx passes the library's 100 Mpx but not the service's 50 Mpx: a row saying so, nothing decoded (the
    report used to allocate the 243 MB image before finding the data missing)."""
    r = client.post("/v1/report", files=[("files", ("bomb.png", png_header(9000, 9000), "image/png")),
                                         ("files", ("fine.jpg", jpeg(1), "image/jpeg"))])
    assert r.status_code == 200 and r.text.count("<tr data-index=") == 1
    assert 'errmsg">image is 9000x9000 = 81,000,000 pixels, over the limit of 50,000,000<' in r.text
    assert client.app.state.runtime.pixels.used == 0


def test_results_are_written_by_the_cli_writer(client, tmp_path):
    rows = [{"path": "a.jpg", "fake_probability": 0.9, "label": "fake", "model": "m", "error": None},
            {"path": "b,\"odd\".jpg", "fake_probability": None, "label": None, "model": "m", "error": "b: broken"},
            {"path": "c.mp4", "fake_probability": 0.2, "label": "real", "model": "m", "error": None,
             "frames": [{"index": 0, "time": 0.0, "score": 0.2, "face": False, "faces": []}]}]
    expected = [ScanResult.from_dict(r) for r in rows]
    for fmt in ("json", "csv"):
        r = client.post(f"/v1/results?format={fmt}", json={"results": rows})
        assert r.status_code == 200 and r.text == to_string(expected, fmt)
        assert f'filename="fakescope-results.{fmt}"' in r.headers["content-disposition"]
    bad = client.post("/v1/results", json={"results": [{**rows[0], "thresh": 0.5}]})
    assert bad.status_code == 422 and "body.results.0.thresh" in bad.json()["detail"]


def test_results_take_the_services_own_rows_and_check_each_field(client):
    files = [("files", ("a.jpg", jpeg(1), "image/jpeg")), ("files", ("broken.jpg", b"not a jpeg", "image/jpeg"))]
    body = client.post("/v1/detect/batch", files=files).json()
    batch = body["results"]
    assert {"width", "height"} <= set(batch[0])  # web-only fields, not in a scan row
    assert (batch[0]["threshold"], batch[1]["threshold"]) == (body["threshold"], None)  # as scan rows: null on error
    one = client.post("/v1/detect?explain=true", files={"file": ("c.jpg", jpeg(2), "image/jpeg")}).json()
    assert one["explanation"]
    r = client.post("/v1/results", json={"results": [*batch, one]})
    assert r.status_code == 200, r.text
    written = json.loads(r.text)
    scan_keys = ("path", "fake_probability", "label", "threshold", "model", "error", "provenance")
    assert [{k: w.get(k) for k in scan_keys} for w in written] == [{k: row.get(k) for k in scan_keys}
                                                                   for row in (*batch, one)]
    assert not {"width", "height", "explanation"} & set().union(*written)
    for field, value in [("fake_probability", "abc"), ("label", 12), ("threshold", "0.5"), ("path", None),
                         ("copy_move", "3"), ("provenance", "declared_ai"), ("path_bytes", "zz")]:
        bad = client.post("/v1/results?format=csv", json={"results": [{**batch[0], field: value}]})
        assert bad.status_code == 422 and f"body.results.0.{field}:" in bad.json()["detail"], (field, bad.text)
    assert client.post("/v1/results", json={"results": [{"path": "a.jpg"}]}).status_code == 422


def test_results_csv_never_starts_a_formula(client):
    rows = [{"path": "=cmd|calc!A1", "fake_probability": 0.9, "label": "fake", "model": "m", "error": None,
             "provenance": {"verdict": "declared_edit", "generator": "@SUM(1+1)"}},
            {"path": "ok.jpg", "fake_probability": None, "label": None, "model": "m", "error": "-broken"}]
    r = client.post("/v1/results?format=csv", json={"results": rows})
    assert r.status_code == 200, r.text
    a, b = csv.DictReader(io.StringIO(r.text))
    assert (a["path"], a["provenance_generator"], a["fake_probability"]) == ("'=cmd|calc!A1", "'@SUM(1+1)", "0.9")
    assert (b["path"], b["error"]) == ("ok.jpg", "'-broken")


def test_uploads_keep_their_names_without_folders_or_clashes(tmp_path):
    ups = [Upload(n, "image/jpeg", b"x") for n in ("a/b/IMG_1.jpg", "c/IMG_1.jpg", "..\\..\\evil.png", "", ".hidden")]
    assert [p.name for p in save_uploads(ups, tmp_path)] == ["IMG_1.jpg", "IMG_1-2.jpg", "evil.png", "upload", "hidden"]
    assert all(p.parent == tmp_path for p in tmp_path.iterdir())


def test_result_records_take_exactly_a_scan_rows_fields_and_the_web_only_ones():
    """POST /v1/results checks each record against ResultRecord, which lists a scan row's fields by hand: a field
    added to ScanResult and not there would make the service refuse the CLI's own rows."""
    import dataclasses

    from fakescope.inference.paths import PATH_BYTES
    from fakescope.inference.scan import ScanResult
    from fakescope.serve.schemas import WEB_ONLY_FIELDS, ResultRecord

    scan_fields = {f.name for f in dataclasses.fields(ScanResult)} | {PATH_BYTES}
    assert set(ResultRecord.model_fields) == scan_fields | WEB_ONLY_FIELDS
