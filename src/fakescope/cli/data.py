"""``fakescope synth``: training data made from real images."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from fakescope.cli._util import QuietOpt, SynthKind, app, console, fail, progress_bars


@app.command()
def synth(
    data: Annotated[Path, typer.Option(help="Folder of real images to tamper.")],
    out: Annotated[Path, typer.Option(help="Output: real/, fake/, masks/ and manifest.csv.")],
    kind: Annotated[SynthKind, typer.Option(help="Paste a region from another image, or copy one within the image.")] = "splice",
    count: Annotated[Optional[int], typer.Option(help="Tampered images to make (default: one per real image).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    blend_p: Annotated[float, typer.Option(help="Probability of blended (feathered) edges instead of hard ones.")] = 0.5,
    recompress_p: Annotated[float, typer.Option(help="Probability of an extra JPEG round at quality 60-95 (reals and fakes alike).")] = 0.0,
    fmt: Annotated[Literal["jpg", "png"], typer.Option("--format", "-f", help="jpg, or png (lossless: masks equal the pixel difference).")] = "jpg",
    quality: Annotated[int, typer.Option(help="JPEG quality of the output.")] = 95,
    shapes: Annotated[str, typer.Option(help="Comma-separated region shapes.")] = "rectangle,ellipse,polygon",
    quiet: QuietOpt = False,
) -> None:
    """Make tampered images with exact masks from real images, in a layout 'fakescope train' reads."""
    from fakescope.data.synth import SynthConfig, synthesize

    try:
        cfg = SynthConfig(kind=kind, count=count, seed=seed, blend_p=blend_p, recompress_p=recompress_p,
                          image_format=fmt, quality=quality, shapes=tuple(s.strip() for s in shapes.split(",")))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    with progress_bars() as bars:
        advance = bars.counter("tampering", total=count)
        try:
            result = synthesize(data, out, cfg, on_item=advance)
        except (FileNotFoundError, ValueError) as err:
            raise fail(str(err)) from None
    console.print(f"{result.n_fake} tampered images from {result.n_real} reals in {result.out} "
                  f"({len(result.skipped)} unreadable files skipped)", highlight=False)
