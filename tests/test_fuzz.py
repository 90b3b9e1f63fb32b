"""Issue 33: a seeded, bounded mutation fuzz test of every way untrusted image bytes come in: load_image, `fakescope
scan` and the service's /v1/detect (a real uvicorn on 127.0.0.1, one keep-alive connection). Each case must end
in a score or a one-line error: never an uncaught exception, never a 5xx, and the server answers a valid request
after each bad one. Longer runs: bench/fuzz.py --minutes N (its findings go to tests/fixtures/malformed)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.forensics.io import ImageLoadError, open_image
from fakescope.forensics.mutate import mutants, seed_files

FIXTURES = Path(__file__).parent / "fixtures" / "malformed"
#: Pixel limit for the fuzzed decodes: a mutated header can declare a huge image, and the test must stay fast.
PIXELS = 2_000_000


def reproducers() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(FIXTURES.glob("*.bin"))]


def test_load_image_gives_an_image_or_one_line_error() -> None:
    outcomes = {"image": 0, "error": 0}
    cases = [(c.name, c.data) for c in mutants(2500, seed=33)] + reproducers()
    for name, data in cases:
        try:
            img = open_image(data, max_pixels=PIXELS, name=name)
        except ImageLoadError as err:
            assert str(err).startswith(f"{name}: ") and "\n" not in str(err), name
            outcomes["error"] += 1
        else:
            assert img.mode == "RGB" and img.width * img.height <= PIXELS, name
            outcomes["image"] += 1
    assert outcomes["image"] > 100 and outcomes["error"] > 100  # the mutations do both


def test_scan_reports_every_mutant(tmp_path: Path, tiny_ela_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fakescope.forensics import io as fio

    monkeypatch.setattr(fio, "MAX_PIXELS", PIXELS)
    monkeypatch.setattr(fio.load_image, "__defaults__", (PIXELS,))
    folder = tmp_path / "fuzz"
    folder.mkdir()
    ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "TIFF": "tif", "BMP": "bmp"}
    for case in mutants(300, seed=34):
        (folder / f"{case.name}.{ext[case.name.split('-')[0].split('+')[0]]}").write_bytes(case.data)
    for name, data in reproducers():
        (folder / f"{name}.webp").write_bytes(data)
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(app, ["scan", str(folder), "--model", str(tiny_ela_checkpoint), "--format", "jsonl",
                                      "--output", str(out), "--workers", "0"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(list(folder.iterdir()))
    for r in rows:
        assert (r["error"] is None) == (r["fake_probability"] is not None), r
        assert r["error"] is None or "\n" not in r["error"]
    assert any(r["error"] for r in rows) and any(r["error"] is None for r in rows)


def test_service_answers_every_mutant_then_a_valid_request(tiny_ela_checkpoint: Path, tmp_path: Path) -> None:
    from test_serve_limits import Served

    from fakescope.serve import Settings

    valid = io.BytesIO()
    Image.new("RGB", (32, 24), (120, 80, 40)).save(valid, "JPEG")
    cases = [(c.name, c.data) for c in mutants(300, seed=35, seeds=seed_files())] + reproducers()
    statuses: dict[int, int] = {}
    ports: set[int] = set()
    with Served(Settings(model=str(tiny_ela_checkpoint), max_pixels=PIXELS)) as served, \
            httpx.Client(base_url=served.url, timeout=30) as client:  # one keep-alive connection throughout
        for name, data in cases:
            r = client.post("/v1/detect", files={"file": (name, data, "application/octet-stream")})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code in (200, 422), (name, r.status_code, r.text)
            body = r.json()
            if r.status_code == 200:
                assert 0.0 <= body["fake_probability"] <= 1.0
            else:
                assert body["detail"].startswith(f"{name}: ") and "\n" not in body["detail"]
            after = client.post("/v1/detect", files={"file": ("valid.jpg", valid.getvalue(), "image/jpeg")})
            assert after.status_code == 200, (name, after.text)
            ports.add(r.extensions["network_stream"].get_extra_info("client_addr")[1])
            ports.add(after.extensions["network_stream"].get_extra_info("client_addr")[1])
        for i in range(0, 100, 4):  # the batch endpoint: 200, each file scored or its one-line error
            batch = client.post("/v1/detect/batch", files=[("files", (n, d, "application/octet-stream"))
                                                           for n, d in cases[i:i + 4]])
            assert batch.status_code == 200, batch.text
            for item in batch.json()["results"]:
                assert (item["error"] is None) == (item["fake_probability"] is not None), item
        for i in range(0, 24, 4):  # the report: 200, a row per file, scored or with its reason
            report = client.post("/v1/report", files=[("files", (n, d, "application/octet-stream"))
                                                      for n, d in cases[i:i + 4]])
            assert report.status_code == 200, report.text
            assert report.text.count("<tr data-index=") + report.text.count('<tr class="error"') == 4
        for name, data in video_mutants(tmp_path):  # a video: its score or one line, and the server goes on
            r = client.post("/v1/detect/video", files={"file": (name, data, "application/octet-stream")})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code in (200, 422), (name, r.status_code, r.text)
            assert r.status_code == 200 or (r.json()["detail"].startswith(f"{name}: ") and "\n" not in r.text)
            ports.add(r.extensions["network_stream"].get_extra_info("client_addr")[1])
        assert served.app.state.runtime.pixels.used == 0
    assert statuses.get(200) and statuses.get(422)
    assert len(ports) == 1  # no bad upload cost the client its connection


def video_mutants(folder: Path) -> list[tuple[str, bytes]]:
    """40 mutants of two tiny videos (H.264 in MP4, MPEG-4 part 2 in AVI), named as videos."""
    from test_video import pattern_frames, write_video

    seeds = {f"clip{ext}": write_video(folder / f"clip{ext}", pattern_frames(4, seed=1, size=32), codec=codec).read_bytes()
             for ext, codec in ((".mp4", "libx264"), (".avi", "mpeg4"))}
    return [(c.name + Path(c.name.split("-")[0]).suffix, c.data) for c in mutants(40, seed=36, seeds=seeds)]
