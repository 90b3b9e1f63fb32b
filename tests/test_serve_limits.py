"""Issue 33, the service: one JSON error shape for every 4xx/5xx, the API key before the body, pixel budgets with
503 + Retry-After, thread count, and uvicorn's connection limit and header/body deadlines (a real server on
127.0.0.1)."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
import uvicorn
from conftest import make_image
from fastapi.testclient import TestClient
from starlette.formparsers import MultiPartParser
from test_serve import KEY, encode, wait_ready
from test_serve_browser import LiveServer
from test_video import pattern_frames, write_video

from fakescope.serve import Settings, create_app
from fakescope.serve import settings as settings_module
from fakescope.serve.server import uvicorn_config

HOST = "127.0.0.1"


def assert_error_shape(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json", r.headers
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"] and "\n" not in body["detail"]
    assert set(body) <= {"detail", "errors"}
    return body


@pytest.fixture(scope="module")
def small(tiny_ela_checkpoint: Path) -> Iterator[TestClient]:
    """A 64 KB body limit, 2 files per batch, 1000 pixels per image, 2500 per request, 3000 in flight."""
    settings = Settings(model=str(tiny_ela_checkpoint), max_upload_mb=64 / 1024, max_pixels=1000,
                        max_request_pixels=2500, max_inflight_pixels=3000, max_batch_files=3)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert wait_ready(c)["ready"]
        yield c


@pytest.fixture(scope="module")
def keyed(tiny_ela_checkpoint: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model=str(tiny_ela_checkpoint), api_key=KEY)),
                    raise_server_exceptions=False) as c:
        assert wait_ready(c)["ready"]
        yield c


@pytest.mark.parametrize("text", ['{"fake_probabilities": [NaN]}', '{"fake_probabilities": [Infinity]}',
                                  '{"fake_probabilities": [1e999]}', '{"fake_probabilities": [0.2], "fpr": NaN}',
                                  '{"fake_probabilities": [-Infinity, 0.5]}'])
def test_non_finite_numbers_are_a_serialisable_422(small: TestClient, text: str) -> None:
    r = small.post("/v1/threshold", content=text, headers={"Content-Type": "application/json"})
    body = assert_error_shape(r, 422)
    assert body["errors"] and body["errors"][0]["loc"][0] == "body"
    assert "finite" in body["detail"] or "less than" in body["detail"] or "greater than" in body["detail"]


def test_non_finite_query_threshold_is_422(small: TestClient) -> None:
    jpeg = encode(make_image((20, 20)))
    for value in ("nan", "inf", "1e999"):
        r = small.post(f"/v1/detect?threshold={value}", files={"file": ("a.jpg", jpeg, "image/jpeg")})
        assert assert_error_shape(r, 422)["errors"][0]["loc"] == ["query", "threshold"]


def test_every_error_has_one_shape(small: TestClient, keyed: TestClient) -> None:
    tiny = encode(make_image((20, 20)), "PNG")
    assert_error_shape(small.get("/nowhere"), 404)
    assert_error_shape(small.get("/v1/detect"), 405)
    assert_error_shape(small.post("/v1/detect", files={"file": ("a.png", bytes(70 * 1024), "image/png")}), 413)
    assert_error_shape(small.post("/v1/detect", content=b"--x\r\nbroken", headers={
        "Content-Type": "multipart/form-data"}), 400)  # no boundary
    assert_error_shape(small.post("/v1/detect", files={"file": ("a.txt", b"hello", "text/plain")}), 415)
    assert_error_shape(small.post("/v1/detect", files={"file": ("a.png", b"not an image", "image/png")}), 422)
    assert_error_shape(small.post("/v1/detect"), 422)
    assert_error_shape(small.post("/v1/detect/batch", files=[("files", (f"{i}.png", tiny, "image/png"))
                                                               for i in range(4)]), 400)
    assert_error_shape(keyed.post("/v1/detect", files={"file": ("a.png", tiny, "image/png")}), 401)


def test_413_is_json_with_or_without_content_length(small: TestClient) -> None:
    r = small.post("/v1/detect", content=bytes(70 * 1024), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert "content-length" in r.request.headers
    assert "64 KB" in assert_error_shape(r, 413)["detail"] or "0.0625 MB" in r.json()["detail"]
    chunks = iter([bytes(8192)] * 10)  # no Content-Length: counted while read
    r = small.post("/v1/detect", content=chunks, headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert "content-length" not in r.request.headers
    assert_error_shape(r, 413)


def test_api_key_is_checked_before_the_body_is_parsed(keyed: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = []
    real_parse = MultiPartParser.parse

    async def spy(self):
        parsed.append(1)
        return await real_parse(self)

    monkeypatch.setattr(MultiPartParser, "parse", spy)
    jpeg = encode(make_image((20, 20)))
    assert_error_shape(keyed.post("/v1/detect", files={"file": ("a.jpg", jpeg, "image/jpeg")},
                                  headers={"X-API-Key": "wrong"}), 401)
    assert parsed == []
    ok = keyed.post("/v1/detect", files={"file": ("a.jpg", jpeg, "image/jpeg")}, headers={"X-API-Key": KEY})
    assert ok.status_code == 200 and parsed == [1]


def test_pixel_budget_of_a_request(small: TestClient) -> None:
    img = encode(make_image((30, 30)), "PNG")  # 900 pixels; the request may decode 2500
    r = small.post("/v1/detect/batch", files=[("files", (f"{i}.png", img, "image/png")) for i in range(3)])
    results = r.json()["results"]
    assert [x["error"] is None for x in results] == [True, True, False]
    assert "limit of 2,500 pixels" in results[2]["error"]
    assert small.app.state.runtime.pixels.used == 0


def test_server_full_is_503_with_retry_after_and_pixels_come_back(small: TestClient) -> None:
    budget = small.app.state.runtime.pixels
    img = encode(make_image((30, 30)), "PNG")
    budget.take(2500)  # other requests hold 2500 of the 3000 pixels
    try:
        for path, files in (("/v1/detect", {"file": ("a.png", img, "image/png")}),
                            ("/v1/detect/batch", [("files", ("a.png", img, "image/png"))])):
            r = small.post(path, files=files)
            assert_error_shape(r, 503)
            assert r.headers["retry-after"] == "1"
            assert budget.used == 2500
    finally:
        budget.give(2500)
    assert small.post("/v1/detect?explain=true", files={"file": ("a.png", img, "image/png")}).status_code == 200
    assert small.post("/v1/detect", files={"file": ("a.png", b"\x89PNG broken", "image/png")}).status_code == 422
    assert budget.used == 0


def png_files(sizes: list[int]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{i}.png", encode(make_image((n, n), seed=i), "PNG"), "image/png")) for i, n in enumerate(sizes)]


def small_frames() -> list:
    """Three 16 x 12 frames: 192 pixels, within the 200 a video's frame may have under max_pixels=1000."""
    return [f.crop((0, 0, 16, 12)) for f in pattern_frames(3, seed=1, size=16)]


