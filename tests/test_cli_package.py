"""The CLI package: choices listed and validated, a fast --help, streaming scan output, --fail-on, --quiet and the
one progress helper."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import get_args

import pytest
from rich.console import Console
from typer.testing import CliRunner

from fakescope.cli import app

runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[1] / "src")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_choices_match_the_library_lists():
    """The CLI cannot import these lists without making --help slow, so its copies are checked here."""
    from fakescope.cli import _util as u
    from fakescope.compress.distill import DistillConfig  # noqa: F401 (the registry, for list_generators)
    from fakescope.data.synth import SYNTH_KINDS
    from fakescope.engine.parallel import STRATEGIES
    from fakescope.ensemble.combine import METHODS as ENSEMBLE_METHODS
    from fakescope.evaluation.robustness import PERTURBATIONS
    from fakescope.explain import DEFAULT_CAM, METHODS
    from fakescope.generators import list_generators
    from fakescope.inference.detector import BACKENDS
    from fakescope.inference.output import FORMATS

    assert set(get_args(u.Backend)) == set(BACKENDS)
    assert get_args(u.ScanFormat) == FORMATS
    assert set(get_args(u.ExplainMethod)) == set(METHODS) and get_args(u.ExplainMethod)[0] == DEFAULT_CAM
    assert get_args(u.EnsembleMethod) == ENSEMBLE_METHODS
    assert set(get_args(u.Strategy)) == set(STRATEGIES)
    assert list(get_args(u.GeneratorName)) == list_generators()
    assert get_args(u.SynthKind) == SYNTH_KINDS
    assert [p.value for p in u.Perturbation] == list(PERTURBATIONS)


@pytest.mark.parametrize("args", [["scan", "x.jpg", "--backend", "tf"], ["explain", "x.jpg", "--method", "lime"],
                                  ["evaluate", "--data", ".", "--format", "csv"], ["scan", "x", "--device", "gpu"],
                                  ["scan", "x", "--fail-on", "warning"]])
def test_bad_choices_are_usage_errors_naming_the_choices(args):
    res = invoke(*args)
    assert res.exit_code == 2 and "Invalid value" in res.output


def test_help_lists_the_choices():
    out = invoke("scan", "--help").output
    for choice in ("jsonl", "csv", "onnx", "fake", "error", "any"):
        assert choice in out


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, **kwargs)


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_nothing_heavy(flag):
    code = ("import sys\nfrom fakescope.cli import app\ntry:\n    app([%r])\nexcept SystemExit:\n    pass\n"
            "heavy = ('torch', 'timm', 'onnxruntime', 'fakescope.registry')\n"
            "print('HEAVY', [m for m in sys.modules if m in heavy or m.split('.')[0] in heavy[:3]])") % flag
    res = _run("-c", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_python_m_fakescope_and_version():
    from fakescope import __version__

    res = _run("-m", "fakescope", "--version")
    assert res.returncode == 0 and res.stdout.strip() == f"fakescope {__version__}"
    assert "scan" in _run("-m", "fakescope", "--help").stdout


GATED_SCAN = """
import sys, time
from pathlib import Path
import fakescope.inference.scan as s
real = s.scan
def gated(*args, **kwargs):  # after the first result, wait until the test has read it from the pipe
    for i, r in enumerate(real(*args, **kwargs)):
        if i == 1:
            gate = Path(sys.argv[-1])
            while not gate.exists():
                time.sleep(0.02)
        yield r
