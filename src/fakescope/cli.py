"""The ``fakescope`` command line: one thin Typer command per job over importable functions."""
from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fakescope.allocator import reuse_freed_memory

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="fakescope: tell real images from deepfakes and tampered images, and show why.")
console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("fakescope")
BACKEND_HELP = "torch, onnx (ONNX Runtime, exported to the cache on first use) or auto (onnx when it works)."
#: Results a scan with --output prints as a table (all of them are in the file).
TABLE_ROWS = 50


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


def _load_detector(model: str, device: str = "auto", backend: str = "torch"):
    from fakescope.inference.detector import Detector, DetectorError

    try:
        return Detector.load(model, device=device, backend=backend)
    except DetectorError as err:
        raise _fail(str(err)) from None


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    from fakescope.inference.paths import tolerant_stdio

    tolerant_stdio()
    _setup_logging(verbose)
    reuse_freed_memory()


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Image and video files and folders (searched recursively).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Shipped detector name or checkpoint path.")] = "default",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json, jsonl or csv.")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write results here (default: stdout).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Fake if probability >= T (default: the model's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 32,
    workers: Annotated[Optional[int], typer.Option(help="Decoding processes (default: automatic).")] = None,
    resume: Annotated[bool, typer.Option(help="Skip files already in the --output JSONL file and append.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    report: Annotated[Optional[Path], typer.Option(help="Also write a self-contained HTML report here (thumbnails, ELA, Grad-CAM, metadata).")] = None,
    frames: Annotated[int, typer.Option(help="Videos: frames sampled, evenly spaced, per video.")] = 32,
    every: Annotated[Optional[int], typer.Option(help="Videos: sample every K-th frame instead of --frames.")] = None,
    top_k: Annotated[int, typer.Option(help="Videos: a video's score is the mean of its K highest frame scores.")] = 5,
    distributed: Annotated[bool, typer.Option(help="Under torchrun: each rank scores its share of the files, rank 0 merges them into --output.")] = False,
    provenance: Annotated[bool, typer.Option("--provenance/--no-provenance", help="Read what each image declares about its origin (C2PA Content Credentials, XMP, generator settings, camera EXIF) beside the score; never changes the score.")] = True,
    trust_credentials: Annotated[bool, typer.Option(help="Label 'fake' an image whose valid C2PA manifest declares AI generation (the score stays the pixels'; label_reason says why).")] = False,
) -> None:
    """Score images, videos and folders; one result per file (a video's has its frames), errors per file, and
    each image's provenance (what the file declares about its origin; docs/provenance.md)."""
    from fakescope.inference.output import FORMATS, ResultWriter, resume_jsonl
    from fakescope.inference.scan import scan as run_scan
    from fakescope.inference.scan import walk_image_files

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise typer.BadParameter("--threshold must be between 0 and 1")
    if resume and (fmt != "jsonl" or output is None):
        raise typer.BadParameter("--resume needs --format jsonl and --output FILE")
    if fmt == "table" and output is not None:
        raise typer.BadParameter("--output needs --format json, jsonl or csv")
    video = _video_options(frames, every, top_k)
    if trust_credentials and not provenance:
        raise typer.BadParameter("--trust-credentials needs provenance (drop --no-provenance)")
    reading = {"provenance": provenance, "trust_credentials": trust_credentials}
    if distributed:
        _scan_distributed(paths, model, fmt, output, threshold, batch_size, workers, device, backend, video, reading)
        return
    detector = _load_detector(model, device, backend)
    for p in paths:
        if p.is_dir() and next(walk_image_files([p]), None) is None:
            err_console.print(f"[yellow]warning:[/] {p}: folder holds no image or video files", highlight=False, soft_wrap=True)
    done = resume_jsonl(output) if resume else None  # 8 bytes per finished file
    if done:
        err_console.print(f"resuming: {len(done)} files already scored", highlight=False)

    results, counts = [], Counter()
    stream = file_writer = None
    if output is not None and fmt != "table":  # results go to disk as they come: memory stays flat
        output.parent.mkdir(parents=True, exist_ok=True)
        stream = open(output, "a" if resume else "w", newline="", encoding="utf-8")
        file_writer = ResultWriter(stream, fmt)
    try:
        with _progress() as progress:
            task = progress.add_task("scanning", total=None, rate="")
            _count_in_background(progress, task, paths, done)
            writer = _report_writer(report, detector, threshold)
            for r in run_scan(paths, detector, batch_size, workers, threshold, skip=done,
                              on_result=writer and writer.add, video=video, **reading):
                counts[r.label or "error"] += 1
                if file_writer:
                    file_writer.write(r)
                if not file_writer or len(results) < TABLE_ROWS:  # with a file, only what the table shows
                    results.append(r)
                speed = progress.tasks[task].speed
                progress.update(task, advance=1, rate=f"{speed:.1f} files/s" if speed else "")
    except KeyboardInterrupt:
        n = sum(counts.values())
        hint = "" if not stream else ("; rerun with --resume to continue" if fmt == "jsonl"
                                      else f"; the {n} results so far are in {output}")
        raise _fail(f"interrupted after {n} files{hint}", 130) from None
    finally:
        if file_writer:
            file_writer.close()  # a JSON list is ended even after Ctrl-C, so the file stays valid
        if stream:
            stream.close()
    _emit(results, fmt, output, stream is not None, detector.threshold if threshold is None else threshold, counts)
    if writer:
        err_console.print(f"report: {writer.close()}", highlight=False)


def _scan_distributed(paths: list[Path], model: str, fmt: str, output: Optional[Path], threshold: Optional[float],
                      batch_size: int, workers: Optional[int], device: str, backend: str, video,
                      reading: dict) -> None:
    """``scan --distributed``: the rank's share of the files, merged by rank 0 (see engine.distributed)."""
    from fakescope.engine.distributed import (
        barrier,
        init_distributed,
        local_device,
        scan_distributed,
        shutdown_distributed,
    )

    if output is None or fmt == "table":
        raise typer.BadParameter("--distributed needs --output FILE and --format json, jsonl or csv")
    info = init_distributed(device)
    try:
        if info.rank != 0:
            barrier()  # rank 0 loads first: it alone exports a missing ONNX cache file, the others then read it
        detector = _load_detector(model, local_device(device), backend)
        if info.rank == 0:
            barrier()
        counts = scan_distributed(paths, detector, output, fmt, batch_size, workers, threshold, video=video, **reading)
    finally:
        shutdown_distributed()
    if counts is not None:
        console.print(f"{sum(counts.values())} files on {info.world_size} ranks: {counts['fake']} flagged fake, "
                      f"{counts['real']} real, {counts['error']} errors; results in {output}", highlight=False)


def _video_options(frames: int, every: Optional[int], top_k: int):
    from fakescope.video.scan import VideoOptions

    try:
        return VideoOptions(frames=frames, every=every, top_k=top_k)
    except ValueError as err:
        raise typer.BadParameter(f"--frames, --every, --top-k: {err}") from None


def _report_writer(report: Optional[Path], detector, threshold: Optional[float]):
    """A streaming HTML report writer fed by the scan, or None without --report (then nothing is imported: the
    report's Grad-CAM needs PyTorch, a scan does not)."""
    if not report:
        return None
    from fakescope.evaluation.report import ReportWriter

    return ReportWriter(report, detector, threshold)


def _count_in_background(progress: Progress, task, paths: list[Path], skip) -> None:
    """Fill in the bar's total from a cheap listing pass; until then the bar is indeterminate."""
    import threading

    from fakescope.inference.scan import count_files

    if not progress.disable:
        threading.Thread(target=lambda: progress.update(task, total=count_files(paths, skip)), daemon=True).start()


def _emit(results, fmt: str, output: Optional[Path], already_written: bool, threshold: float,
          counts: Optional[Counter] = None) -> None:
    from fakescope.inference.output import results_table, write_results

    if output is not None and not already_written:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", newline="", encoding="utf-8") as f:
            write_results(results, fmt, f)
    if fmt == "table" or output is not None:
        counts = counts if counts is not None else Counter(r.label or "error" for r in results)
        if results:
            console.print(results_table(results, threshold))
        if any(r.label_reason for r in results):
            console.print("* label set by --trust-credentials (label_reason in the JSON output); the score is the "
                          "pixels' own", highlight=False)
        if already_written and sum(counts.values()) > len(results):
            console.print(f"(the first {len(results)} results; all are in {output})", highlight=False)
        console.print(f"{sum(counts.values())} files: {counts['fake']} flagged fake, {counts['real']} real, "
                      f"{counts['error']} errors" + (f"; results in {output}" if output else ""), highlight=False)
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
    strategy: Annotated[Optional[str], typer.Option(help="Parallel training on torch.distributed: none, ddp, localsgd, pipeline or tensor (under torchrun, or with --nproc).")] = None,
    nproc: Annotated[Optional[int], typer.Option(help="Start this many local processes for --strategy (like torchrun --nproc-per-node).")] = None,
) -> None:
    """Train a detector. Any config key can be overridden: --optim.lr 3e-4 --augment.enabled false."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from fakescope.config import load_config, parse_dotted_args
    from fakescope.data.discovery import LayoutError
    from fakescope.engine.distributed import shutdown_distributed
    from fakescope.engine.parallel import launch_fit
    from fakescope.engine.train import fit

    try:
        overrides = parse_dotted_args(list(ctx.args))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    named = {"data.path": data and [str(d) for d in data], "model.name": model, "epochs": epochs, "batch_size": batch_size,
             "out": out and str(out), "model.pretrained": pretrained, "device": device, "strategy": strategy}
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
            result = launch_fit(cfg, nproc) if nproc else fit(cfg, track=track, on_epoch=on_epoch)
        except (LayoutError, FileNotFoundError, KeyError, ValueError, ChildFailedError) as err:
            raise _fail(str(err).strip("'\"")) from None
        finally:
            shutdown_distributed()  # under torchrun: leave the group this rank joined
    m = result.metrics
    if m:
        console.print(f"best checkpoint: {result.checkpoint}  (validation accuracy {m['accuracy']:.3f}, "
                      f"ROC-AUC {m['roc_auc'] or float('nan'):.3f}, ECE {m['ece_uncalibrated']:.3f} -> "
                      f"{m['ece']:.3f} at temperature {m['temperature']:.2f})", highlight=False)
        if m.get("fpr_held_out") is not None:
            console.print(f"threshold {m['threshold']:.3f}: flags {1 - m['accuracy_real']:.1%} of the validation "
                          f"reals it was chosen on, {m['fpr_held_out']:.1%} when chosen on the others "
                          "(5-fold cross-fitted: the rate to expect on unseen photos)", highlight=False)


@app.command()
def evaluate(
    data: Annotated[list[Path], typer.Option(help="Labelled folder(s); repeat for a cross-dataset table.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Detector name(s) or checkpoint path(s).")] = ["default"],  # noqa: B006 (Typer reads the default)
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    threshold: Annotated[Optional[float], typer.Option(help="Decision threshold (default: the model's).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the JSON here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    plots: Annotated[Optional[Path], typer.Option(help="Write ROC, PR, confusion, reliability and example PNGs here.")] = None,
    table_out: Annotated[Optional[Path], typer.Option(help="Write the model x dataset ROC-AUC table to PREFIX.md and PREFIX.json.")] = None,
) -> None:
    """Accuracy, precision, recall, F1, ROC-AUC, AP, EER, ECE and the confusion matrix on labelled folders."""
    from fakescope.data.discovery import LayoutError
    from fakescope.evaluation.evaluate import evaluate_detector
    from fakescope.evaluation.tables import cross_table, metrics_table

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    rows = []
    for name in model:
        detector = _load_detector(name, device, backend)
        for folder in data:
            scored = []
            try:
                metrics = evaluate_detector(detector, folder, threshold, batch_size,
                                            on_result=scored.append if plots else None)
            except (LayoutError, ValueError) as err:
                raise _fail(str(err)) from None
            if plots:
                _evaluation_plots(scored, folder, metrics["threshold"], plots, detector.name, len(model) * len(data) > 1)
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
    if table_out:
        from fakescope.evaluation.plots import write_cross_table

        err_console.print("cross-dataset table: " + ", ".join(map(str, write_cross_table(rows, table_out))), highlight=False)


def _evaluation_plots(scored, folder: Path, threshold: float, plots: Path, model_name: str, several: bool) -> None:
    from fakescope.evaluation.plots import plot_folder_results

    out = plots / f"{Path(model_name).stem}__{folder.resolve().name}" if several else plots
    written = plot_folder_results(scored, folder, threshold, out)
    err_console.print(f"plots: {', '.join(p.name for p in written.values())} in {out}", highlight=False)


@app.command()
def threshold(
    paths: Annotated[list[Path], typer.Argument(help="Images, folders or videos you know are real.", exists=True)],
    model: Annotated[str, typer.Option("--model", "-m", help="Detector name or checkpoint path.")] = "default",
    fpr: Annotated[float, typer.Option(help="Share of these reals the threshold may flag as fake.")] = 0.05,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
) -> None:
    """Choose a decision threshold on your own real photos: on a kind of photo the detector never trained on, its
    shipped threshold can flag far more than 5% of them. Pass the result to scan --threshold."""
    from fakescope.evaluation.evaluate import threshold_for_reals

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    if not 0.0 <= fpr < 1.0:
        raise typer.BadParameter(f"--fpr must be in [0, 1), got {fpr}")
    detector = _load_detector(model, device, backend)
    with _progress() as progress:
        task = progress.add_task("scoring reals", total=None, rate="")
        try:
            out = threshold_for_reals(detector, paths, fpr, batch_size,
                                      on_result=lambda _: progress.update(task, advance=1))
        except ValueError as err:
            raise _fail(str(err)) from None
    for e in out["errors"]:
        err_console.print(f"[yellow]skipped:[/] {e}", highlight=False)
    if fmt == "json":
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        _print_threshold(out, model)
    if out["warning"]:
        err_console.print(f"[yellow]warning:[/] {out['warning']}", highlight=False, soft_wrap=True)


def _print_threshold(out: dict, model: str) -> None:
    held = "" if out["held_out_fpr"] is None else (
        f"; on other photos of this kind expect about {out['held_out_fpr']:.1%} (5-fold cross-fitted)")
    console.print(f"{out['n']} real images scored with {out['model']}: its threshold {out['model_threshold']:.3f} "
                  f"flags {out['flagged_at_model_threshold']:.1%} of them.\n"
                  f"threshold {out['threshold']:.4f} flags {out['flagged_at_threshold']:.1%}{held}.\n"
                  f"use: fakescope scan PATH --model {model} --threshold {out['threshold']:.4f}", highlight=False, soft_wrap=True)


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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Detector name or checkpoint path (default: FAKESCOPE_MODEL or the shipped default).")] = None,
) -> None:
    """Serve the REST API (/docs) and the web page (/). Limits and API key: FAKESCOPE_* variables."""
    try:
        from fakescope.serve import Settings, run
    except ImportError as err:
        raise _fail(f"the web service needs its extra packages: pip install 'fakescope[serve]' ({err})") from None
    try:
        settings = Settings.from_env(model=model)
    except ValueError as err:
        raise _fail(str(err)) from None
    run(settings, host=host, port=port)


@app.command("train-generator")
def train_generator_cmd(
    data: Annotated[Path, typer.Option(help="Folder of images (cgan: real/ + fake/ or one sub-folder per class).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Generator: dcgan, cgan, ae or vae.")] = "dcgan",
    epochs: Annotated[int, typer.Option(help="Passes over the images.")] = 10,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint, sample grids, losses.csv/png.")] = Path("runs/generator"),
    size: Annotated[int, typer.Option(help="Image side in px (a power of two >= 16).")] = 64,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: 2e-4 for GANs, 1e-3 for autoencoders).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Base channel width (default: the model's).")] = None,
    latent_dim: Annotated[Optional[int], typer.Option(help="Latent size (default: the model's).")] = None,
    max_images: Annotated[Optional[int], typer.Option(help="Use at most this many images.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Train an image generator (DCGAN, conditional GAN, autoencoder or VAE) on a folder of images."""
    from fakescope.data.discovery import LayoutError
    from fakescope.generators import list_generators
    from fakescope.generators.train import GeneratorTrainConfig, train_generator

    if model not in list_generators():
        raise typer.BadParameter(f"--model must be one of {', '.join(list_generators())}")
    kwargs = {k: v for k, v in {"width": width, "latent_dim": latent_dim}.items() if v is not None}
    cfg = GeneratorTrainConfig(model=model, data=str(data), out=str(out), epochs=epochs, size=size,
                               batch_size=batch_size, lr=lr, seed=seed, max_images=max_images, device=device,
                               model_kwargs=kwargs)

    def on_epoch(row: dict) -> None:
        losses = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds", "images_per_s"))
        console.print(f"epoch {row['epoch']:>3}  {losses}  {row['images_per_s']:.0f} img/s  {row['seconds']:.0f}s",
                      highlight=False)

    try:
        result = train_generator(cfg, on_epoch)
    except (LayoutError, FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    console.print(f"checkpoint: {result.checkpoint}  (sample grids and loss curves in {result.out})", highlight=False)


@app.command()
def generate(
    model: Annotated[str, typer.Option("--model", "-m", help="Generator checkpoint from train-generator.")],
    out: Annotated[Path, typer.Option(help="Folder for the images.")],
    num_images: Annotated[int, typer.Option("--num-images", "-n", help="How many images.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same images.")] = 0,
    label: Annotated[Optional[str], typer.Option(help="Class name or index (conditional models only).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="png or jpg.")] = "png",
    quality: Annotated[int, typer.Option(help="JPEG quality for --format jpg.")] = 95,
    resize: Annotated[Optional[int], typer.Option(help="Resize to this side (bicubic), e.g. to match real data.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 64,
    device: Annotated[str, typer.Option(help="cpu (reproducible), auto, cuda or mps.")] = "cpu",
) -> None:
    """Write images sampled from a trained generator."""
    from fakescope.checkpoint import CheckpointError
    from fakescope.generators.sample import generate_images

    if num_images < 1:
        raise typer.BadParameter("--num-images must be at least 1")
    try:
        paths = generate_images(model, num_images, out, seed, label, batch_size, fmt, quality, resize, device=device)
    except (CheckpointError, ValueError) as err:
        raise _fail(str(err)) from None
    console.print(f"wrote {len(paths)} images to {out}", highlight=False)


@app.command()
def synth(
    data: Annotated[Path, typer.Option(help="Folder of real images to tamper.")],
    out: Annotated[Path, typer.Option(help="Output: real/, fake/, masks/ and manifest.csv.")],
    kind: Annotated[str, typer.Option(help="splice or copy-move.")] = "splice",
    count: Annotated[Optional[int], typer.Option(help="Tampered images to make (default: one per real image).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    blend_p: Annotated[float, typer.Option(help="Probability of blended (feathered) edges instead of hard ones.")] = 0.5,
    recompress_p: Annotated[float, typer.Option(help="Probability of an extra JPEG round at quality 60-95 (reals and fakes alike).")] = 0.0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jpg or png (lossless: masks equal the pixel difference).")] = "jpg",
    quality: Annotated[int, typer.Option(help="JPEG quality of the output.")] = 95,
    shapes: Annotated[str, typer.Option(help="Comma-separated region shapes.")] = "rectangle,ellipse,polygon",
) -> None:
    """Make tampered images with exact masks from real images, in a layout 'fakescope train' reads."""
    from fakescope.data.synth import SynthConfig, synthesize

    try:
        cfg = SynthConfig(kind=kind, count=count, seed=seed, blend_p=blend_p, recompress_p=recompress_p,
                          image_format=fmt, quality=quality, shapes=tuple(s.strip() for s in shapes.split(",")))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    with _progress() as progress:
        task = progress.add_task("tampering", total=count, rate="")
        try:
            result = synthesize(data, out, cfg, on_item=lambda: progress.update(task, advance=1))
        except (FileNotFoundError, ValueError) as err:
            raise _fail(str(err)) from None
    console.print(f"{result.n_fake} tampered images from {result.n_real} reals in {result.out} "
                  f"({len(result.skipped)} unreadable files skipped)", highlight=False)


@app.command()
def fid(
    dir_a: Annotated[Path, typer.Argument(help="First image folder.")],
    dir_b: Annotated[Path, typer.Argument(help="Second image folder.")],
    features: Annotated[str, typer.Option(help="Detector name or checkpoint whose pooled features are compared.")] = "default",
    inception_weights: Annotated[Optional[Path], typer.Option(help="Local torchvision Inception-v3 weights: use its features instead.")] = None,
    max_images: Annotated[Optional[int], typer.Option(help="Use the first N images of each folder.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Fréchet distance between the feature distributions of two image folders; names its feature extractor."""
    from fakescope.checkpoint import CheckpointError
    from fakescope.generators.fid import build_extractor, compute_fid
    from fakescope.inference.detector import DetectorError

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    try:
        extractor = build_extractor(features, inception_weights, device)
        result = compute_fid(dir_a, dir_b, extractor, batch_size, max_images)
    except (DetectorError, CheckpointError, FileNotFoundError, ValueError, RuntimeError) as err:
        raise _fail(str(err)) from None
    if fmt == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    console.print(f"FID {result.fid:.3f}  ({result.n_a} vs {result.n_b} images; features: {result.features}, "
                  f"{result.dim}-d)", highlight=False)


@app.command()
def robustness(
    data: Annotated[Path, typer.Option(help="Labelled folder (real/ + fake/ or another layout).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Detector name or checkpoint path.")] = "default",
    out: Annotated[Path, typer.Option(help="Folder for robustness.json, robustness.md and robustness.png.")] = Path("robustness"),
    perturbation: Annotated[Optional[list[str]], typer.Option(help="Only this perturbation (repeatable; default: all).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use at most N images (class shares kept, fixed seed).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Decision threshold (default: the model's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 32,
    workers: Annotated[Optional[int], typer.Option(help="Decoding processes (default: automatic).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Metrics under JPEG q95/75/50/30, blur sigma 1/2, downscale 0.5/0.25 and the two shortcut tests (JPEG q90, no
    metadata; the same after shrinking to 0.75x, which also removes the first compression's traces)."""
    from fakescope.data.discovery import LayoutError, discover_samples
    from fakescope.evaluation.robustness import (
        PERTURBATIONS,
        robustness_sweep,
        robustness_table,
        subsample,
        write_robustness,
    )

    names = perturbation or list(PERTURBATIONS)
    unknown = [n for n in names if n not in PERTURBATIONS]
    if unknown:
        raise typer.BadParameter(f"unknown perturbation(s) {unknown}; choose from: {', '.join(PERTURBATIONS)}")
    try:
        samples = subsample(discover_samples(data), limit)
    except LayoutError as err:
        raise _fail(str(err)) from None
    detector = _load_detector(model, device)
    with _progress() as progress:
        task = progress.add_task("perturbed scans", total=len(samples) * len(names), rate="")
        try:
            rows = robustness_sweep(detector, samples, names, threshold, batch_size, workers,
                                    on_result=lambda _: progress.update(task, advance=1))
        except ValueError as err:
            raise _fail(str(err)) from None
    paths = write_robustness(rows, out, title=f"Robustness of {detector.name} on {data} ({len(samples)} images)")
    console.print(robustness_table(rows))
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}", highlight=False)


@app.command()
def shortcuts(
    data: Annotated[Path, typer.Option(help="Labelled folder (real/ + fake/ or another layout).")],
    limit: Annotated[Optional[int], typer.Option(help="Use at most N images (class shares kept, fixed seed).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Validation share of the split (as fakescope train makes it).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Split seed (fakescope train's data.seed).")] = 0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    workers: Annotated[Optional[int], typer.Option(help="Processes computing the features (default: automatic).")] = None,
) -> None:
    """How well the file header (4 numbers) and the compression history in the pixels (27 numbers) alone tell the
    classes apart, as stored and after each shortcut test: where they score high, a detector may be reading them."""
    from fakescope.data.discovery import LayoutError, discover_samples
    from fakescope.data.splits import stratified_split
    from fakescope.evaluation.robustness import subsample
    from fakescope.evaluation.shortcuts import CONDITIONS, shortcut_baselines

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    try:
        train, val = stratified_split(subsample(discover_samples(data), limit), val_fraction, seed)
    except (LayoutError, ValueError) as err:
        raise _fail(str(err)) from None
    with _progress() as progress:
        task = progress.add_task("features", total=(len(train) + len(val)) * len(CONDITIONS), rate="")
        out = shortcut_baselines(train, val, workers=workers, on_file=lambda: progress.update(task, advance=1))
    for e in out["errors"]:
        err_console.print(f"[yellow]skipped:[/] {e}", highlight=False)
    if fmt == "json":
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    _print_shortcuts(out["rows"], data)
    if out["warning"]:
        err_console.print(f"[yellow]warning:[/] {out['warning']}", highlight=False, soft_wrap=True)


def _print_shortcuts(rows: list[dict], data: Path) -> None:
    from rich.table import Table

    table = Table("condition", "n train / val", "metadata", "compression history",
                  title=f"Shortcut baselines on {data}: validation ROC-AUC")
    table.columns[0].no_wrap = True
    for r in rows:
        table.add_row(r["condition"], f"{r['n_train']} / {r['n_val']}",
                      *("-" if r[k] is None else f"{r[k]:.3f}" for k in ("metadata", "compression history")))
    console.print(table)
    console.print("Near 0.5: nothing to read there. A detector's ROC-AUC under a condition where either baseline is "
                  "high may come from the same numbers rather than from the content.", highlight=False, soft_wrap=True)


@app.command("plot-history")
def plot_history_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Training run folder holding history.csv.")],
    out: Annotated[Optional[Path], typer.Option(help="PNG to write (default: RUN_DIR/history.png).")] = None,
) -> None:
    """Plot loss and accuracy per epoch of a training run."""
    from fakescope.evaluation.plots import plot_history

    try:
        path = plot_history(run_dir, out)
    except (OSError, ValueError, KeyError) as err:
        raise _fail(f"{run_dir}: cannot plot the history: {err}") from None
    console.print(f"wrote {path}", highlight=False)


@app.command()
def explain(
    images: Annotated[list[Path], typer.Argument(help="Image files and folders.")],
    method: Annotated[Optional[str], typer.Option(help="gradcam++ (the default), gradcam, scorecam (slow on wide layers), ela or noise.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Detector name or checkpoint path (CAM methods).")] = "default",
    out: Annotated[Path, typer.Option(help="Folder for the <name>_<method>.png overlays.")] = Path("explain"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Show why: class-activation overlays of the fake class, or the model-free ELA and noise views."""
    from fakescope.explain import CAM_METHODS, DEFAULT_CAM, METHODS, ExplainError, explain_files

    method = method or DEFAULT_CAM
    if method not in METHODS:
        raise typer.BadParameter(f"--method must be one of {', '.join(METHODS)}")
    detector = _load_detector(model, device) if method in CAM_METHODS else None
    try:
        done = explain_files(images, method, out, detector)
    except ExplainError as err:
        raise _fail(str(err)) from None
    for d in done:
        if d.error:
            err_console.print(f"[yellow]skipped:[/] {d.path}: {d.error}", highlight=False)
    written = sum(d.output is not None for d in done)
    console.print(f"{written} {method} images written to {out}; {len(done) - written} errors", highlight=False)
    if not written:
        raise typer.Exit(1)


def _compression_report(result, title: str) -> None:
    from fakescope.compress.report import rich_table

    console.print(rich_table(result.rows))
    console.print(f"{title}: {result.path}", highlight=False)


@app.command()
def export(
    model: Annotated[str, typer.Option("--model", "-m", help="Detector name or checkpoint path.")] = "default",
    fmt: Annotated[str, typer.Option("--format", "-f", help="Export format (onnx).")] = "onnx",
    quantize: Annotated[Optional[str], typer.Option(help="int8: ONNX Runtime static quantization.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output .onnx file (default: the cache path --backend onnx uses).")] = None,
    calibration_data: Annotated[Optional[list[Path]], typer.Option(help="Labelled folder(s) to calibrate int8 on (training split) and to report the accuracy change on (validation split).")] = None,
    calibration_samples: Annotated[int, typer.Option(help="Images used for int8 calibration.")] = 64,
    eval_samples: Annotated[int, typer.Option(help="Validation images for the int8 accuracy report.")] = 400,
    ship: Annotated[bool, typer.Option(help="Write the ONNX model beside the shipped weights (src/fakescope/weights/) and record its checksum in their header, so scans export nothing.")] = False,
) -> None:
    """Export a detector to ONNX (dynamic batch axis, metadata embedded), verified against PyTorch."""
    from fakescope.inference.detector import DetectorError
    from fakescope.inference.onnx import FP32_TOLERANCE, export_detector, onnx_available

    if fmt != "onnx":
        raise typer.BadParameter("--format must be onnx")
    if quantize not in (None, "int8"):
        raise typer.BadParameter("--quantize must be int8")
    if ship and (quantize or out):
        raise typer.BadParameter("--ship writes the fp32 model beside the weights: no --quantize or --out")
    if not onnx_available():
        raise _fail("ONNX export needs onnx and onnxruntime: pip install onnx onnxruntime onnxscript")
    try:
        if ship:
            from fakescope.inference.shipped import ship_onnx

            shipped = ship_onnx(model)
            console.print(f"shipped {shipped.path} (sha256 {shipped.sha256}, recorded in the weights' header); "
                          f"largest fake-probability difference to PyTorch: {shipped.max_difference:.2e}",
                          highlight=False)
            return
        if quantize:
            from fakescope.compress.quantize import export_int8

            result = export_int8(model, calibration_data or [], calibration_samples, out, eval_samples)
            return _compression_report(result, "int8 ONNX model")
        path, diff = export_detector(model, out)
    except (DetectorError, ValueError) as err:
        raise _fail(str(err)) from None
    console.print(f"exported {path}; largest fake-probability difference to PyTorch: {diff:.2e} "
                  f"(tolerance {FP32_TOLERANCE:g})", highlight=False)


@app.command()
def prune(
    model: Annotated[str, typer.Option("--model", "-m", help="Detector name or checkpoint path.")],
    amount: Annotated[float, typer.Option(help="Fraction of conv/linear weights to zero (global L1).")] = 0.3,
    out: Annotated[Optional[Path], typer.Option(help="Pruned checkpoint (default: <model>-pruned<N>.safetensors).")] = None,
    finetune_data: Annotated[Optional[list[Path]], typer.Option(help="Labelled folder(s) to fine-tune on (training split).")] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs (with the pruning masks kept).")] = 1,
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate.")] = 1e-4,
    data: Annotated[Optional[list[Path]], typer.Option(help="Labelled folder(s) for the before/after figures (validation split; default: --finetune-data).")] = None,
    eval_samples: Annotated[int, typer.Option(help="Validation images for the before/after figures.")] = 400,
) -> None:
    """Prune a detector (global L1 unstructured), optionally fine-tune, save a normal checkpoint."""
    from fakescope.compress.prune import prune_checkpoint
    from fakescope.data.discovery import LayoutError
    from fakescope.inference.detector import DetectorError

    out = out or Path(f"{Path(model).stem}-pruned{round(amount * 100)}.safetensors")
    try:
        result = prune_checkpoint(model, amount, out, data or [], finetune_data or [], epochs, lr, eval_samples)
    except (DetectorError, LayoutError, ValueError) as err:
        raise _fail(str(err)) from None
    _compression_report(result, "pruned checkpoint")


@app.command()
def distill(
    teacher: Annotated[str, typer.Option(help="Teacher: detector name or checkpoint path.")],
    student: Annotated[str, typer.Option(help="Student: any registered detector name.")],
    data: Annotated[list[Path], typer.Option(help="Labelled folder(s): training split to distil on, validation split to report on.")],
    out: Annotated[Path, typer.Option(help="Student checkpoint.")] = Path("distilled.safetensors"),
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 3,
    temperature: Annotated[float, typer.Option(help="Softening temperature T (the KL term is scaled by T^2).")] = 4.0,
    alpha: Annotated[float, typer.Option(help="Weight of the distillation term; 1 - alpha weights the label loss.")] = 0.7,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    size: Annotated[Optional[int], typer.Option(help="Student input size (default: its registered size).")] = None,
    max_per_class: Annotated[Optional[int], typer.Option(help="Use at most this many training images per class.")] = None,
    workers: Annotated[int, typer.Option(help="Decoding processes.")] = 0,
) -> None:
    """Distil a teacher detector into a (smaller) student: KL at temperature T plus the hard label loss."""
    from fakescope.compress.distill import DistillConfig
    from fakescope.compress.distill import distill as run_distill
    from fakescope.data.discovery import LayoutError
    from fakescope.inference.detector import DetectorError

    cfg = DistillConfig(teacher, student, [str(d) for d in data], str(out), epochs, batch_size, lr, temperature,
                        alpha, size=size, max_per_class=max_per_class, workers=workers)
    try:
        result = run_distill(cfg)
    except (DetectorError, LayoutError, KeyError, ValueError) as err:
        raise _fail(str(err).strip("'\"")) from None
    _compression_report(result, "student checkpoint")


@app.command()
def quantize(
    model: Annotated[str, typer.Option("--model", "-m", help="Detector name or checkpoint path.")],
    dynamic: Annotated[bool, typer.Option("--dynamic", help="PyTorch dynamic int8 of the Linear layers.")] = False,
    onnx_int8: Annotated[bool, typer.Option("--onnx-int8", help="ONNX Runtime static int8 of every layer (convolutions too); needs --data.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Output file (default: <model>-int8.safetensors, or the cache for --onnx-int8).")] = None,
    data: Annotated[Optional[list[Path]], typer.Option(help="Labelled folder(s): calibration (training split) and before/after figures (validation split).")] = None,
    calibration_samples: Annotated[int, typer.Option(help="Images used for --onnx-int8 calibration.")] = 64,
    eval_samples: Annotated[int, typer.Option(help="Validation images for the before/after figures.")] = 400,
) -> None:
    """Quantize a detector to int8 and report size, accuracy, ROC-AUC and images/s before and after."""
    from fakescope.data.discovery import LayoutError
    from fakescope.inference.detector import DetectorError

    if dynamic == onnx_int8:
        raise typer.BadParameter("choose one of --dynamic or --onnx-int8")
    try:
        if dynamic:
            from fakescope.compress.quantize import quantize_checkpoint

            result = quantize_checkpoint(model, out or Path(f"{Path(model).stem}-int8.safetensors"), data or [],
                                         eval_samples)
        else:
            from fakescope.compress.quantize import export_int8

            result = export_int8(model, data or [], calibration_samples, out, eval_samples)
    except (DetectorError, LayoutError, ValueError) as err:
        raise _fail(str(err)) from None
    _compression_report(result, "quantized model")


@app.command()
def ensemble(
    members: Annotated[str, typer.Option(help="Comma-separated detector names or checkpoint paths (at least two).")],
    data: Annotated[list[Path], typer.Option(help="Labelled folder(s); the combiner is fitted on their validation split.")],
    out: Annotated[Path, typer.Option(help="Where to save the ensemble (.safetensors).")],
    method: Annotated[str, typer.Option(help="mean, majority, weighted or stacking.")] = "mean",
    weights: Annotated[Optional[str], typer.Option(help="Comma-separated member weights for --method weighted (default: from validation accuracy).")] = None,
    features: Annotated[bool, typer.Option(help="Stacking: also feed the members' penultimate features.")] = False,
    n_components: Annotated[int, typer.Option(help="Stacking: PCA components.")] = 16,
    val_fraction: Annotated[float, typer.Option(help="Validation split fraction (as in training).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Split seed (as in training).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Combine detectors (mean, majority, weighted vote, stacking) fitted on a validation split; save as one model."""
    from fakescope.data.discovery import LayoutError
    from fakescope.ensemble.fit import fit_ensemble
    from fakescope.evaluation.tables import metrics_table
    from fakescope.inference.detector import DetectorError

    names = [m.strip() for m in members.split(",") if m.strip()]
    try:
        w = [float(v) for v in weights.split(",")] if weights else None
        result = fit_ensemble(names, method, data, w, features, n_components, val_fraction, seed, batch_size,
                              device=device)
    except (DetectorError, LayoutError, ValueError) as err:
        raise _fail(str(err)) from None
    report = result.report
    rows = [{**r, "data": "validation"} for r in report["members"] + [report["ensemble"]]]
    console.print(metrics_table(rows))
    console.print(f"{report['split']['n']} validation images; ensemble: {report['evaluation']}", highlight=False)
    console.print(f"saved {result.detector.save(out)}", highlight=False)