def test_report_and_video_decode_under_the_service_limits(small: TestClient, tmp_path: Path) -> None:
    """/v1/report and /v1/detect/video decode under FAKESCOPE_MAX_PIXELS (1000 here), not the library's 100 Mpx: an
    image over it is a row with the reason, a video whose frames pass a fifth of it is a 422; files passing the
    request's 2500 together are a 422, before anything is decoded."""
    r = small.post("/v1/report", files=png_files([40, 20]))  # 1600 and 400 pixels
    assert r.status_code == 200, r.text
    assert r.text.count('<tr class="error"') == 1 and r.text.count("<tr data-index=") == 1
    assert 'errmsg">image is 40x40 = 1,600 pixels, over the limit of 1,000<' in r.text
    body = assert_error_shape(small.post("/v1/report", files=png_files([30, 30, 30])), 422)  # 2700 pixels
    assert "limit of 2,500 pixels (FAKESCOPE_MAX_REQUEST_PIXELS)" in body["detail"]
    large = write_video(tmp_path / "large.mp4", pattern_frames(3, seed=1, size=32))  # 1024 pixels a frame
    body = assert_error_shape(small.post("/v1/detect/video", files={"file": ("large.mp4", large.read_bytes())}), 422)
    assert body["detail"] == ("large.mp4: frames are 32x32 = 1,024 pixels, over the limit of 200 for a video's frames "
                              "(1/5 of 1,000: decoding a video holds about 5 frames)")
    ok = write_video(tmp_path / "ok.mp4", small_frames())
    r = small.post("/v1/detect/video", files={"file": ("ok.mp4", ok.read_bytes())})
    assert r.status_code == 200, r.text
    assert len(r.json()["frames"]) == 3
    assert small.app.state.runtime.pixels.used == 0


def test_report_and_video_wait_their_turn_for_pixels(small: TestClient, tmp_path: Path) -> None:
    budget = small.app.state.runtime.pixels
    video = write_video(tmp_path / "v.mp4", small_frames()).read_bytes()  # counts 192 x 5
    budget.take(2500)  # other requests hold 2500 of the 3000 pixels
    try:
        for path, files in (("/v1/report", png_files([30])), ("/v1/detect/video", {"file": ("v.mp4", video)})):
            r = small.post(path, files=files)
            assert_error_shape(r, 503)
            assert r.headers["retry-after"] == "1" and budget.used == 2500
    finally:
        budget.give(2500)
    assert small.post("/v1/detect/video", files={"file": ("v.mp4", video)}).status_code == 200
    assert budget.used == 0