s.scan = gated
from fakescope.cli import app
app(sys.argv[1:-1], prog_name="fakescope")
"""
#: What stdout shows once the first row is out: a JSONL line, a CSV header and row, a JSON list's first object
#: (whose line ends only when the next row brings its comma).
FIRST_ROW = {"jsonl": lambda text: text.count("\n") == 1, "csv": lambda text: text.count("\n") == 2,
             "json": lambda text: text.endswith("\n  }")}


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_rows_reach_a_pipe_as_each_file_is_scored(fmt, tiny_images, tiny_ela_checkpoint, tmp_path):
    tiny_images(4, "imgs")
    gate = tmp_path / "gate"
    env = {**os.environ, "PYTHONPATH": SRC, "FAKESCOPE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-c", GATED_SCAN, "scan", str(tmp_path / "imgs"), "--model",
                             str(tiny_ela_checkpoint), "--format", fmt, "--backend", "torch", "--batch-size", "1",
                             "--workers", "0", str(gate)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    read = io.StringIO()

    def read_first_row() -> None:
        while not FIRST_ROW[fmt](read.getvalue()):
            char = proc.stdout.read(1)
            if not char:
                return
            read.write(char)

    reader = threading.Thread(target=read_first_row, daemon=True)
    try:
        reader.start()
        reader.join(timeout=300)  # a loaded machine: the subprocess imports torch first
        assert FIRST_ROW[fmt](read.getvalue()), (read.getvalue(), proc.poll())
        assert proc.poll() is None  # the scan is still running: the row came before the end
    finally:
        gate.touch()
        rest, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    text = read.getvalue() + rest
    n = {"jsonl": lambda: len([json.loads(x) for x in text.splitlines()]),
         "csv": lambda: len(list(csv.DictReader(io.StringIO(text)))), "json": lambda: len(json.loads(text))}[fmt]()
    assert n == 4


def _scan(folder: Path, ckpt: Path, *extra):
    return invoke("scan", folder, "--model", ckpt, "--format", "jsonl", "--workers", "0", *extra)


@pytest.fixture
def mixed(tiny_images, tmp_path) -> Path:
    tiny_images(3, "mixed")
    (tmp_path / "mixed" / "broken.jpg").write_bytes(b"not a jpeg")
    return tmp_path / "mixed"


@pytest.mark.parametrize("threshold, fail_on, status", [
    ("0", None, 0), ("0", "fake", 3), ("1", "fake", 0), ("1", "error", 4), ("0", "error", 4), ("0", "any", 3),
    ("1", "any", 4)])
def test_fail_on_sets_the_exit_status(mixed, tiny_ela_checkpoint, threshold, fail_on, status):
    res = _scan(mixed, tiny_ela_checkpoint, "--threshold", threshold, *(["--fail-on", fail_on] if fail_on else []))
    assert res.exit_code == status, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 4  # every row is written whatever the status
    assert sum(r["error"] is not None for r in rows) == 1


def test_fail_on_without_a_match_is_zero(tiny_images, tiny_ela_checkpoint, tmp_path):
    tiny_images(2, "clean")
    assert _scan(tmp_path / "clean", tiny_ela_checkpoint, "--threshold", "1", "--fail-on", "any").exit_code == 0


def test_fail_on_help_says_which_status_means_what():
    out = " ".join(invoke("scan", "--help").output.replace("│", " ").split())
    assert "status 3 if a file is flagged fake" in out and "4 if a file could not be scored" in out


@pytest.mark.parametrize("where", ["command", "global"])
def test_quiet_leaves_only_results(mixed, tiny_ela_checkpoint, tmp_path, where):
    (tmp_path / "empty").mkdir()
    args = ["scan", mixed, tmp_path / "empty", "--model", tiny_ela_checkpoint, "--format", "jsonl", "--workers", "0"]
    loud = invoke(*args)
    assert "folder holds no image" in loud.stderr  # a note a person at the terminal sees
    quiet = invoke(*(args + ["--quiet"] if where == "command" else ["-q", *args]))
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert quiet.stdout == loud.stdout and len(quiet.stdout.splitlines()) == 4


def test_progress_bars_show_on_a_terminal_and_go_with_quiet(tiny_images, tmp_path, monkeypatch):
    """explain's loop lives in the library (fakescope.progress.track); the CLI's one helper draws it."""
    tiny_images(3, "imgs")
    shown = {}
    for args in ([], ["-q"]):
        stream = io.StringIO()
        monkeypatch.setattr("fakescope.cli._util.err_console", Console(file=stream, force_terminal=True, width=100))
        res = invoke(*args, "explain", tmp_path / "imgs", "--method", "ela", "--out", tmp_path / "out")
        assert res.exit_code == 0, res.output
        shown[bool(args)] = stream.getvalue()
    assert "ela" in shown[False] and "━" in shown[False]  # the bar and its description
    assert shown[True] == ""


def test_no_progress_bar_when_stderr_is_not_a_terminal(tiny_images, tmp_path, monkeypatch):
    tiny_images(2, "imgs")
    stream = io.StringIO()
    monkeypatch.setattr("fakescope.cli._util.err_console", Console(file=stream, force_terminal=False))
    assert invoke("explain", tmp_path / "imgs", "--method", "ela", "--out", tmp_path / "out").exit_code == 0
    assert stream.getvalue() == ""


def test_library_loops_report_only_to_an_installed_tracker():
    from fakescope.progress import reporting, track

    seen = []

    def tracker(it, total, description):
        for x in it:
            seen.append((description, total, x))
            yield x

    assert list(track(range(3), 3, "silent")) == [0, 1, 2] and seen == []
    with reporting(tracker):
        assert list(track(range(2), 2, "loop")) == [0, 1]
    assert seen == [("loop", 2, 0), ("loop", 2, 1)]
    assert list(track(range(1), 1, "after")) == [0] and len(seen) == 2
