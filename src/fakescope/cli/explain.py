"""``fakescope explain``: why a detector says fake, as overlays."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fakescope.cli._util import (
    DeviceOpt,
    ExplainMethod,
    QuietOpt,
    app,
    console,
    fail,
    load_detector,
    plural,
    print_skipped,
    progress_bars,
)


@app.command()
def explain(
    images: Annotated[list[Path], typer.Argument(help="Image files and folders.")],
    method: Annotated[ExplainMethod, typer.Option(help="Class-activation maps (gradcam++, gradcam, scorecam: slow on wide layers) or the model-free ela, noise and copy-move views.")] = "gradcam++",
    model: Annotated[str, typer.Option("--model", "-m", help="Detector name or checkpoint path (CAM methods).")] = "default",
    out: Annotated[Path, typer.Option(help="Folder for the <name>_<method>.png overlays.")] = Path("explain"),
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Show why: class-activation overlays of the fake class, or the model-free ELA and noise views."""
    from fakescope.explain import CAM_METHODS, ExplainError, explain_files

    detector = load_detector(model, device) if method in CAM_METHODS else None
    with progress_bars():
        try:
            done = explain_files(images, method, out, detector)
        except ExplainError as err:
            raise fail(str(err)) from None
    print_skipped(f"{d.path}: {d.error}" for d in done if d.error)
    for d in done:  # two inputs of the same name: say which file each numbered picture shows
        if d.output is not None and not d.output.name.startswith(f"{d.path.stem}_"):
            console.print(f"{d.path} -> {d.output.name}", highlight=False)
    written = sum(d.output is not None for d in done)
    console.print(f"{plural(written, f'{method} image')} written to {out}; {plural(len(done) - written, 'error')}",
                  highlight=False)
    if not written:
        raise typer.Exit(1)
