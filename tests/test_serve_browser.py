"""The service on a real socket (uvicorn on loopback) and its web page driven in Debian's Chromium by Playwright.

Playwright's own browser download does not work offline, so the test uses Debian's ``/usr/bin/chromium``, which
``make browser`` installs (``.ci/run`` calls it before ``make test``); without it the tests skip, saying so. Set
``FAKESCOPE_UPDATE_SCREENSHOT=1`` to also save the page to ``docs/web-screenshot.png`` and the folder view (scored by
the shipped default detector) to ``docs/web-folder-screenshot.png``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
from conftest import REPO, make_image
from PIL import Image

from fakescope.inference.output import FIELDS
from fakescope.inference.scan import ScanResult
from fakescope.serve import Settings, create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread of this process."""

    def __init__(self, app):
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def screenshot_model(tiny_ela_checkpoint: Path) -> str:
    """The tiny model; the shipped default when the README's screenshots are being made."""
    return "default" if os.environ.get("FAKESCOPE_UPDATE_SCREENSHOT") == "1" else str(tiny_ela_checkpoint)


@pytest.fixture(scope="module")
def server(tiny_ela_checkpoint: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app(Settings(model=screenshot_model(tiny_ela_checkpoint)))) as live:
        yield live


def spliced_image(size: tuple[int, int] = (320, 240)) -> bytes:
    """A JPEG with a pasted, differently compressed patch: the kind of edit ELA makes visible."""
    base = make_image(size, seed=11)
    buf = io.BytesIO()
    base.save(buf, "JPEG", quality=70)
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    patch = make_image((90, 70), seed=12).rotate(180)
    img.paste(patch, (size[0] // 2, size[1] // 3))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=95)
    return out.getvalue()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: `make browser` installs Debian's chromium")
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        except sync_api.Error as err:
            pytest.skip(f"chromium does not start under Playwright: {str(err).splitlines()[0]}")
        yield b
        b.close()


@contextlib.contextmanager
def open_page(browser, server: LiveServer):
    """The web page of ``server``, ready, collecting console errors and requests to other hosts in ``page.problems``."""
    page = browser.new_page(viewport={"width": 1200, "height": 860})
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on("request", lambda r: r.url.startswith((server.url, "data:", "blob:")) or page.problems.append(r.url))
    try:
        page.goto(server.url + "/")
        page.wait_for_selector("#status.ready", timeout=30_000)
        yield page
    finally:
        page.close()


@pytest.fixture
def page(browser, server: LiveServer):
    with open_page(browser, server) as page:
        yield page


def api_detect(server: LiveServer, name: str, data: bytes, ctype: str) -> dict:
    r = httpx.post(server.url + "/v1/detect", files={"file": (name, data, ctype)}, timeout=60)
    assert r.status_code == 200
    return r.json()


def test_page_shows_the_api_score_and_both_maps(page, server: LiveServer, tmp_path: Path) -> None:
    data = spliced_image()
    path = tmp_path / "spliced.jpg"
    path.write_bytes(data)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("body[data-state=done]", timeout=60_000)

    expected = api_detect(server, "spliced.jpg", data, "image/jpeg")
    assert page.text_content("#score") == f"{expected['fake_probability']:.4f}"
    assert page.text_content("#label") == expected["label"]
    assert page.text_content("#filename") == "spliced.jpg"
    pairs, familiarity = expected.get("copy_move"), expected.get("familiarity")
    assert page.text_content("#copy-move") == ("not checked" if pairs is None else  # the tiny ELA-CNN: not checked
                                                f"{pairs} matched pairs" if pairs >= 4 else "none found")
    assert page.text_content("#familiarity").startswith(
        "not described" if familiarity is None else f"{familiarity:.2f}")
    assert page.text_content("#dims") == "320\u00d7240"
    for view in ("#view-original", "#view-ela", "#view-cam"):
        # naturalWidth > 0: the image decoded and the page's Content-Security-Policy let it through.
        assert page.eval_on_selector(view, "img => img.complete && img.naturalWidth") > 0, view
    assert page.get_attribute("#view-ela", "src").startswith("data:image/png;base64,")
    assert page.is_hidden("#error")
    assert page.problems == []

    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert Image.open(tmp_path / "page.png").size[0] == 1200
    if os.environ.get("FAKESCOPE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "page.png", REPO / "docs" / "web-screenshot.png")


def test_dropping_a_file_scores_it(page, server: LiveServer) -> None:
    data = io.BytesIO()
    make_image((64, 48), seed=21).save(data, "PNG")
    png = data.getvalue()
    page.evaluate("""([bytes, name]) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", [list(png), "dropped.png"])
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    expected = api_detect(server, "dropped.png", png, "image/png")
    assert page.text_content("#score") == f"{expected['fake_probability']:.4f}"
    assert page.text_content("#filename") == "dropped.png"
    assert page.problems == []


def test_page_shows_the_reason_for_a_non_image(page, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    page.set_input_files("#file", str(path))
    page.wait_for_selector("body[data-state=error]", timeout=30_000)
    message = page.text_content("#error")
    assert message.startswith("415: ") and "notes.txt" in message and "not an image" in message
    assert page.is_hidden("#result")


def test_page_chooses_a_threshold_on_real_photos_and_labels_with_it(page, server: LiveServer, tmp_path: Path) -> None:
    paths = []
    for i in range(10):
        paths.append(tmp_path / f"real{i}.jpg")
        make_image((48, 40), seed=40 + i).save(paths[-1], "JPEG", quality=90)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    page.evaluate("limits = { files: 3, bytes: 1e9 }")  # several batch requests, as with a few hundred photos
    batches = []
    page.on("request", lambda r: r.url.endswith("/v1/detect/batch") and batches.append(r))
    page.click("#calibrate summary")
    page.fill("#fpr", "20")
    page.set_input_files("#reals", [str(p) for p in paths] + [str(tmp_path / "broken.jpg")])
    page.wait_for_selector("body[data-calibrate=done]", timeout=60_000)

    probs = [r["fake_probability"] for r in httpx.post(server.url + "/v1/detect/batch", timeout=60, files=[
        ("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]).json()["results"]]
    expected = httpx.post(server.url + "/v1/threshold", json={"fake_probabilities": probs, "fpr": 0.2}).json()
    assert len(batches) == 4  # 11 files, at most 3 per request
    summary = page.text_content("#cal-summary")
    assert summary.startswith("10 real photos scored") and f"{expected['threshold']:.4f}" in summary
    assert "1 skipped: broken.jpg" in page.text_content("#cal-warning") and "rough" in page.text_content("#cal-warning")

    page.click("#cal-use")
    assert page.is_visible("#own-threshold") and page.text_content("#own-value") == f"{expected['threshold']:.4f}"
    page.set_input_files("#file", str(paths[0]))
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.text_content("#label") == ("fake" if probs[0] >= expected["threshold"] else "real")
    assert page.text_content("#threshold") == f"{expected['threshold']:.2f}"
    page.click("#own-reset")
    assert page.is_hidden("#own-threshold")
    assert page.problems == []


def noise_jpeg(path: Path, size: tuple[int, int], seed: int) -> int:
    """A JPEG of noise (it hardly compresses, so its size follows ``size``); returns its byte count."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=95)
    return path.stat().st_size


def test_page_batches_by_body_size_and_skips_a_photo_over_the_upload_limit(
        browser, tiny_ela_checkpoint: Path, tmp_path: Path) -> None:
    limit = 64 * 1024  # the server refuses larger request bodies with 413
    sizes = {tmp_path / f"real{i}.jpg": noise_jpeg(tmp_path / f"real{i}.jpg", (96, 80), seed=i) for i in range(8)}
    big = tmp_path / "huge.jpg"
    assert noise_jpeg(big, (300, 240), seed=9) > limit
    assert max(sizes.values()) < limit / 3 and sum(sizes.values()) > limit  # several files per batch, several batches
    settings = Settings(model=str(tiny_ela_checkpoint), max_upload_mb=limit / 1024 / 1024)
    with LiveServer(create_app(settings)) as strict, open_page(browser, strict) as page:
        batches = []
        page.on("requestfinished", lambda r: r.url.endswith("/v1/detect/batch") and batches.append(
            (int(r.header_value("content-length")), r.response().status)))
        page.click("#calibrate summary")
        page.set_input_files("#reals", [str(p) for p in sizes] + [str(big)])
        page.wait_for_selector("body[data-calibrate=done]", timeout=60_000)

        assert page.text_content("#cal-summary").startswith(f"{len(sizes)} real photos scored")
        assert "1 skipped: huge.jpg: over the server's upload limit" in page.text_content("#cal-warning")
        scored = [n for n, status in batches if status == 200]
        assert len(scored) >= 2 and all(n <= limit for n in scored)  # split by size, each batch within the limit
        assert [status for _, status in batches].count(413) == 1  # only the oversized photo, alone in its request
        assert len(page.problems) == 1 and "413" in page.problems[0]  # the browser logs the refused request, nothing else


def test_health_answers_while_the_model_is_busy(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = server.app.state.runtime.detector
    real = detector.predict_batch

    def slow(items: list) -> np.ndarray:
        time.sleep(1.5)
        return real(items)

    monkeypatch.setattr(detector, "predict_batch", slow)
    data = io.BytesIO()
    make_image((40, 40)).save(data, "PNG")
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(r=httpx.post(
        server.url + "/v1/detect", files={"file": ("a.png", data.getvalue(), "image/png")}, timeout=30)))
    worker.start()
    time.sleep(0.4)
    start = time.perf_counter()
    health = httpx.get(server.url + "/healthz", timeout=5)
    latency = time.perf_counter() - start
    worker.join(30)
    assert health.status_code == 200 and latency < 0.5
    assert done["r"].status_code == 200


def test_oversized_body_is_refused_before_it_is_sent(server: LiveServer) -> None:
    """Content-Length over the limit: 413 comes back although only a few bytes of the body were sent."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1073741824\r\n\r\n--b\r\n")
        reply = sock.recv(4096).decode("latin-1")
    assert reply.startswith("HTTP/1.1 413")


def test_provenance_panel_above_the_score(page, server: LiveServer, tmp_path: Path) -> None:
    from provenance_files import signed_image

    data = signed_image("JPEG")
    path = tmp_path / "signed.jpg"
    path.write_bytes(data)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    expected = api_detect(server, "signed.jpg", data, "image/jpeg")["provenance"]
    assert page.is_visible("#provenance") and page.get_attribute("#provenance", "data-verdict") == "declared_ai"
    assert page.text_content("#prov-verdict") == "declares AI generation"
    assert page.text_content("#prov-reason") == expected["reason"]
    field = lambda name: page.text_content(f'#prov-details dd[data-field="{name}"]')  # noqa: E731
    assert field("signed by") == expected["signed_by"] == "C2PA Test Signing Cert"
    assert field("signature").startswith("valid: ") and field("generator") == "fakescope-tests 1.0"
    assert field("digital source type") == "trainedAlgorithmicMedia" and field("actions") == "c2pa.created"
    panel, score = page.locator("#provenance").bounding_box(), page.locator("#score").bounding_box()
    assert panel["y"] + panel["height"] <= score["y"], "the panel sits above the pixel score"

    tampered = bytearray(data)
    tampered[-20] ^= 0x55
    (tmp_path / "tampered.jpg").write_bytes(bytes(tampered))
    page.evaluate("document.body.dataset.state = ''")
    page.set_input_files("#file", str(tmp_path / "tampered.jpg"))
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.text_content("#prov-verdict") == "Content Credentials fail validation"
    assert page.text_content('#prov-details dd[data-field="signature"]') == "INVALID: assertion.dataHash.mismatch"
    assert page.problems == []


def phone_folder(root: Path) -> list[Path]:
    """20 files as a camera folder holds them: the 10 example photos, JPEGs and PNGs made here, a HEIC, an AVIF, a
    broken file and a short video."""
    from test_video import write_video

    folder = root / "DCIM"
    folder.mkdir(parents=True)
    files = []
    for src in sorted((REPO / "examples" / "images").rglob("*.jpg")):
        files.append(folder / src.name)
        shutil.copyfile(src, files[-1])
    for i, ext in enumerate(["jpg"] * 4 + ["png"] * 2 + ["heic", "avif"]):
        files.append(folder / f"IMG_{i:04d}.{ext}")
        make_image((96, 72), seed=40 + i).save(files[-1], quality=90)
    files.append(folder / "broken.jpg")
    files[-1].write_bytes(b"not a jpeg at all")
    faces = [Image.open(p).convert("RGB").resize((128, 128)) for p in files[:6]]
    files.append(write_video(folder / "clip.mp4", faces))
    return files


@pytest.fixture(scope="module")
def folder_server(tiny_ela_checkpoint: Path) -> Iterator[LiveServer]:
    model = screenshot_model(tiny_ela_checkpoint)
    with LiveServer(create_app(Settings(model=model))) as live:
        yield live


def download(page, button: str, timeout: float = 120_000) -> Path:
    with page.expect_download(timeout=timeout) as info:
        page.click(button)
    return Path(info.value.path())


def table_scores(page) -> list[float | None]:
    texts = page.eval_on_selector_all("#folder-table tbody td.num", "tds => tds.map(td => td.firstChild.textContent)")
    return [None if t == "-" else float(t) for t in texts]


def test_folder_view_scores_20_files_sorts_opens_and_downloads(browser, folder_server: LiveServer, tmp_path: Path) -> None:
    files = phone_folder(tmp_path)
    assert len(files) == 20
    with open_page(browser, folder_server) as page:
        page.set_input_files("#files", [str(p) for p in files])
        page.wait_for_selector("body[data-folder=done]", timeout=300_000)
        assert page.locator("#folder-table tbody tr").count() == 20
        summary = page.text_content("#folder-summary")
        assert summary.startswith("20 files:") and "1 error " in summary
        # every file is counted once: fake, real, uncertain (when any) and errors add up
        assert sum(int(n) for n in re.findall(r"(\d+) (?:flagged fake|real|uncertain|errors?)\b", summary)) == 20

        rows = json.loads(download(page, "#dl-json").read_text())  # written by `fakescope scan`'s own writer
        assert len(rows) == 20 and {r["path"] for r in rows} == {p.name for p in files}
        assert all(ScanResult.from_dict(r).to_dict() == r for r in rows)  # scan records, nothing else
        by_name = {r["path"]: r for r in rows}
        assert "not a recognised image" in by_name["broken.jpg"]["error"] and by_name["broken.jpg"]["threshold"] is None
        assert all(r["threshold"] is not None for r in rows if r["error"] is None)  # what each label used
        assert by_name["IMG_0006.heic"]["error"] is None and by_name["IMG_0007.avif"]["error"] is None
        video = by_name["clip.mp4"]
        assert len(video["frames"]) == 6 and all(r.get("frames") is None for r in rows if r is not video)
        images = [p for p in files if p.suffix != ".mp4"][:5]
        api = httpx.post(folder_server.url + "/v1/detect/batch", timeout=120,
                         files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in images]).json()["results"]
        assert [by_name[r["path"]]["fake_probability"] for r in api] == pytest.approx([r["fake_probability"] for r in api], abs=1e-5)
        lines = download(page, "#dl-csv").read_text().splitlines()
        assert lines[0] == ",".join(FIELDS) and len(lines) == 21

        page.click("#folder-table th[data-sort=score]")  # highest first, the error last
        scores = table_scores(page)
        assert scores[:-1] == sorted(scores[:-1], reverse=True) and scores[-1] is None
        page.click("#folder-table th[data-sort=score]")
        assert table_scores(page)[:-1] == sorted(scores[:-1])

        page.click("#folder-table tr[data-path='clip.mp4']")  # a video opens its per-frame plot
        page.wait_for_selector("#video-view:not([hidden])")
        assert page.locator("#frame-plot circle.frame").count() == 6
        y = float(page.get_attribute("#frame-plot line.threshold", "y1"))  # drawn at the video row's threshold
        assert y == pytest.approx(200 - 30 + (2 * 30 - 200) * video["threshold"])
        page.click("#folder-table th[data-sort=score]")
        page.screenshot(path=str(tmp_path / "folder.png"), full_page=True)
        page.click("#folder-table tr[data-path='IMG_0004.png']")  # an image opens the views above
        page.wait_for_selector("body[data-state=done]", timeout=60_000)
        assert page.text_content("#filename") == "IMG_0004.png" and page.is_hidden("#video-view")

        report = download(page, "#dl-report", 600_000).read_text()  # the report `fakescope scan --report` writes
        assert report.count("<tr data-index=") == 19 and report.count('<tr class="error"') == 1
        assert "clip.mp4" in report and "fakescope-report-" not in report
        assert page.problems == []
    if os.environ.get("FAKESCOPE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "folder.png", REPO / "docs" / "web-folder-screenshot.png")
