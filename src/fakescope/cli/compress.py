"""``fakescope export``, ``quantize``, ``prune``, ``distill`` and ``ensemble``: smaller, faster or combined models."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from fakescope.cli._util import (
    BatchSizeOpt,
    DeviceOpt,
    EnsembleMethod,
    ModelOpt,
    QuietOpt,
    app,
    console,
    fail,
    progress_bars,
)

EvalSamplesOpt = Annotated[int, typer.Option(help="Validation images for the before/after figures.")]
CalibrationSamplesOpt = Annotated[int, typer.Option(help="Images used for int8 calibration.")]


def _compression_report(result, title: str) -> None:
    from fakescope.compress.report import rich_table

    console.print(rich_table(result.rows))
    console.print(f"{title}: {result.path}", highlight=False)


def _onnx_int8(model: str, data: Optional[list[Path]], calibration_samples: int, out: Optional[Path],
               eval_samples: int) -> None:
    """The one int8 ONNX path, for ``export --quantize int8`` and ``quantize --onnx-int8`` alike."""
    from fakescope.compress.quantize import export_int8
    from fakescope.data.discovery import LayoutError
    from fakescope.inference.detector import DetectorError
    from fakescope.inference.onnx import onnx_available

    if not onnx_available():
        raise fail("ONNX export needs onnx and onnxruntime: pip install onnx onnxruntime onnxscript")
    with progress_bars():
        try:
            result = export_int8(model, data or [], calibration_samples, out, eval_samples)
        except (DetectorError, LayoutError, ValueError) as err:
            raise fail(str(err)) from None
    _compression_report(result, "int8 ONNX model")


@app.command()
def export(
    model: ModelOpt = "default",
    fmt: Annotated[Literal["onnx"], typer.Option("--format", "-f", help="Export format.")] = "onnx",
    quantize: Annotated[Optional[Literal["int8"]], typer.Option(help="ONNX Runtime static quantization (as quantize --onnx-int8).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output .onnx file (default: the cache path --backend onnx uses).")] = None,
    calibration_data: Annotated[Optional[list[Path]], typer.Option(help="Labelled folder(s) to calibrate int8 on (training split) and to report the accuracy change on (validation split).")] = None,
    calibration_samples: CalibrationSamplesOpt = 64,
    eval_samples: Annotated[int, typer.Option(help="Validation images for the int8 accuracy report.")] = 400,
    ship: Annotated[bool, typer.Option(help="Write the ONNX model beside the shipped weights (src/fakescope/weights/) and record its checksum in their header, so scans export nothing.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a detector to ONNX (dynamic batch axis, metadata embedded), verified against PyTorch."""
    from fakescope.inference.detector import DetectorError
    from fakescope.inference.onnx import FP32_TOLERANCE, export_detector, onnx_available

    if ship and (quantize or out):
        raise typer.BadParameter("--ship writes the fp32 model beside the weights: no --quantize or --out")
    if quantize:
        return _onnx_int8(model, calibration_data, calibration_samples, out, eval_samples)
    if not onnx_available():
        raise fail("ONNX export needs onnx and onnxruntime: pip install onnx onnxruntime onnxscript")
    try:
        if ship:
            return _ship(model)
        path, diff = export_detector(model, out)
    except (DetectorError, ValueError) as err:
        raise fail(str(err)) from None
    console.print(f"exported {path}; largest fake-probability difference to PyTorch: {diff:.2e} "
                  f"(tolerance {FP32_TOLERANCE:g})", highlight=False)


def _ship(model: str) -> None:
    from fakescope.inference.onnx import ship_onnx

    shipped = ship_onnx(model)
    console.print(f"shipped {shipped.path} (sha256 {shipped.sha256}, recorded in the weights' header); "
                  f"largest fake-probability difference to PyTorch: {shipped.max_difference:.2e}", highlight=False)


@app.command()
def quantize(
    model: ModelOpt,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="PyTorch dynamic int8 of the Linear layers.")] = False,
    onnx_int8: Annotated[bool, typer.Option("--onnx-int8", help="ONNX Runtime static int8 of every layer (convolutions too; as export --quantize int8); needs --data.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Output file (default: <model>-int8.safetensors, or the cache for --onnx-int8).")] = None,
    data: Annotated[Optional[list[Path]], typer.Option(help="Labelled folder(s): calibration (training split) and before/after figures (validation split).")] = None,
    calibration_samples: CalibrationSamplesOpt = 64,
    eval_samples: EvalSamplesOpt = 400,
    quiet: QuietOpt = False,
) -> None:
    """Quantize a detector to int8 and report size, accuracy, ROC-AUC and images/s before and after."""
    from fakescope.compress.quantize import quantize_checkpoint
    from fakescope.data.discovery import LayoutError
    from fakescope.inference.detector import DetectorError

    if dynamic == onnx_int8:
        raise typer.BadParameter("choose one of --dynamic or --onnx-int8")
    if onnx_int8:
        return _onnx_int8(model, data, calibration_samples, out, eval_samples)
    with progress_bars():
        try:
            result = quantize_checkpoint(model, out or Path(f"{Path(model).stem}-int8.safetensors"), data or [],
                                         eval_samples)
        except (DetectorError, LayoutError, ValueError) as err:
            raise fail(str(err)) from None
    _compression_report(result, "quantized model")


