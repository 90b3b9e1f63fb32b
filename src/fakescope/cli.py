"""The ``fakescope`` command line: one thin Typer command per job over importable functions."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="fakescope: tell real images from deepfakes and tampered images, and show why.")
console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("fakescope")


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", force=True,
                        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)])
    for noisy in ("PIL", "matplotlib", "timm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _progress(transient: bool = True) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=err_console, transient=transient, disable=not err_console.is_terminal)


def _load_detector(model: str, device: str = "auto"):
    from fakescope.inference.detector import Detector, DetectorError

    try:
        return Detector.load(model, device=device)
    except DetectorError as err:
        raise _fail(str(err)) from None


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    _setup_logging(verbose)


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Image files and folders (searched recursively).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Shipped detector name or checkpoint path.")] = "default",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json, jsonl or csv.")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write results here (default: stdout).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Fake if probability >= T (default: the model's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 32,
    workers: Annotated[Optional[int], typer.Option(help="Decoding processes (default: automatic).")] = None,
    resume: Annotated[bool, typer.Option(help="Skip files already in the --output JSONL file and append.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Score images and folders; one result per file, errors reported per file."""
    from fakescope.data.discovery import iter_image_files
    from fakescope.inference.output import FORMATS, read_jsonl_paths, repair_jsonl
    from fakescope.inference.scan import scan as run_scan

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise typer.BadParameter("--threshold must be between 0 and 1")
    if resume and (fmt != "jsonl" or output is None):
        raise typer.BadParameter("--resume needs --format jsonl and --output FILE")
    detector = _load_detector(model, device)
    for p in paths:
        if p.is_dir() and next(iter_image_files([p]), None) is None:
            err_console.print(f"[yellow]warning:[/] {p}: folder holds no image files", highlight=False)
    done = read_jsonl_paths(output) if resume else set()
    files = [f for f in _list_files(paths) if str(f) not in done]
    if done:
        err_console.print(f"resuming: {len(done)} files already scored, {len(files)} to go", highlight=False)

    results = []
    stream = None
    if fmt == "jsonl" and output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if resume:
            repair_jsonl(output)
        stream = open(output, "a" if resume else "w")
    try:
        with _progress() as progress:
            task = progress.add_task("scanning", total=len(files), rate="")
            for r in run_scan(files, detector, batch_size, workers, threshold):
                results.append(r)
                if stream:
                    stream.write(json.dumps(r.to_dict()) + "\n")
                    stream.flush()
                speed = progress.tasks[task].speed
                progress.update(task, advance=1, rate=f"{speed:.1f} files/s" if speed else "")
    finally:
        if stream:
            stream.close()
    _emit(results, fmt, output, stream is not None, detector.threshold if threshold is None else threshold)


def _list_files(paths: list[Path]) -> list[Path]:
    from fakescope.data.discovery import iter_image_files

    return list(iter_image_files(paths))


