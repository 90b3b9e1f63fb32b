"""``fakescope robustness`` and ``shortcuts``: how a detector holds up, and what it could be reading instead."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fakescope.cli._util import (
    BatchSizeOpt,
    DataOpt,
    DeviceOpt,
    ModelOpt,
    Perturbation,
    QuietOpt,
    TableOrJsonOpt,
    ThresholdOpt,
    WorkersOpt,
    app,
    console,
    fail,
    load_detector,
    print_skipped,
    progress_bars,
    warn,
    write_json,
)

LimitOpt = Annotated[Optional[int], typer.Option(help="Use at most N images (class shares kept, fixed seed).")]


@app.command()
def robustness(
    data: DataOpt,
    model: ModelOpt = "default",
    out: Annotated[Path, typer.Option(help="Folder for robustness.json, robustness.md and robustness.png.")] = Path("robustness"),
    perturbation: Annotated[Optional[list[Perturbation]], typer.Option(help="Only this perturbation (repeatable; default: all).")] = None,
    limit: LimitOpt = None,
    threshold: ThresholdOpt = None,
    batch_size: BatchSizeOpt = 32,
    workers: WorkersOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
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

    names = [p.value for p in perturbation] if perturbation else list(PERTURBATIONS)
    try:
        samples = subsample(discover_samples(data), limit)
    except LayoutError as err:
        raise fail(str(err)) from None
    detector = load_detector(model, device)
    with progress_bars() as bars:
        advance = bars.counter("perturbed scans", total=len(samples) * len(names))
        try:
            rows = robustness_sweep(detector, samples, names, threshold, batch_size, workers, on_result=advance)
        except ValueError as err:
            raise fail(str(err)) from None
    paths = write_robustness(rows, out, title=f"Robustness of {detector.name} on {data} ({len(samples)} images)")
    console.print(robustness_table(rows))
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}", highlight=False)


@app.command()
def shortcuts(
    data: DataOpt,
    limit: LimitOpt = None,
    val_fraction: Annotated[float, typer.Option(help="Validation share of the split (as fakescope train makes it).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Split seed (fakescope train's data.seed).")] = 0,
    fmt: TableOrJsonOpt = "table",
    workers: Annotated[Optional[int], typer.Option(help="Processes computing the features (default: automatic).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """How well the file header (4 numbers) and the compression history in the pixels (27 numbers) alone tell the
    classes apart, as stored and after each shortcut test: where they score high, a detector may be reading them."""
    from fakescope.data.discovery import LayoutError, discover_samples
    from fakescope.data.splits import stratified_split
    from fakescope.evaluation.robustness import subsample
    from fakescope.evaluation.shortcuts import CONDITIONS, shortcut_baselines

    try:
        train, val = stratified_split(subsample(discover_samples(data), limit), val_fraction, seed)
    except (LayoutError, ValueError) as err:
        raise fail(str(err)) from None
    with progress_bars() as bars:
        advance = bars.counter("features", total=(len(train) + len(val)) * len(CONDITIONS))
        out = shortcut_baselines(train, val, workers=workers, on_file=advance)
    print_skipped(out["errors"])
    if fmt == "json":
        write_json(out)
        return
    _print_shortcuts(out["rows"], data)
    if out["warning"]:
        warn(out["warning"])


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