@app.command()
def prune(
    model: ModelOpt,
    amount: Annotated[float, typer.Option(help="Fraction of conv/linear weights to zero (global L1).")] = 0.3,
    out: Annotated[Optional[Path], typer.Option(help="Pruned checkpoint (default: <model>-pruned<N>.safetensors).")] = None,
    finetune_data: Annotated[Optional[list[Path]], typer.Option(help="Labelled folder(s) to fine-tune on (training split).")] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs (with the pruning masks kept).")] = 1,
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate.")] = 1e-4,
    data: Annotated[Optional[list[Path]], typer.Option(help="Labelled folder(s) for the before/after figures (validation split; default: --finetune-data).")] = None,
    eval_samples: EvalSamplesOpt = 400,
    quiet: QuietOpt = False,
) -> None:
    """Prune a detector (global L1 unstructured), optionally fine-tune, save a normal checkpoint."""
    from fakescope.compress.prune import prune_checkpoint
    from fakescope.data.discovery import LayoutError
    from fakescope.inference.detector import DetectorError

    out = out or Path(f"{Path(model).stem}-pruned{round(amount * 100)}.safetensors")
    with progress_bars() as bars:
        try:
            result = prune_checkpoint(model, amount, out, data=data or [], finetune_data=finetune_data or [],
                                      epochs=epochs, lr=lr, eval_samples=eval_samples, track=bars.track)
        except (DetectorError, LayoutError, ValueError) as err:
            raise fail(str(err)) from None
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
    quiet: QuietOpt = False,
) -> None:
    """Distil a teacher detector into a (smaller) student: KL at temperature T plus the hard label loss."""
    from fakescope.compress.distill import DistillConfig
    from fakescope.compress.distill import distill as run_distill
    from fakescope.data.discovery import LayoutError
    from fakescope.inference.detector import DetectorError

    cfg = DistillConfig(teacher=teacher, student=student, data=[str(d) for d in data], out=str(out), epochs=epochs,
                        batch_size=batch_size, lr=lr, temperature=temperature, alpha=alpha, size=size,
                        max_per_class=max_per_class, workers=workers)
    with progress_bars() as bars:
        try:
            result = run_distill(cfg, track=bars.track)
        except (DetectorError, LayoutError, KeyError, ValueError) as err:
            raise fail(str(err).strip("'\"")) from None
    _compression_report(result, "student checkpoint")


@app.command()
def ensemble(
    members: Annotated[str, typer.Option(help="Comma-separated detector names or checkpoint paths (at least two).")],
    data: Annotated[list[Path], typer.Option(help="Labelled folder(s); the combiner is fitted on their validation split.")],
    out: Annotated[Path, typer.Option(help="Where to save the ensemble (.safetensors).")],
    method: Annotated[EnsembleMethod, typer.Option(help="How the members' scores are combined.")] = "mean",
    weights: Annotated[Optional[str], typer.Option(help="Comma-separated member weights for --method weighted (default: from validation accuracy).")] = None,
    features: Annotated[bool, typer.Option(help="Stacking: also feed the members' penultimate features.")] = False,
    n_components: Annotated[int, typer.Option(help="Stacking: PCA components.")] = 16,
    val_fraction: Annotated[float, typer.Option(help="Validation split fraction (as in training).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Split seed (as in training).")] = 0,
    batch_size: BatchSizeOpt = 32,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Combine detectors (mean, majority, weighted vote, stacking) fitted on a validation split; save as one model."""
    from fakescope.data.discovery import LayoutError
    from fakescope.ensemble.fit import fit_ensemble
    from fakescope.evaluation.tables import metrics_table
    from fakescope.inference.detector import DetectorError

    names = [m.strip() for m in members.split(",") if m.strip()]
    with progress_bars():
        try:
            w = [float(v) for v in weights.split(",")] if weights else None
            result = fit_ensemble(names, method, data, weights=w, features=features, n_components=n_components,
                                  val_fraction=val_fraction, seed=seed, batch_size=batch_size, device=device)
        except (DetectorError, LayoutError, ValueError) as err:
            raise fail(str(err)) from None
    report = result.report
    rows = [{**r, "data": "validation"} for r in report["members"] + [report["ensemble"]]]
    console.print(metrics_table(rows))
    console.print(f"{report['split']['n']} validation images; ensemble: {report['evaluation']}", highlight=False)
    console.print(f"saved {result.detector.save(out)}", highlight=False)
