"""``fakescope scan``: score images, videos and folders, streaming one result per file."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer

from fakescope.cli._util import (
    BackendOpt,
    BatchSizeOpt,
    DeviceOpt,
    FailOn,
    QuietOpt,
    ScanFormat,
    ThresholdOpt,
    WorkersOpt,
    app,
    console,
    fail,
    load_detector,
    note,
    plural,
    progress_bars,
    state,
    warn,
)

#: Results a scan with --output prints as a table (all of them are in the file).
TABLE_ROWS = 50
#: Exit statuses of --fail-on (1 is a scan that could not run, 2 a usage error, 130 Ctrl-C).
EXIT_FAKE, EXIT_ERROR = 3, 4
FAIL_ON_HELP = (f"Exit with status {EXIT_FAKE} if a file is flagged fake (fake), {EXIT_ERROR} if a file could not be "
                f"scored (error), or either (any: {EXIT_FAKE} when something is flagged, else {EXIT_ERROR}). Without "
                "it the status is 0 whatever the files hold; 1 means the scan could not run, 2 a usage error, "
                "130 an interrupt.")


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Image and video files and folders (searched recursively).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Shipped detector name or checkpoint path.")] = "default",
    fmt: Annotated[ScanFormat, typer.Option("--format", "-f", help="Rows as they are scored: json (one list), jsonl or csv; table at the end.")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write results here (default: stdout).")] = None,
    threshold: ThresholdOpt = None,
    batch_size: BatchSizeOpt = 32,
    workers: WorkersOpt = None,
    resume: Annotated[bool, typer.Option(help="Skip files already in the --output JSONL file and append.")] = False,
    device: DeviceOpt = "auto",
    backend: BackendOpt = "auto",
    report: Annotated[Optional[Path], typer.Option(help="Also write a self-contained HTML report here (thumbnails, ELA, Grad-CAM, metadata).")] = None,
    frames: Annotated[int, typer.Option(help="Videos: frames sampled, evenly spaced, per video.")] = 32,
    every: Annotated[Optional[int], typer.Option(help="Videos: sample every K-th frame instead of --frames.")] = None,
    top_k: Annotated[int, typer.Option(help="Videos: a video's score is the mean of its K highest frame scores.")] = 5,
    distributed: Annotated[bool, typer.Option(help="Under torchrun: each rank scores its share of the files, rank 0 merges them into --output.")] = False,
    provenance: Annotated[bool, typer.Option("--provenance/--no-provenance", help="Read what each image declares about its origin (C2PA Content Credentials, XMP, generator settings, camera EXIF) beside the score; never changes the score.")] = True,
    trust_credentials: Annotated[bool, typer.Option(help="Label 'fake' an image whose valid C2PA manifest declares AI generation (the score stays the pixels'; label_reason says why).")] = False,
    copy_move: Annotated[bool, typer.Option("--copy-move/--no-copy-move", help="With a detector that checks for copy-moves (the default does): look for a region pasted elsewhere in each image and add that evidence to the score; --no-copy-move scores with the model alone, about twice as fast.")] = True,
    fail_on: Annotated[Optional[FailOn], typer.Option(help=FAIL_ON_HELP)] = None,
    quiet: QuietOpt = False,
) -> None:
    """Score images, videos and folders; one result per file (a video's has its frames), errors per file, and
    each image's provenance (what the file declares about its origin; docs/provenance.md). Without --output, json,
    jsonl and csv rows go to stdout as each file is scored."""
    if resume and (fmt != "jsonl" or output is None):
        raise typer.BadParameter("--resume needs --format jsonl and --output FILE")
    if fmt == "table" and output is not None:
        raise typer.BadParameter("--output needs --format json, jsonl or csv")
    _check_outputs(paths, output, report)
    video = _video_options(frames, every, top_k)
    if trust_credentials and not provenance:
        raise typer.BadParameter("--trust-credentials needs provenance (drop --no-provenance)")
    reading = {"video": video, "provenance": provenance, "trust_credentials": trust_credentials, "copy_move": copy_move}
    if distributed:
        counts = _scan_distributed(paths, model, fmt, output, threshold, batch_size, workers, device, backend, reading)
    else:
        counts = _scan(paths, model, fmt, output, threshold, batch_size, workers, device, backend, reading, resume,
                       report)
    _exit_status(counts, fail_on)


def _check_outputs(paths: list[Path], output: Optional[Path], report: Optional[Path]) -> None:
    """Refuse, before any work, an --output or --report that would overwrite a file the scan reads (or each other)
    or cannot be written."""
    import os

    from fakescope.inference.inputs import scan_reads
    from fakescope.inference.output import unwritable_reason

    for option, path in (("--output", output), ("--report", report)):
        if path is None:
            continue
        if scan_reads(paths, path):
            raise typer.BadParameter(f"{path} is one of the files this scan reads; choose another path",
                                     param_hint=option)
        reason = unwritable_reason(path)
        if reason is not None:
            raise typer.BadParameter(f"{path}: {reason}", param_hint=option)
    if output is not None and report is not None and os.path.realpath(output) == os.path.realpath(report):
        raise typer.BadParameter(f"--output and --report are both {output}; give each its own file")


def _scan(paths: list[Path], model: str, fmt: str, output: Optional[Path], threshold: Optional[float],
          batch_size: int, workers: Optional[int], device: str, backend: str, reading: dict, resume: bool,
          report: Optional[Path]) -> Counter:
    """A scan in this process; ``reading``: the keyword arguments of inference.scan.scan beyond the basics (video
    options, provenance)."""
    from fakescope.inference.inputs import walk_image_files
    from fakescope.inference.output import resume_jsonl

    detector = load_detector(model, device, backend)
    for p in paths:
        if p.is_dir() and next(walk_image_files([p]), None) is None:
            warn(f"{p}: folder holds no image or video files")
    done = resume_jsonl(output) if resume else None  # 8 bytes per finished file
    if done:
        note(f"resuming: {len(done)} files already scored")
    results, counts = [], Counter()
    writer = _report_writer(report, detector)
    try:
        for r in _stream(paths, detector, fmt, output, resume, batch_size, workers, threshold, done, writer, reading,
                         counts):
            if fmt == "table" or (output is not None and len(results) < TABLE_ROWS):  # a file's table: the first rows
                results.append(r)
    except KeyboardInterrupt:
        n = sum(counts.values())
        hint = "" if output is None else ("; rerun with --resume to continue" if fmt == "jsonl"
                                          else f"; the {n} results so far are in {output}")
        raise fail(f"interrupted after {n} files{hint}", 130) from None
    if fmt == "table" or (output is not None and not state.quiet):  # with --output and --quiet: all is in the file
        _summary(results, output, counts)
    if writer:
        note(f"report: {writer.close()}")
    return counts


def _stream(paths, detector, fmt: str, output: Optional[Path], resume: bool, batch_size: int, workers, threshold,
            done, writer, reading: dict, counts: Counter):
    """Scan results as they come, each already written to ``output`` or stdout (json, jsonl, csv) and counted in
    ``counts`` (so an interrupt reports what was written): memory stays flat and a pipe sees every row when it is
    scored."""
    from contextlib import nullcontext

    from fakescope.inference.output import result_sink
    from fakescope.inference.scan import scan as run_scan

    with (nullcontext() if fmt == "table" else result_sink(output, fmt, resume)) as sink, progress_bars() as bars:
        advance = bars.counter("scanning")
        _count_in_background(bars, advance.task, paths, done)
        for r in run_scan(paths, detector, batch_size, workers, threshold, skip=done,
                          on_result=writer and writer.add, **reading):
            if sink is not None:
                sink.write(r)
            counts[r.label or "error"] += 1
            advance()
            yield r


def _exit_status(counts: Counter, fail_on: Optional[str]) -> None:
    if fail_on in ("fake", "any") and counts["fake"]:
        raise typer.Exit(EXIT_FAKE)
    if fail_on in ("error", "any") and counts["error"]:
        raise typer.Exit(EXIT_ERROR)


def _scan_distributed(paths: list[Path], model: str, fmt: str, output: Optional[Path], threshold: Optional[float],
                      batch_size: int, workers: Optional[int], device: str, backend: str, reading: dict) -> Counter:
    """``scan --distributed``: the rank's share of the files, merged by rank 0 (see inference.distributed)."""
    from fakescope.distributed import barrier, init_distributed, local_device, shutdown_distributed
    from fakescope.inference.distributed import scan_distributed

    if output is None or fmt == "table":
        raise typer.BadParameter("--distributed needs --output FILE and --format json, jsonl or csv")
    info = init_distributed(device)
    try:
        if info.rank != 0:
            barrier()  # rank 0 loads first: it alone exports a missing ONNX cache file, the others then read it
        detector = load_detector(model, local_device(device), backend)
        if info.rank == 0:
            barrier()
        counts = scan_distributed(paths, detector, output, fmt, batch_size, workers, threshold, **reading)
    finally:
        shutdown_distributed()
    if counts is None:  # not rank 0: rank 0 reports and sets the status
        return Counter()
    console.print(f"{sum(counts.values())} files on {info.world_size} ranks: {tally(counts)}; results in {output}",
                  highlight=False)
    return counts


def tally(counts: Counter) -> str:
    """'N flagged fake, N real[, N uncertain], N errors' (uncertain: unfamiliar images with an undecided score)."""
    uncertain = f", {counts['uncertain']} uncertain" if counts["uncertain"] else ""
    return f"{counts['fake']} flagged fake, {counts['real']} real{uncertain}, {plural(counts['error'], 'error')}"


def _video_options(frames: int, every: Optional[int], top_k: int):
    from fakescope.video.scan import VideoOptions

    try:
        return VideoOptions(frames=frames, every=every, top_k=top_k)
    except ValueError as err:
        raise typer.BadParameter(f"--frames, --every, --top-k: {err}") from None


def _report_writer(report: Optional[Path], detector):
    """A streaming HTML report writer fed by the scan, or None without --report (then nothing is imported: the
    report's Grad-CAM needs PyTorch, a scan does not)."""
    if not report:
        return None
    from fakescope.evaluation.report import ReportWriter

    return ReportWriter(report, detector)


def _count_in_background(bars, task, paths: list[Path], skip) -> None:
    """Fill in the bar's total from a cheap listing pass; until then the bar is indeterminate."""
    import threading

    from fakescope.inference.inputs import count_files

    if not bars.disabled:
        threading.Thread(target=lambda: bars.progress.update(task, total=count_files(paths, skip)), daemon=True).start()


def _summary(results, output: Optional[Path], counts: Counter) -> None:
    """The table of the results kept (all of them, or the first TABLE_ROWS with --output) and the counts."""
    from fakescope.inference.output import results_table

    if results:
        console.print(results_table(results))
    if any(r.label_reason for r in results):
        console.print("* label set by --trust-credentials (label_reason in the JSON output); the score is the "
                      "pixels' own", highlight=False)
    if output is not None and sum(counts.values()) > len(results):
        console.print(f"(the first {len(results)} results; all are in {output})", highlight=False)
    console.print(f"{plural(sum(counts.values()), 'file')}: {tally(counts)}" + (f"; results in {output}" if output else ""),
                  highlight=False)
