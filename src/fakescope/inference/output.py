"""Writers for scan results: JSON list, JSON lines (appendable, resumable), CSV, and a Rich table."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from rich.markup import escape
from rich.table import Table

from fakescope.inference.paths import PATH_BYTES, path_text
from fakescope.inference.scan import PathSet, ScanResult

#: CSV columns; ``path_bytes`` is empty unless the file name is not UTF-8 (see :mod:`fakescope.inference.paths`);
#: the provenance object becomes its verdict and generator columns.
FIELDS = ["path", "fake_probability", "label", "threshold", "familiarity", "model", "error", PATH_BYTES,
          "provenance_verdict", "provenance_generator", "label_reason", "copy_move"]
FORMATS = ("table", "json", "jsonl", "csv")


def _last_line_start(f: BinaryIO, size: int, block: int = 1 << 16) -> int:
    """Offset just after the last newline of a file of ``size`` bytes (0 if none), read backwards in blocks."""
    end = size
    while end > 0:
        start = max(0, end - block)
        f.seek(start)
        chunk = f.read(end - start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


def repair_jsonl(path: str | Path) -> None:
    """Make a JSONL results file end with a newline: a last record that is complete but unterminated (a crash
    between the record and its newline) is kept and terminated; a torn one is dropped, so its file is redone."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return
    with open(p, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        start = _last_line_start(f, size)
        f.seek(start)
        try:
            complete = isinstance(json.loads(f.read()), dict)
        except ValueError:  # torn JSON or torn UTF-8
            complete = False
        if complete:
            f.write(b"\n")
        else:
            f.truncate(start)


def resume_jsonl(path: str | Path) -> PathSet:
    """The files already scored in ``path``, after :func:`repair_jsonl` (repairing first: a record read as done
    and then dropped would lose its file)."""
    repair_jsonl(path)
    return PathSet.from_jsonl(path)


#: What makes a spreadsheet read a text cell as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """``value`` safe to open in a spreadsheet: text that would start a formula (a file name ``=HYPERLINK(...)``,
    an EXIF tag) gets a leading single quote, as OWASP advises; numbers and empty cells are left as they are."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def csv_row(row: dict) -> dict:
    """A result row for CSV: the provenance object becomes its verdict and generator columns, and every text cell
    goes through :func:`csv_cell`."""
    prov = row.get("provenance") or {}
    row = {**row, "provenance_verdict": prov.get("verdict"), "provenance_generator": prov.get("generator")}
    return {k: csv_cell(row.get(k)) for k in FIELDS}


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
            self._csv.writerow(csv_row(row))
        self.count += 1
        self.out.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "]\n")
        self.out.flush()


@contextmanager
def result_sink(output: str | Path | None, fmt: str, resume: bool = False) -> Iterator[ResultWriter]:
    """A :class:`ResultWriter` onto ``output`` (created with its folder; with ``resume``, a JSONL file's torn last
    line is dropped and rows are appended) or onto stdout when ``output`` is None. Every row is flushed as it is
    written, and a JSON list is ended however the block exits (Ctrl-C included), so the output stays valid."""
    if output is None:
        writer = ResultWriter(sys.stdout, fmt)
        try:
            yield writer
        finally:
            writer.close()
        return
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if resume:
        repair_jsonl(output)
    with open(output, "a" if resume else "w", newline="", encoding="utf-8") as stream:
        writer = ResultWriter(stream, fmt)
        try:
            yield writer
        finally:
            writer.close()


def unwritable_reason(path: str | Path) -> str | None:
    """Why no results file can be written at ``path`` (None: it can), found before any work: a folder there, a
    parent folder that cannot be made (it is made now, as writing would make it) or takes no new file (the HTML
    report is written beside its path and renamed into place), an existing file without write permission. A
    device or pipe (``/dev/stdout``) is written in place and needs only its own permission."""
    path = Path(path)
    if path.is_dir():
        return "is a folder"
    if path.exists() and not os.access(path, os.W_OK):
        return "permission denied"
    if path.exists() and not path.is_file():
        return None
    folder = path.parent
    above = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if above is not None and not above.is_dir():
        return f"{above} is not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot create the folder {folder}: {err.strerror or err}"
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as err:
        return f"cannot write in {folder}: {err.strerror or err}"


