"""Writers for scan results: JSON list, JSON lines (appendable, resumable), CSV, and a Rich table."""
from __future__ import annotations

import csv
import io
import json
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from rich.table import Table

from fakescope.inference.scan import ScanResult

FIELDS = ["path", "fake_probability", "label", "model", "error"]
FORMATS = ("table", "json", "jsonl", "csv")


def read_jsonl_paths(path: str | Path) -> set[str]:
    """Paths already recorded in a JSONL results file (a torn last line from a crash is ignored)."""
    done = set()
    p = Path(path)
    if not p.exists():
        return done
    with open(p) as f:
        for line in f:
            try:
                done.add(json.loads(line)["path"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def repair_jsonl(path: str | Path) -> None:
    """Drop a partially written last line so appended results start on a fresh line."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return
    data = p.read_bytes()
    if not data.endswith(b"\n"):
        p.write_bytes(data[: data.rfind(b"\n") + 1])


class ResultWriter:
    """Writes scan results to an open text file one at a time, so nothing is held: ``json`` (one list, the same
    text as ``json.dump(rows, indent=2)``; :meth:`close` ends it, so an interrupted scan still leaves valid JSON),
    ``jsonl`` or ``csv``. Each result is flushed to disk as it is written."""

    def __init__(self, out: TextIO, fmt: str):
        if fmt not in FORMATS or fmt == "table":
            raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")
        self.out, self.fmt, self.count = out, fmt, 0
        self._csv = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writeheader()
        elif fmt == "json":
            out.write("[")

    def write(self, result: ScanResult) -> None:
        row = result.to_dict()
        if self.fmt == "json":
            self.out.write(("," if self.count else "") + "\n" + textwrap.indent(json.dumps(row, indent=2), "  "))
        elif self.fmt == "jsonl":
            self.out.write(json.dumps(row) + "\n")
        else:
            self._csv.writerow(row)
        self.count += 1
        self.out.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "]\n")
        self.out.flush()


def write_results(results: Iterable[ScanResult], fmt: str, out: TextIO) -> None:
    """Write ``results`` (any iterable: nothing is held, whatever the format) to ``out``."""
    writer = ResultWriter(out, fmt)
    for r in results:
        writer.write(r)
    writer.close()


def results_table(results: Iterable[ScanResult], threshold: float) -> Table:
    table = Table(title=None, show_lines=False)
    table.add_column("file", overflow="fold")
    table.add_column("fake probability", justify="right")
    table.add_column("label")
    table.add_column("error", overflow="fold")
    for r in results:
        if r.error is not None:
            table.add_row(r.path, "-", "[yellow]error[/]", r.error)
        else:
            style = "red" if r.label == "fake" else "green"
            table.add_row(r.path, f"{r.fake_probability:.3f}", f"[{style}]{r.label}[/]", "")
    return table


def to_string(results: list[ScanResult], fmt: str) -> str:
    buf = io.StringIO()
    write_results(results, fmt, buf)
    return buf.getvalue()