def _emit(results, fmt: str, output: Optional[Path], already_written: bool, threshold: float) -> None:
    from fakescope.inference.output import results_table, write_results

    if output is not None and not already_written:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", newline="") as f:
            write_results(results, fmt, f)
    if fmt == "table" or output is not None:
        if results:
            console.print(results_table(results, threshold))
        n_fake = sum(r.label == "fake" for r in results)
        n_err = sum(r.error is not None for r in results)
        console.print(f"{len(results)} files: {n_fake} flagged fake, {len(results) - n_fake - n_err} real, "
                      f"{n_err} errors" + (f"; results in {output}" if output else ""), highlight=False)
    else:
        write_results(results, fmt, sys.stdout)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    data: Annotated[Optional[list[Path]], typer.Option(help="Labelled folder (real/ + fake/ or another layout); repeat to train on several.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Registered detector name.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs (early stopping may end sooner).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per batch.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder: checkpoint, history.csv, config.yaml.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML recipe (see configs/).")] = None,
    pretrained: Annotated[Optional[str], typer.Option(help="'true' for packaged/cached ImageNet weights, or a file.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or mps.")] = None,
) -> None:
    """Train a detector. Any config key can be overridden: --optim.lr 3e-4 --augment.enabled false."""
    from fakescope.config import load_config, parse_dotted_args
    from fakescope.data.discovery import LayoutError
    from fakescope.engine.train import fit

    try:
        overrides = parse_dotted_args(list(ctx.args))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    named = {"data.path": data and [str(d) for d in data], "model.name": model, "epochs": epochs, "batch_size": batch_size,
             "out": out and str(out), "model.pretrained": pretrained, "device": device}
    overrides.update({k: v for k, v in named.items() if v is not None})
    try:
        cfg = load_config(config, overrides)
    except (KeyError, ValueError, OSError) as err:
        raise typer.BadParameter(str(err)) from None
    if not cfg.data.path:
        raise typer.BadParameter("--data is required (or data.path in --config)")

    def on_epoch(row: dict) -> None:
        console.print(f"epoch {row['epoch']:>3}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}  "
                      f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} auc {row['val_roc_auc']:.3f}  "
                      f"{row['train_images_per_s']:.0f} img/s  {row['seconds']:.0f}s", highlight=False)

    with _progress() as progress:
        def track(iterable, total: int, description: str):
            task = progress.add_task(description, total=total, rate="")
            for item in iterable:
                yield item
                progress.update(task, advance=1)
            progress.remove_task(task)

        try:
            result = fit(cfg, track=track, on_epoch=on_epoch)
        except (LayoutError, FileNotFoundError, KeyError) as err:
            raise _fail(str(err).strip("'\"")) from None
    m = result.metrics
    if m:
        console.print(f"best checkpoint: {result.checkpoint}  (validation accuracy {m['accuracy']:.3f}, "
                      f"ROC-AUC {m['roc_auc'] or float('nan'):.3f}, ECE {m['ece_uncalibrated']:.3f} -> "
                      f"{m['ece']:.3f} at temperature {m['temperature']:.2f})", highlight=False)


@app.command()
def evaluate(
    data: Annotated[list[Path], typer.Option(help="Labelled folder(s); repeat for a cross-dataset table.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Detector name(s) or checkpoint path(s).")] = ["default"],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    threshold: Annotated[Optional[float], typer.Option(help="Decision threshold (default: the model's).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the JSON here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Accuracy, precision, recall, F1, ROC-AUC, AP, EER, ECE and the confusion matrix on labelled folders."""
    from fakescope.data.discovery import LayoutError
    from fakescope.evaluation.evaluate import evaluate_detector
    from fakescope.evaluation.tables import cross_table, metrics_table

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    rows = []
    for name in model:
        detector = _load_detector(name, device)
        for folder in data:
            try:
                metrics = evaluate_detector(detector, folder, threshold, batch_size)
            except (LayoutError, ValueError) as err:
                raise _fail(str(err)) from None
            for e in metrics["errors"]:
                err_console.print(f"[yellow]skipped:[/] {e}", highlight=False)
            rows.append({"model": detector.name, "data": str(folder), **metrics})
    payload = rows[0] if len(rows) == 1 else rows
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2) + "\n")
    if fmt == "json":
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        console.print(metrics_table(rows))
        if len(rows) > 1:
            console.print(cross_table(rows))


@app.command()
def models(fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table") -> None:
    """List every registered detector, its size, input and whether weights ship with fakescope."""
    from rich.table import Table

    from fakescope.inference.catalog import detector_catalog

    rows = detector_catalog()
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("name", "params", "input", "shipped", "description")
    for r in rows:
        shipped = ("yes (default)" if r["default"] else "yes") if r["shipped"] else "-"
        table.add_row(r["name"], f"{r['params']:,}", f"{r['input_mode']} {r['input_size']}", shipped, r["description"])
    console.print(table)
