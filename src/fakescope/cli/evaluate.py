"""``fakescope evaluate``, ``threshold`` and ``plot-history``: how well a detector does, and where to set it."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fakescope.cli._util import (
    BackendOpt,
    BatchSizeOpt,
    DeviceOpt,
    ModelOpt,
    QuietOpt,
    TableOrJsonOpt,
    ThresholdOpt,
    app,
    console,
    fail,
    load_detector,
    note,
    print_skipped,
    progress_bars,
    warn,
    write_json,
)


@app.command()
def evaluate(
    data: Annotated[list[Path], typer.Option(help="Labelled folder(s); repeat for a cross-dataset table.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Detector name(s) or checkpoint path(s).")] = ["default"],  # noqa: B006 (Typer reads the default)
    fmt: TableOrJsonOpt = "table",
    threshold: ThresholdOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the JSON here.")] = None,
    batch_size: BatchSizeOpt = 32,
    device: DeviceOpt = "auto",
    backend: BackendOpt = "auto",
    plots: Annotated[Optional[Path], typer.Option(help="Write ROC, PR, confusion, reliability and example PNGs here.")] = None,
    table_out: Annotated[Optional[Path], typer.Option(help="Write the model x dataset ROC-AUC table to PREFIX.md and PREFIX.json.")] = None,
    copy_move: Annotated[bool, typer.Option("--copy-move/--no-copy-move", help="With a detector that checks for copy-moves (the default does): score with that evidence, as a scan does; --no-copy-move measures the model alone.")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Accuracy, precision, recall, F1, ROC-AUC, AP, EER, ECE and the confusion matrix on labelled folders."""
    import json

    from fakescope.data.discovery import LayoutError, discover_samples
    from fakescope.evaluation.evaluate import evaluate_detector
    from fakescope.evaluation.tables import cross_table, metrics_table

    samples = {}
    for folder in data:  # every folder listed (and its layout checked) once, before any scoring
        try:
            samples[folder] = discover_samples(folder)
        except LayoutError as err:
            raise fail(str(err)) from None
    rows = []
    for name in model:
        detector = load_detector(name, device, backend)
        for folder in data:
            scored = [] if plots else None
            with progress_bars() as bars:
                on_result = _counting(bars.counter(f"{detector.name} on {folder.name}"), scored)
                try:
                    metrics = evaluate_detector(detector, samples[folder], threshold, batch_size, on_result=on_result,
                                                copy_move=copy_move)
                except ValueError as err:  # nothing readable to score
                    raise fail(str(err)) from None
            if plots:
                _evaluation_plots(scored, folder, metrics["threshold"], plots, detector.name, len(model) * len(data) > 1)
            print_skipped(metrics["errors"])
            rows.append({"model": detector.name, "data": str(folder), **metrics})
    payload = rows[0] if len(rows) == 1 else rows
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2) + "\n")
    if fmt == "json":
        write_json(payload)
    else:
        console.print(metrics_table(rows))
        if len(rows) > 1:
            console.print(cross_table(rows))
    if table_out:
        from fakescope.evaluation.plots import write_cross_table

        note("cross-dataset table: " + ", ".join(map(str, write_cross_table(rows, table_out))))


def _counting(advance, scored: Optional[list]):
    """A scan callback that advances the bar and, for --plots, keeps the results."""
    def on_result(r) -> None:
        advance()
        if scored is not None:
            scored.append(r)
    return on_result


def _evaluation_plots(scored, folder: Path, threshold: float, plots: Path, model_name: str, several: bool) -> None:
    from fakescope.evaluation.plots import plot_folder_results

    out = plots / f"{Path(model_name).stem}__{folder.resolve().name}" if several else plots
    written = plot_folder_results(scored, folder, threshold, out)
    note(f"plots: {', '.join(p.name for p in written.values())} in {out}")


@app.command()
def threshold(
    paths: Annotated[list[Path], typer.Argument(help="Images, folders or videos you know are real.", exists=True)],
    model: ModelOpt = "default",
    fpr: Annotated[float, typer.Option(help="Share of these reals the threshold may flag as fake.")] = 0.05,
    fmt: TableOrJsonOpt = "table",
    batch_size: BatchSizeOpt = 32,
    device: DeviceOpt = "auto",
    backend: BackendOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Choose a decision threshold on your own real photos: on a kind of photo the detector never trained on, its
    shipped threshold can flag far more than 5% of them. Pass the result to scan --threshold."""
    from fakescope.evaluation.evaluate import threshold_for_reals

    if not 0.0 <= fpr < 1.0:
        raise typer.BadParameter(f"--fpr must be in [0, 1), got {fpr}")
    detector = load_detector(model, device, backend)
    with progress_bars() as bars:
        try:
            out = threshold_for_reals(detector, paths, fpr, batch_size, on_result=bars.counter("scoring reals"))
        except ValueError as err:
            raise fail(str(err)) from None
    print_skipped(out["errors"])
    if fmt == "json":
        write_json(out)
    else:
        _print_threshold(out, model)
    if out["warning"]:
        warn(out["warning"])


def _print_threshold(out: dict, model: str) -> None:
    held = "" if out["held_out_fpr"] is None else (
        f"; on other photos of this kind expect about {out['held_out_fpr']:.1%} (5-fold cross-fitted)")
    console.print(f"{out['n']} real images scored with {out['model']}: its threshold {out['model_threshold']:.3f} "
                  f"flags {out['flagged_at_model_threshold']:.1%} of them.\n"
                  f"threshold {out['threshold']} flags {out['flagged_at_threshold']:.1%}{held}.\n"
                  f"use: fakescope scan PATH --model {model} --threshold {out['threshold']}", highlight=False, soft_wrap=True)


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
        raise fail(f"{run_dir}: cannot plot the history: {err}") from None
    console.print(f"wrote {path}", highlight=False)
