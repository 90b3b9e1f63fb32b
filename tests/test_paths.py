"""Issue 33, outputs: a file name that is not UTF-8 is written losslessly by every output format and never stops a
scan; the console table survives a strict stdout encoding; --resume loses nothing when the last record is complete
but has no final newline."""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
from conftest import make_image
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.inference.output import repair_jsonl
from fakescope.inference.paths import path_fields, path_from_record, path_text
from fakescope.inference.scan import ScanResult

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")

RAW_NAME = b"caf\xe9 \xff.jpg"  # Latin-1 bytes: not UTF-8


@pytest.fixture
def odd_folder(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "imgs"
    folder.mkdir()
    make_image((32, 32)).save(folder / "plain.jpg")
    make_image((32, 32), seed=1).save(folder / "été [bold]x.jpg")  # UTF-8, with Rich markup in the name
    odd = os.path.join(os.fsencode(folder), RAW_NAME)
    make_image((32, 32), seed=2).save(odd, format="JPEG")
    return folder, os.fsdecode(odd)


def test_path_fields_round_trip() -> None:
    odd = os.fsdecode(b"/x/" + RAW_NAME)
    fields = path_fields(odd)
    assert fields["path"] == "/x/caf\ufffd \ufffd.jpg" and bytes.fromhex(fields["path_bytes"]) == b"/x/" + RAW_NAME
    assert path_from_record(fields) == odd
    assert path_fields("/x/été.jpg") == {"path": "/x/été.jpg"}  # ordinary names: no extra field
    assert path_text(odd).encode("utf-8")  # valid text


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_scan_writes_non_utf8_names_losslessly(fmt: str, odd_folder, tmp_path: Path, tiny_ela_checkpoint: Path) -> None:
    folder, odd = odd_folder
    out = tmp_path / f"out.{fmt}"
    result = CliRunner().invoke(app, ["scan", str(folder), "--model", str(tiny_ela_checkpoint), "--format", fmt,
                                      "--output", str(out), "--workers", "0"])
    assert result.exit_code == 0, result.output
    text = out.read_bytes().decode("utf-8")  # the file is valid UTF-8
    if fmt == "csv":
        rows = list(csv.DictReader(text.splitlines()))
    elif fmt == "json":
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == 3 and all(r["error"] in (None, "") for r in rows)
    assert sorted(path_from_record(r) for r in rows) == sorted([odd, str(folder / "plain.jpg"),
                                                                str(folder / "été [bold]x.jpg")])


def test_report_and_table_show_odd_names(odd_folder, tmp_path: Path, tiny_ela_checkpoint: Path) -> None:
    """A strict ASCII stdout (as with PYTHONIOENCODING=ascii) and an HTML report: nothing crashes, nothing drops."""
    folder, _ = odd_folder
    runner = CliRunner(charset="ascii")
    result = runner.invoke(app, ["scan", str(folder), "--model", str(tiny_ela_checkpoint), "--workers", "0",
                                 "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "3 files" in result.stdout and "0 errors" in result.stdout
    assert "caf\\ufffd" in result.stdout and "[bold]x.jpg" in result.stdout.replace("\\xe9", "é")
    page = (tmp_path / "r.html").read_bytes().decode("utf-8")
    assert "caf\ufffd \ufffd.jpg" in page


def test_error_messages_with_odd_names_stay_writable() -> None:
    odd = os.fsdecode(b"/x/" + RAW_NAME)
    record = ScanResult(odd, None, None, "m", error=f"cannot read {odd}").to_dict()
    json.dumps(record, ensure_ascii=False).encode("utf-8")
    assert ScanResult.from_dict(record).path == odd


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_repair_keeps_a_complete_unterminated_record_and_drops_a_torn_one(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text('{"path": "a"}\n{"path": "b"}')
    repair_jsonl(out)
    assert out.read_text() == '{"path": "a"}\n{"path": "b"}\n'
    out.write_text('{"path": "a"}\n{"path": "b')
    repair_jsonl(out)
    assert out.read_text() == '{"path": "a"}\n'


def test_resume_after_a_record_without_its_newline_loses_nothing(tmp_path: Path, tiny_ela_checkpoint: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        make_image((32, 32), seed=i).save(folder / f"{i}.jpg")
    out = tmp_path / "r.jsonl"
    args = ["scan", str(folder), "--model", str(tiny_ela_checkpoint), "--format", "jsonl", "--output", str(out),
            "--workers", "0"]
    assert CliRunner().invoke(app, args).exit_code == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]))  # a crash after the second record, before its newline
    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert sorted(r["path"] for r in _records(out)) == sorted(str(p) for p in folder.iterdir())
