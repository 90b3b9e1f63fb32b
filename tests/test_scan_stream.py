"""The scan streams its input, never scores a file twice, and resumes after SIGINT or SIGKILL losing nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from fakescope.checkpoint import CheckpointMeta, save_checkpoint
from fakescope.data.preprocess import Preprocess
from fakescope.forensics.io import ImageLoadError, load_image
from fakescope.forensics.provenance import read_provenance
from fakescope.inference.detector import Detector
from fakescope.inference.inputs import count_files, walk_image_files
from fakescope.inference.scan import PathSet, scan
from fakescope.models.ela_cnn import ELACNN


@pytest.fixture(scope="module")
def tiny_detector_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 32 px ELA-CNN checkpoint (fast enough to scan hundreds of files in a test)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "ela32.safetensors"
    return save_checkpoint(path, ELACNN(size=32).eval(), CheckpointMeta("ela-cnn", Preprocess("ela", size=32)))


def test_walk_streams_skips_hidden_and_mask_folders(tiny_images, tmp_path: Path) -> None:
    keep = tiny_images(3, "data/a") + tiny_images(2, "data/a/b/c", prefix="deep")
    tiny_images(2, "data/masks")
    tiny_images(1, "data/.hidden")
    (tmp_path / "data" / "notes.txt").write_text("not an image")
    walk = walk_image_files([tmp_path / "data"])
    assert iter(walk) is walk  # a generator: nothing is listed before it is asked for
    found = list(walk)
    assert sorted(found) == sorted(keep)
    assert found == list(walk_image_files([tmp_path / "data"]))  # same order on every walk (worker sharding)


def test_overlapping_inputs_score_each_file_once(tiny_images, tmp_path: Path, tiny_detector_path: Path) -> None:
    files = tiny_images(20, "imgs")
    det = Detector.load(str(tiny_detector_path))
    inputs = [tmp_path / "imgs", files[3], tmp_path / "imgs" / ".." / "imgs", tmp_path / "missing.jpg"]
    results = list(scan(inputs, det, batch_size=3, workers=2))
    counts = Counter(os.path.abspath(r.path) for r in results)
    assert set(counts.values()) == {1}
    assert len(results) == 21
    assert [r.error is not None for r in results].count(True) == 1  # the missing file, reported not dropped
    assert count_files(inputs) == 21


def test_files_named_beside_their_folder_are_kept_unless_the_walk_reaches_them(tiny_images, tmp_path: Path,
                                                                             tiny_detector_path: Path) -> None:
    files = tiny_images(3, "mixed")
    hidden = tiny_images(1, "mixed/.cache")[0]
    folder = tmp_path / "mixed"
    (folder / "notes.txt").write_text("not an image")
    (folder / "noext").write_bytes(files[0].read_bytes())
    named = [folder / "notes.txt", folder / "noext", folder / "missing.jpg", hidden, files[1], folder / "noext"]
    det = Detector.load(str(tiny_detector_path))
    results = {r.path: r for r in scan([folder, *named], det, workers=0)}
    assert set(results) == {str(p) for p in [*files, *named]}  # each once: files[1] by the walk, noext once
    assert "not a recognised image" in results[str(folder / "notes.txt")].error
    assert "does not exist" in results[str(folder / "missing.jpg")].error
    assert results[str(folder / "noext")].error is None and results[str(hidden)].error is None
    assert count_files([folder, *named]) == len(results) == 7


@contextmanager
def released_when_opened(fifos: list[Path]) -> Iterator[list[Path]]:
    """Whoever opens one of ``fifos`` to read is let go at once (it reads an empty file), so a scan that opens
    one fails its test instead of hanging; yields the list of those opened."""
    opened: list[Path] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            for fifo in fifos:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # ENXIO: no reader waiting
                    continue
                opened.append(fifo)
                os.close(fd)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield opened
    finally:
        stop.set()
        watcher.join()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_named_pipes_are_error_rows_and_never_opened(tiny_images, tmp_path: Path, tiny_detector_path: Path) -> None:
    (ok,) = tiny_images(1, "weird")
    pipe, video_pipe = tmp_path / "weird" / "pipe.jpg", tmp_path / "weird" / "clip.mp4"
    os.mkfifo(pipe)
    os.mkfifo(video_pipe)
    det = Detector.load(str(tiny_detector_path))
    with released_when_opened([pipe, video_pipe]) as opened:
        for provenance in (False, True):
            results = {r.path: r for r in scan([tmp_path / "weird", pipe], det, workers=0, provenance=provenance)}
            assert set(results) == {str(ok), str(pipe), str(video_pipe)}
            assert results[str(ok)].error is None and results[str(ok)].fake_probability is not None
            assert results[str(pipe)].error == results[str(video_pipe)].error == "not a regular file (a named pipe)"
        with pytest.raises(ImageLoadError, match="not a regular file"):
            load_image(pipe)
        assert read_provenance(pipe).errors == [f"{pipe}: not a regular file (a named pipe)"]
    assert opened == []


def test_skip_and_pathset(tiny_images, tmp_path: Path, tiny_detector_path: Path) -> None:
    files = tiny_images(37, "imgs")
    done = PathSet(str(p) for p in files[:10])
    assert files[0] in done and str(files[10]) not in done and len(done) == 10
    det = Detector.load(str(tiny_detector_path))
    results = list(scan([tmp_path / "imgs"], det, batch_size=4, workers=2, skip=done))
    assert sorted(r.path for r in results) == sorted(str(p) for p in files[10:])
    assert count_files([tmp_path / "imgs"], done) == 27

    jsonl = tmp_path / "out.jsonl"
    jsonl.write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in files[:5]) + '{"path": "torn')
    from_file = PathSet.from_jsonl(jsonl)
    assert len(from_file) == 5 and str(files[4]) in from_file and str(files[5]) not in from_file


#: Seconds each batch waits before it is scored in the interrupted scans, so that a run takes at least
#: (files / batch size) x PACE: the signal, sent as soon as the wanted lines are seen, lands mid-run however long
#: this test process waits for the CPU between seeing them and signalling.
PACE = 0.1
#: Bounds on the waits (start-up, importing torch, can take most of a minute on a loaded 2-core machine).
START_TIMEOUT, STOP_TIMEOUT = 300, 180
_PACED_CLI = ("import time\nfrom fakescope.inference.detector import Detector\nscore = Detector.score_batch\n"
              f"Detector.score_batch = lambda self, items, *rest: (time.sleep({PACE}), score(self, items, *rest))[1]\n"
              "from fakescope.cli import app\napp()")


def _start_scan(folder: Path, out: Path, ckpt: Path, resume: bool) -> tuple[subprocess.Popen, Path]:
    """The scan CLI in a child process, and the file its stdout and stderr go to (a pipe nobody reads while it
    runs can fill and stall it)."""
    cmd = [sys.executable, "-c", _PACED_CLI, "scan", str(folder), "--model", str(ckpt),
           "--format", "jsonl", "--output", str(out), "--backend", "torch", "--workers", "1", "--batch-size", "2"]
    env = {**os.environ, "FAKESCOPE_CACHE": str(out.parent / "cache"), "OMP_NUM_THREADS": "1"}
    log = out.with_name(f"{out.stem}-{'resume' if resume else 'first'}.log")
    with open(log, "w") as f:
        return subprocess.Popen(cmd + (["--resume"] if resume else []), env=env, stdout=f,
                                stderr=subprocess.STDOUT), log


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _interrupt_after(proc: subprocess.Popen, log: Path, out: Path, n_lines: int, sig: int) -> str:
    """Send ``sig`` once ``out`` holds ``n_lines`` lines (the scan is then past its start-up and writing), wait
    for the process to end and return the end of its output; fail, saying why, if the lines never come."""
    deadline = time.monotonic() + START_TIMEOUT
    while _lines(out) < n_lines and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if _lines(out) < n_lines:
        why = f"exiting with {proc.returncode}" if proc.poll() is not None else f"{START_TIMEOUT} s"
        proc.kill()
        proc.wait()
        pytest.fail(f"the scan wrote {_lines(out)} of {n_lines} lines in {why}: {log.read_text()[-2000:]}")
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    finally:
        proc.kill()  # a no-op once it has ended
    return log.read_text()[-2000:]


def test_resume_after_sigint_and_sigkill_scores_every_file_once(tiny_images, tmp_path: Path,
                                                                 tiny_detector_path: Path) -> None:
    files = tiny_images(200, "imgs", size=(120, 90))
    out = tmp_path / "results.jsonl"

    first, log = _start_scan(tmp_path / "imgs", out, tiny_detector_path, resume=False)
    said = _interrupt_after(first, log, out, 20, signal.SIGINT)
    assert first.returncode == 130 and "rerun with --resume to continue" in said, said
    after_sigint = _lines(out)
    assert 20 <= after_sigint < len(files)  # stopped mid-run

    second, log = _start_scan(tmp_path / "imgs", out, tiny_detector_path, resume=True)
    _interrupt_after(second, log, out, after_sigint + 20, signal.SIGKILL)
    assert second.returncode == -signal.SIGKILL
    after_sigkill = _lines(out)
    assert after_sigint < after_sigkill < len(files)
    with open(out, "a") as f:
        f.write('{"path": "' + str(files[-1])[:10])  # a line torn by the kill, as a crash mid-write leaves it

    from typer.testing import CliRunner

    from fakescope.cli import app

    res = CliRunner().invoke(app, ["scan", str(tmp_path / "imgs"), "--model", str(tiny_detector_path), "--format",
                                   "jsonl", "--output", str(out), "--backend", "torch", "--workers", "1", "--resume"])
    assert res.exit_code == 0, res.output
    assert f"resuming: {after_sigkill} files already scored" in res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    counts = Counter(r["path"] for r in rows)
    assert set(counts) == {str(p) for p in files}
    assert max(counts.values()) == 1
    assert all(r["error"] is None and 0.0 <= r["fake_probability"] <= 1.0 for r in rows)


def test_results_are_written_from_a_stream_in_every_format():
    """write_results takes any iterable (nothing held) and its json is json.dump(rows, indent=2)'s very text."""
    import csv
    import io
    import json

    from fakescope.inference.output import write_results
    from fakescope.inference.scan import ScanResult

    results = [ScanResult("a.jpg", 0.9, "fake", "m", threshold=0.5), ScanResult("b.jpg", None, None, "m", "not an image"),
               ScanResult("c.mp4", 0.1, "real", "m", threshold=0.25, frames=[{"index": 0, "score": 0.1}])]
    rows = [r.to_dict() for r in results]
    assert list(rows[0])[:5] == ["path", "fake_probability", "label", "threshold", "model"]
    assert [r["threshold"] for r in rows] == [0.5, None, 0.25]  # an error row decided no label
    for items in (results, []):
        buf = io.StringIO()
        write_results(iter(items), "json", buf)
        expected = io.StringIO()
        json.dump([r.to_dict() for r in items], expected, indent=2)
        assert buf.getvalue() == expected.getvalue() + "\n"
    buf = io.StringIO()
    write_results(iter(results), "jsonl", buf)
    assert [json.loads(line) for line in buf.getvalue().splitlines()] == rows
    buf = io.StringIO()
    write_results(iter(results), "csv", buf)
    table = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [(r["path"], r["threshold"]) for r in table] == [("a.jpg", "0.5"), ("b.jpg", ""), ("c.mp4", "0.25")]
    with pytest.raises(ValueError, match="unknown format"):
        write_results(iter(results), "xml", buf)


