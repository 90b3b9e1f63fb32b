"""Issue 33, Ctrl-C: during start-up one line and no traceback; during a scan with 2 decoding workers a prompt exit
with the scan's one line, no worker left behind."""
from __future__ import annotations

import importlib.abc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fakescope.__main__ as entry

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups and signals as on Linux")


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "FAKESCOPE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "fakescope", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # its own process group


def _ctrl_c(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to every process of the group


class _InterruptImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "fakescope.cli":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_while_importing_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delitem(sys.modules, "fakescope.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptImport(), *sys.meta_path])

    def exit_(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", exit_)
    with pytest.raises(SystemExit) as info:
        entry.main()
    assert info.value.code == 130
    assert capsys.readouterr().err == "fakescope: interrupted\n"


def _catches_sigint(pid: int) -> bool:
    """Python has installed its SIGINT handler (bit 2 of the caught-signals mask): before that, during exec and the
    interpreter's first steps, a Ctrl-C kills the process by the signal's default action, as it does any program."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


def test_ctrl_c_at_start_up_prints_no_traceback(tiny_images, tmp_path: Path, tiny_ela_checkpoint: Path) -> None:
    """A scan is interrupted while it imports its libraries (PyTorch alone takes seconds). A command interrupted after
    its work, while the interpreter shuts down (which restores the default SIGINT action), dies by the signal with its
    output complete, as any Python program does: not the case tested here, so the command is one that is still
    starting."""
    image = tiny_images(1)[0]
    proc = _start(["scan", str(image), "--model", str(tiny_ela_checkpoint), "--backend", "torch"], tmp_path)
    deadline = time.monotonic() + 60
    while proc.poll() is None and not _catches_sigint(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # past the interpreter's own start, into the imports
    _ctrl_c(proc)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and len(err.splitlines()) <= 1, err
    assert proc.returncode == 130, err


def _alive(pid: int) -> bool:
    """Running (a zombie, dead and not yet reaped by its new parent, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def test_ctrl_c_during_a_scan_with_two_workers(tiny_images, tmp_path: Path, tiny_ela_checkpoint: Path) -> None:
    """Exits with the scan's one line and no worker left; promptly (generous bound: 20 s, where the interpreter's
    teardown alone took half a minute on a busy machine)."""
    tiny_images(300, "imgs", size=(96, 72))
    out = tmp_path / "r.jsonl"
    proc = _start(["scan", str(tmp_path / "imgs"), "--model", str(tiny_ela_checkpoint), "--workers", "2",
                   "--batch-size", "4", "--format", "jsonl", "--output", str(out), "--backend", "torch"], tmp_path)
    deadline = time.monotonic() + 300
    while (not out.exists() or out.read_bytes().count(b"\n") < 8) and proc.poll() is None:
        assert time.monotonic() < deadline, "the scan did not start"
        time.sleep(0.05)
    workers = _children(proc.pid)
    _ctrl_c(proc)
    start = time.monotonic()
    _, err = proc.communicate(timeout=120)
    took = time.monotonic() - start
    assert proc.returncode == 130, err
    assert err.strip().startswith("error: interrupted after") and len(err.strip().splitlines()) == 1, err
    time.sleep(0.5)
    assert not [w for w in workers if _alive(w)]
    assert took < 20, took