def write_results(results: Iterable[ScanResult], fmt: str, out: TextIO) -> None:
    """Write ``results`` (any iterable: nothing is held, whatever the format) to ``out``."""
    writer = ResultWriter(out, fmt)
    for r in results:
        writer.write(r)
    writer.close()


def threshold_caption(results: Iterable[ScanResult]) -> str | None:
    """What labelled ``results``: "fake at probability >= T" from their rows' thresholds, with the kind of file each
    applies to when images and videos were labelled at different ones (the default checks images for copy-moves,
    not video frames); None when no row was scored."""
    text = thresholds_text(thresholds_by_kind(results))
    return None if text is None else f"fake at probability >= {text}"


def thresholds_by_kind(results: Iterable[ScanResult]) -> dict[str, float]:
    """The threshold each kind of file (``images``, ``videos``) among the scored rows of ``results`` was labelled at."""
    by_kind: dict[str, float] = {}
    for r in results:
        if r.threshold is not None:
            by_kind.setdefault("videos" if r.frames is not None else "images", r.threshold)
    return by_kind


def thresholds_text(by_kind: dict[str, float]) -> str | None:
    """"T", or "T1 (images), T2 (videos)" when the kinds of file were labelled at different thresholds; None for
    no scored row."""
    if not by_kind:
        return None
    if len(set(by_kind.values())) == 1:
        return f"{next(iter(by_kind.values())):.3f}"
    return ", ".join(f"{t:.3f} ({kind})" for kind, t in sorted(by_kind.items()))


def results_table(results: Iterable[ScanResult]) -> Table:
    """A Rich table of ``results``, captioned with the thresholds that labelled them (:func:`threshold_caption`);
    the familiarity, copy-move, provenance and error columns appear only when some row has one."""
    results = list(results)
    with_prov = any(r.provenance is not None for r in results)
    with_errors = any(r.error is not None for r in results)
    with_familiarity = any(r.familiarity is not None for r in results)
    with_copy_move = any(r.copy_move is not None for r in results)
    table = Table(title=None, show_lines=False, caption=threshold_caption(results))
    table.add_column("file", overflow="fold")
    table.add_column("fake probability", justify="right")
    table.add_column("label")
    if with_familiarity:
        table.add_column("familiarity", justify="right")
    if with_copy_move:
        table.add_column("copy-move", justify="right")
    if with_prov:
        table.add_column("provenance", overflow="fold")
    if with_errors:
        table.add_column("error", overflow="fold")
    for r in results:
        name = escape(path_text(r.path))
        if r.error is not None:
            cells = [name, "-", "[yellow]error[/]"]
        else:
            style = {"fake": "red", "uncertain": "yellow"}.get(r.label or "", "green")
            cells = [name, f"{r.fake_probability:.3f}", f"[{style}]{r.label}[/]" + ("*" if r.label_reason else "")]
        if with_familiarity:
            cells.append("-" if r.familiarity is None else familiarity_cell(r.familiarity))
        if with_copy_move:
            cells.append(copy_move_cell(r.copy_move))
        table.add_row(*cells, *([provenance_cell(r)] if with_prov else []),
                      *([escape(path_text(r.error or ""))] if with_errors else []))
    return table


def copy_move_cell(pairs: int | None) -> str:
    """The matched keypoint pairs of a copy pasted inside the image, when they are evidence (``-``: none)."""
    from fakescope.forensics.copymove import MIN_PAIRS

    return f"[red]{pairs} pairs[/]" if pairs is not None and pairs >= MIN_PAIRS else "-"


def familiarity_cell(familiarity: float) -> str:
    """The familiarity, marked when the image is unlike the detector's training images."""
    from fakescope.familiarity import FAMILIAR_CUT

    return f"{familiarity:.2f}" + (" [yellow]unfamiliar[/]" if familiarity < FAMILIAR_CUT else "")


def provenance_cell(r: ScanResult) -> str:
    """The verdict, and who or what the file names (``-``: provenance not read)."""
    p = r.provenance
    if p is None:
        return "-"
    if p.source == "c2pa":
        who = f"signed by {p.signed_by}" if p.signed_by else None
    elif p.verdict == "camera_original_likely" and p.camera is not None and p.camera.device:
        who = p.camera.device  # the device, not its firmware version (EXIF Software)
    else:
        who = p.generator
    return escape(p.verdict + (f" ({who})" if who else ""))


def to_string(results: list[ScanResult], fmt: str) -> str:
    buf = io.StringIO()
    write_results(results, fmt, buf)
    return buf.getvalue()
