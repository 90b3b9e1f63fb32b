"""The HTML scan report: self-contained, complete, streaming; metadata findings; rendered in headless Chromium."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from PIL import Image
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.evaluation.report import write_report
from fakescope.inference.detector import Detector
from fakescope.inference.scan import scan

runner = CliRunner()


def _with_exif(path: Path, software: str = "Adobe Photoshop CS2 Windows") -> Path:
    exif = Image.Exif()
    exif[271], exif[272], exif[305] = "Canon", "EOS 5D", software
    make_image((40, 32), seed=4).save(path, exif=exif)  # PNG: pixels are stored losslessly, with or without EXIF
    return path


def test_provenance_never_changes_the_score(tmp_path: Path, tiny_ela_checkpoint: Path) -> None:
    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    bare = tmp_path / "bare.png"
    make_image((40, 32), seed=4).save(bare)
    tagged = _with_exif(tmp_path / "tagged.png")
    scores = {Path(r.path).name: r.fake_probability for r in scan([bare, tagged], detector, workers=0)}
    assert scores["bare.png"] == scores["tagged.png"]


def _scan_results(tmp_path: Path, tiny_images, detector: Detector) -> list:
    tiny_images(3, folder="in")
    _with_exif(tmp_path / "in" / "edited.png")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    return list(scan([tmp_path / "in"], detector, workers=0))


def test_report_is_self_contained_and_complete(tmp_path: Path, tiny_images, tiny_ela_checkpoint: Path) -> None:
    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    results = _scan_results(tmp_path, tiny_images, detector)
    out = write_report(results, detector, tmp_path / "r" / "report.html", max_visuals=2)
    text = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "report loads something from a URL"
    assert "url(" not in text and "@import" not in text
    n_ok = sum(r.error is None for r in results)
    assert text.count('<img class="v"') == n_ok + 2 * 2  # thumbnails for all, ELA + Grad-CAM for the first two
    assert "not rendered (cap)" in text and "rendered for the first 2 readable files" in text
    for r in results:
        assert f'data-name="{r.path}"' in text
        if r.error is None:
            assert f'data-score="{r.fake_probability:.6f}"' in text
    assert 'class="label error"' in text and "broken.jpg" in text
    n_fake = sum(r.label == "fake" for r in results)
    assert re.search(rf"<b>{n_fake}</b><span>flagged fake</span>", text)
    assert re.search(r"<b>1</b><span>declare edits</span>", text) and "Adobe Photoshop CS2" in text
    assert '<span class="verdict declared_edit">declared edit</span>' in text
    assert text.count('<div class="prov">') == len(results), "a provenance section per file, error rows too"
    assert "never changes a score" in text and 'id="sort-score"' in text
    assert not list(out.parent.glob("*.part"))


def test_a_file_with_no_bytes_has_no_provenance_section_of_its_own_error(tmp_path: Path,
                                                                         tiny_ela_checkpoint: Path) -> None:
    """A file that is not there, or empty, has nothing to declare (as in the scan's rows): its row says provenance
    was not read, rather than "none" with its error listed as a provenance problem."""
    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    (tmp_path / "empty.jpg").write_bytes(b"")
    results = list(scan([tmp_path / "gone.jpg", tmp_path / "empty.jpg"], detector, workers=0))
    assert len(results) == 2 and all(r.error is not None for r in results)
    text = write_report(results, detector, tmp_path / "report.html").read_text()
    assert text.count("provenance not read") == 2 and "no provenance metadata" not in text


def test_an_unreadable_file_has_no_provenance_section_of_its_own_error(tmp_path: Path, tiny_ela_checkpoint: Path,
                                                                       monkeypatch) -> None:
    """A file the scan could not open (permission denied) is not read again for the report: its row says provenance
    was not read, as its scan row has none. Root reads any file, so the permission is refused by a stand-in."""
    from fakescope.inference.scan import ScanResult

    locked = tmp_path / "locked.jpg"
    Image.new("RGB", (32, 32)).save(locked)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    row = ScanResult(str(locked), None, None, detector.name, error="cannot open: permission denied")
    text = write_report([row], detector, tmp_path / "report.html").read_text()
    assert "provenance not read" in text and "no provenance metadata" not in text


def test_scan_command_writes_report(tmp_path: Path, tiny_images, tiny_ela_checkpoint: Path) -> None:
    tiny_images(2, folder="in")
    report = tmp_path / "out" / "report.html"
    res = runner.invoke(app, ["scan", str(tmp_path / "in"), "--model", str(tiny_ela_checkpoint), "--report", str(report),
                              "--threshold", "0.25"])
    assert res.exit_code == 0, res.output
    text = report.read_text()
    assert text.count("data:image/jpeg;base64,") == 2 * 3 and "<b>2</b><span>files</span>" in text
    assert "threshold 0.250 " in text and "Flagged = fake probability &ge; 0.250." in text  # the rows' threshold


def test_report_says_when_trust_credentials_set_the_label(tmp_path: Path, tiny_images, tiny_ela_checkpoint: Path) -> None:
    from provenance_files import signed_image

    tiny_images(1, folder="in")
    (tmp_path / "in" / "signed.jpg").write_bytes(signed_image("JPEG"))
    report = tmp_path / "report.html"
    res = runner.invoke(app, ["scan", str(tmp_path / "in"), "--model", str(tiny_ela_checkpoint), "--report", str(report),
                              "--threshold", "1.0", "--trust-credentials"])
    assert res.exit_code == 0, res.output
    rows = {m[0]: m[1] for m in re.findall(r'<tr data-index=.*?data-name="[^"]*?([^/"]+)".*?<td><span class="label '
                                           r'\w+">(.*?)</td>', report.read_text())}
    assert rows["signed.jpg"].startswith('fake</span><div class="label-reason">trusted Content Credentials: ')
    assert "label set by trust_credentials" in rows["signed.jpg"]
    assert rows["img000.jpg"] == "real</span>"  # the score chose it: nothing under the label


def _chromium() -> str:
    """Debian's chromium, installed with apt-get when it is missing and we are root; else skip."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and apt-get is not usable here (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-qq", "chromium"], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired):
            break
        if shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip("chromium could not be installed with apt-get")


def screenshot(html: Path, png: Path, profile: Path, size: str = "1200,1600") -> subprocess.CompletedProcess:
    """Render ``html`` in headless Chromium (no network services, throw-away profile) to ``png``."""
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         f"--screenshot={png}", f"--window-size={size}", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(tmp_path: Path, tiny_images, tiny_ela_checkpoint: Path) -> None:
    detector = Detector.load(str(tiny_ela_checkpoint), device="cpu")
    out = write_report(_scan_results(tmp_path, tiny_images, detector), detector, tmp_path / "report.html")
    png = tmp_path / "shot.png"
    proc = screenshot(out, png, tmp_path / "profile")
    assert png.is_file(), proc.stderr[-2000:]
    with Image.open(png) as img:
        assert img.size == (1200, 1600)
        arr = np.asarray(img.convert("RGB"))
    assert arr.std() > 10 and len(np.unique(arr.reshape(-1, 3), axis=0)) > 200, "screenshot looks blank"
    # the dark header band is drawn at the top: the page rendered with its inline CSS
    assert arr[:40].mean() < 80 < arr[400:].mean()
