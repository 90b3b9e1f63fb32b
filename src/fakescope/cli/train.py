"""``fakescope train``: a detector from a YAML recipe plus dotted overrides (``--optim.lr 3e-4``)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fakescope.cli._util import OptionalDeviceOpt, QuietOpt, Strategy, app, console, fail, progress_bars


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
    device: OptionalDeviceOpt = None,
    strategy: Annotated[Optional[Strategy], typer.Option(help="Parallel training on torch.distributed (under torchrun, or with --nproc).")] = None,
    nproc: Annotated[Optional[int], typer.Option(help="Start this many local processes for --strategy (like torchrun --nproc-per-node).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a detector. Any config key can be overridden: --optim.lr 3e-4 --augment.enabled false."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from fakescope.config import load_config, parse_dotted_args
    from fakescope.data.discovery import LayoutError
    from fakescope.distributed import shutdown_distributed
    from fakescope.engine.launch import launch_fit
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

    with progress_bars() as bars:
        try:
            result = launch_fit(cfg, nproc) if nproc else fit(cfg, track=bars.track, on_epoch=_print_epoch)
        except (LayoutError, FileNotFoundError, KeyError, ValueError, ChildFailedError) as err:
            raise fail(str(err).strip("'\"")) from None
        finally:
            shutdown_distributed()  # under torchrun: leave the group this rank joined
    _print_result(result.checkpoint, result.metrics)


def _print_epoch(row: dict) -> None:
    console.print(f"epoch {row['epoch']:>3}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}  "
                  f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} auc {row['val_roc_auc']:.3f}  "
                  f"{row['train_images_per_s']:.0f} img/s  {row['seconds']:.0f}s", highlight=False)


def _print_result(checkpoint, m: dict) -> None:
    if not m:
        return
    console.print(f"best checkpoint: {checkpoint}  (validation accuracy {m['accuracy']:.3f}, "
                  f"ROC-AUC {m['roc_auc'] or float('nan'):.3f}, ECE {m['ece_uncalibrated']:.3f} -> "
                  f"{m['ece']:.3f} at temperature {m['temperature']:.2f})", highlight=False)
    if m.get("fpr_held_out") is not None:
        console.print(f"threshold {m['threshold']:.3f}: flags {1 - m['accuracy_real']:.1%} of the validation "
                      f"reals it was chosen on, {m['fpr_held_out']:.1%} when chosen on the others "
                      "(5-fold cross-fitted: the rate to expect on unseen photos)", highlight=False)
