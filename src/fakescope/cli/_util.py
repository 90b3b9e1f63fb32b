"""The Typer app, its consoles, and the typed options and choices the commands share (as spaCy's spacy/cli/_util.py).

Nothing here imports torch, timm, onnxruntime or the detector registry: ``fakescope --help`` and ``--version`` stay
fast. Commands import their heavy modules inside the command function.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Literal, Optional, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="fakescope: tell real images from deepfakes and tampered images, and show why.")
#: Columns of a table written to a file or a pipe (a terminal's own width otherwise, or COLUMNS): wide enough that file
#: names and headers are not folded at the 80 columns Rich assumes when it cannot ask a terminal.
PIPED_WIDTH = 200


def _console(stderr: bool = False) -> Console:
    piped = not (sys.stderr if stderr else sys.stdout).isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPED_WIDTH if piped else None)


console = _console()
err_console = _console(stderr=True)


def plural(n: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


log = logging.getLogger("fakescope")
T = TypeVar("T")


class _State:
    """Set once by the app callback (or a command's --quiet): what may be printed besides results."""

    quiet = False


state = _State()

# Choices: Typer validates them and --help lists them. tests/test_cli_package.py checks each against the library's own
# list, which these cannot import without making --help slow.
Backend = Literal["auto", "torch", "onnx"]
TableOrJson = Literal["table", "json"]
ScanFormat = Literal["table", "json", "jsonl", "csv"]
FailOn = Literal["fake", "error", "any"]
ExplainMethod = Literal["gradcam++", "gradcam", "scorecam", "ela", "noise", "copy-move"]
EnsembleMethod = Literal["mean", "majority", "weighted", "stacking"]
Strategy = Literal["none", "ddp", "localsgd", "pipeline", "tensor"]
GeneratorName = Literal["ae", "cgan", "dcgan", "vae"]
SynthKind = Literal["splice", "copy-move"]
#: An Enum, not a Literal: Typer takes no list of Literals (robustness --perturbation is repeatable)
Perturbation = Enum("Perturbation", {n: n for n in (
    "clean", "jpeg q95", "jpeg q75", "jpeg q50", "jpeg q30", "blur sigma 1", "blur sigma 2", "downscale 0.5",
    "downscale 0.25", "shortcut: q90, no metadata", "shortcut: 0.75x, q90, no metadata")}, type=str)

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps."
BACKEND_HELP = "onnx (ONNX Runtime, exported to the cache on first use), torch, or auto (onnx when it works)."
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check_device(value: Optional[str]) -> Optional[str]:
    if value is not None and not _DEVICE.fullmatch(value):
        raise typer.BadParameter(f"{value!r} is not one of {DEVICE_HELP}")
    return value


def _check_probability(value: Optional[float]) -> Optional[float]:
    """A threshold option's value, refused unless a probability. Checked here, not by Typer's min/max: its range
    check tells NaN that it "should be less than or equal to 1"."""
    if value is not None and not 0.0 <= value <= 1.0:  # False for NaN too
        raise typer.BadParameter(f"{value:g} is not a probability from 0 to 1")
    return value


def _set_quiet(value: bool) -> bool:
    if value:
        state.quiet = True
        setup_logging()
    return value


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Detector name or checkpoint path.")]
DeviceOpt = Annotated[str, typer.Option(help=DEVICE_HELP, callback=_check_device)]
OptionalDeviceOpt = Annotated[Optional[str], typer.Option(help=DEVICE_HELP, callback=_check_device)]
BackendOpt = Annotated[Backend, typer.Option(help=BACKEND_HELP)]
BatchSizeOpt = Annotated[int, typer.Option(help="Images per inference batch.", min=1)]
WorkersOpt = Annotated[Optional[int], typer.Option(help="Decoding processes (default: automatic).", min=0)]
TableOrJsonOpt = Annotated[TableOrJson, typer.Option("--format", "-f", help="Output format.")]
ThresholdOpt = Annotated[Optional[float], typer.Option(help="Fake if probability >= T, 0 to 1 (default: the model's).",
                                                       callback=_check_probability)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only results: no logs, notes or progress bars.",
                                        callback=_set_quiet, is_eager=True)]
DataOpt = Annotated[Path, typer.Option(help="Labelled folder (real/ + fake/ or another layout).")]


def setup_logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    level = logging.ERROR if state.quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", force=True,
                        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)])
    for noisy in ("PIL", "matplotlib", "timm"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error on stderr and return the exit to raise: ``raise fail(...) from None``."""
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def note(message: str) -> None:
    """A line on stderr for the person at the terminal (resuming, where a file went); silenced by --quiet."""
    if not state.quiet:
        err_console.print(message, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    note(f"[yellow]warning:[/] {message}")


def print_skipped(errors: Iterable[str]) -> None:
    """The files a command could not use, one line each, on stderr."""
    for e in errors:
        note(f"[yellow]skipped:[/] {e}")


class Bars:
    """Progress bars on stderr (see :func:`progress_bars`): a ``track`` for loops, a ``counter`` for callbacks."""

    def __init__(self, progress: Progress):
        self.progress = progress

    @property
    def disabled(self) -> bool:
        return self.progress.disable

    def counter(self, description: str, total: Optional[int] = None) -> Callable[..., None]:
        """A bar and the callback that advances it by one (takes and ignores any arguments, e.g. a result)."""
        task = self.progress.add_task(description, total=total, rate="")

        def advance(*_args) -> None:
            # ``tasks`` is a list in display order, not indexed by task id once another bar has been removed
            speed = next((t.speed for t in self.progress.tasks if t.id == task), None)
            self.progress.update(task, advance=1, rate=f"{speed:.1f}/s" if speed else "")

        advance.task = task  # type: ignore[attr-defined]
        return advance

    def track(self, iterable: Iterable[T], total: Optional[int] = None, description: str = "working") -> Iterator[T]:
        """Yield from ``iterable`` advancing a bar; the bar goes when the loop ends (fakescope.engine.loops.Track)."""
        advance = self.counter(description, total)
        try:
            for item in iterable:
                yield item
                advance()
        finally:
            self.progress.remove_task(advance.task)  # type: ignore[attr-defined]


@contextmanager
def progress_bars(transient: bool = True) -> Iterator[Bars]:
    """The one progress display of the CLI: Rich bars on stderr, off when stderr is not a terminal or with --quiet.
    Loops in library code that call :func:`fakescope.progress.track` inside this block get a bar too."""
    from fakescope.progress import reporting

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    # stdout is not redirected: scan rows stream there while the bars run
    with Progress(*columns, console=err_console, transient=transient, redirect_stdout=False,
                  disable=state.quiet or not err_console.is_terminal) as progress:
        bars = Bars(progress)
        with reporting(None if bars.disabled else bars.track):
            yield bars


def load_detector(model: str, device: str = "auto", backend: str = "torch"):
    """The detector, or a one-line error naming the model and the reason."""
    from fakescope.inference.detector import Detector, DetectorError

    try:
        return Detector.load(model, device=device, backend=backend)
    except DetectorError as err:
        raise fail(str(err)) from None


def write_json(payload) -> None:
    """A command's whole result as one JSON document on stdout."""
    import json
    import sys

    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def version_callback(value: bool) -> None:
    if value:
        from fakescope import __version__

        console.print(f"fakescope {__version__}", highlight=False)
        raise typer.Exit()