def test_concurrent_reports_past_the_inflight_budget_get_503(small: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three reports of one 900-pixel image each hold 2700 of the 3000 pixels while they wait for the model (the
    first one inside it); a fourth is refused at once with Retry-After, and the three finish."""
    from fakescope.serve.routers import folder

    budget, release, inside = small.app.state.runtime.pixels, threading.Event(), []
    real = folder.report_html

    def held(*args):
        inside.append(budget.used)
        assert release.wait(30)
        return real(*args)

    monkeypatch.setattr(folder, "report_html", held)
    statuses: list[int] = []
    workers = [threading.Thread(target=lambda i=i: statuses.append(
        small.post("/v1/report", files=png_files([30])).status_code)) for i in range(3)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 30
    while budget.used < 2700 and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert budget.used == 2700 and inside
        r = small.post("/v1/report", files=png_files([30]))
        assert_error_shape(r, 503)
        assert r.headers["retry-after"] == "1"
    finally:
        release.set()
        for w in workers:
            w.join(60)
    assert statuses == [200, 200, 200] and budget.used == 0


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (4, 2), (8, 4), (64, 4)])
def test_automatic_threads_leave_cores_free(cores: int, threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert Settings().threads == threads and Settings(torch_threads=3).threads == 3


# --- a real uvicorn on loopback -------------------------------------------------------------------------------

class Served(LiveServer):
    """``create_app(settings)`` under :func:`uvicorn_config` (as ``fakescope serve`` runs it) on 127.0.0.1."""

    def __init__(self, settings: Settings):
        super().__init__(create_app(settings))
        self.server = uvicorn.Server(uvicorn_config(self.app, settings, HOST, self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def connect(self) -> socket.socket:
        return socket.create_connection((HOST, self.port), timeout=10)


def read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0))
    while len(body) < length:
        body += sock.recv(4096)
    return int(head.split(b" ")[1]), json.loads(body)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError, socket.timeout):
        return False


def test_slow_clients_are_cut_off_and_healthz_keeps_answering(tiny_ela_checkpoint: Path) -> None:
    """200 connections trickling their headers: /healthz still answers (generous bound: 100 ms; the measured
    figure is in bench/serve.py), the server closes them at the header deadline, and one over the connection
    limit gets a JSON 503."""
    settings = Settings(model=str(tiny_ela_checkpoint), header_timeout=3.0, max_connections=210)
    with Served(settings) as served:
        slow = [served.connect() for _ in range(200)]
        for s in slow:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        latencies = []
        with httpx.Client(timeout=5) as client:
            for _ in range(10):
                start = time.perf_counter()
                assert client.get(served.url + "/healthz").status_code == 200
                latencies.append(time.perf_counter() - start)
                for s in slow[:50]:
                    s.sendall(b"X: y\r\n")  # still sending headers
                time.sleep(0.05)
            extra = [served.connect() for _ in range(15)]  # 200 + 1 + 15 > 210
            busy = [read_response(s) for s in extra if select_readable(s, 0.2)]
            assert busy and all(code == 503 and "connections" in body["detail"] for code, body in busy)
            time.sleep(settings.header_timeout + 1.0)
            for s in slow:
                s.settimeout(2)
            assert all(closed_by_server(s) for s in slow)
            assert client.get(served.url + "/healthz").status_code == 200
        for s in slow + extra:
            s.close()
    assert max(latencies) < 0.1, latencies


def select_readable(sock: socket.socket, timeout: float) -> bool:
    import select

    return bool(select.select([sock], [], [], timeout)[0])


def test_body_deadline_is_408_and_a_huge_declared_body_is_refused_unread(tiny_ela_checkpoint: Path) -> None:
    settings = Settings(model=str(tiny_ela_checkpoint), body_timeout=1.0, api_key=KEY)
    with Served(settings) as served:
        with served.connect() as s:  # 1 GB declared, nothing sent, no key: 401 at once
            s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: 1000000000\r\n\r\n")
            assert read_response(s)[0] == 401
        with served.connect() as s:  # the same with the key: 413 at once, in JSON
            s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: 1000000000\r\n\r\n")
            code, body = read_response(s)
            assert code == 413 and "20 MB" in body["detail"]
        with served.connect() as s:  # 10 of 1000 bytes, then silence: 408
            s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n--b\r\nabcd")
            code, body = read_response(s)
            assert code == 408 and "not received within 1 s" in body["detail"]