def test_rows_written_before_the_threshold_field_still_resume_and_merge(tmp_path: Path) -> None:
    """A JSONL file from a fakescope whose rows had no ``threshold``: its files are still done on --resume, and its
    rows still read (a distributed scan's parts are merged through ScanResult.from_dict)."""
    from fakescope.inference.output import resume_jsonl, to_string
    from fakescope.inference.scan import ScanResult

    old = {"path": "a.jpg", "fake_probability": 0.9, "label": "fake", "model": "m", "error": None}
    jsonl = tmp_path / "old.jsonl"
    jsonl.write_text(json.dumps(old) + "\n")
    assert "a.jpg" in resume_jsonl(jsonl)
    result = ScanResult.from_dict(old)
    assert (result.label, result.threshold) == ("fake", None)
    assert json.loads(to_string([result], "json")) == [{**old, "threshold": None, "familiarity": None}]


def test_error_rows_carry_provenance_only_when_the_files_bytes_were_read(tmp_path: Path,
                                                                        tiny_detector_path: Path) -> None:
    """Provenance is what a file declares: a file whose bytes were read but whose pixels fail to decode keeps what
    its bytes declare; a file with no bytes to read (missing, empty, a pipe) has none, and its row no such key.
    Either way an error row has no threshold, as it has no label; the table's provenance cell says which."""
    from fakescope.inference.output import provenance_cell

    folder = tmp_path / "in"
    folder.mkdir()
    malformed = sorted((Path(__file__).parent / "fixtures" / "malformed").glob("*.bin"))
    for fixture in malformed:
        (folder / f"{fixture.stem}.jpg").write_bytes(fixture.read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    unread = [folder / "empty.jpg", tmp_path / "missing.jpg"]
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.jpg")
        unread.append(folder / "pipe.jpg")
    det = Detector.load(str(tiny_detector_path))
    results = {Path(r.path).name: r for r in scan([folder, tmp_path / "missing.jpg"], det, workers=0, provenance=True)}
    rows = {name: r.to_dict() for name, r in results.items()}
    assert len(rows) == len(malformed) + len(unread) and all(r["error"] for r in rows.values())
    assert all(r["threshold"] is None and r["label"] is None for r in rows.values())
    for fixture in malformed:
        name = f"{fixture.stem}.jpg"
        assert rows[name]["provenance"]["verdict"] == "none" and provenance_cell(results[name]) == "none", name
    for path in unread:
        assert "provenance" not in rows[path.name] and provenance_cell(results[path.name]) == "-", path.name


def test_table_caption_names_each_threshold_that_labelled_its_rows():
    """The caption reads the rows' thresholds: one when all agree, each with its kind of file when the default
    labelled images (with its copy-move check) and videos (without) at different ones, none when nothing scored."""
    from fakescope.inference.output import threshold_caption
    from fakescope.inference.scan import ScanResult

    image = ScanResult("a.jpg", 0.9, "fake", "m", threshold=0.827)
    video = ScanResult("v.mp4", 0.8, "fake", "m", frames=[], threshold=0.714)
    error = ScanResult("b.jpg", None, None, "m", error="unreadable")
    assert threshold_caption([image, error]) == "fake at probability >= 0.827"
    assert threshold_caption([image, video]) == "fake at probability >= 0.827 (images), 0.714 (videos)"
    assert threshold_caption([error]) is None
