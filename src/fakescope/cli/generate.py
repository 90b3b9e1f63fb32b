"""``fakescope train-generator``, ``generate`` and ``fid``: image generators, and how close their images come."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from fakescope.cli._util import (
    DeviceOpt,
    GeneratorName,
    QuietOpt,
    TableOrJsonOpt,
    app,
    console,
    fail,
    progress_bars,
    write_json,
)


@app.command("train-generator")
def train_generator_cmd(
    data: Annotated[Path, typer.Option(help="Folder of images (cgan: real/ + fake/ or one sub-folder per class).")],
    model: Annotated[GeneratorName, typer.Option("--model", "-m", help="Generator to train.")] = "dcgan",
    epochs: Annotated[int, typer.Option(help="Passes over the images.")] = 10,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint, sample grids, losses.csv/png.")] = Path("runs/generator"),
    size: Annotated[int, typer.Option(help="Image side in px (a power of two >= 16).")] = 64,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: 2e-4 for GANs, 1e-3 for autoencoders).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Base channel width (default: the model's).")] = None,
    latent_dim: Annotated[Optional[int], typer.Option(help="Latent size (default: the model's).")] = None,
    max_images: Annotated[Optional[int], typer.Option(help="Use at most this many images.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Train an image generator (DCGAN, conditional GAN, autoencoder or VAE) on a folder of images."""
    from fakescope.data.discovery import LayoutError
    from fakescope.generators.train import GeneratorTrainConfig, train_generator

    kwargs = {k: v for k, v in {"width": width, "latent_dim": latent_dim}.items() if v is not None}
    cfg = GeneratorTrainConfig(model=model, data=str(data), out=str(out), epochs=epochs, size=size,
                               batch_size=batch_size, lr=lr, seed=seed, max_images=max_images, device=device,
                               model_kwargs=kwargs)
    with progress_bars():
        try:
            result = train_generator(cfg, _print_epoch)
        except (LayoutError, FileNotFoundError, ValueError) as err:
            raise fail(str(err)) from None
    console.print(f"checkpoint: {result.checkpoint}  (sample grids and loss curves in {result.out})", highlight=False)


def _print_epoch(row: dict) -> None:
    losses = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds", "images_per_s"))
    console.print(f"epoch {row['epoch']:>3}  {losses}  {row['images_per_s']:.0f} img/s  {row['seconds']:.0f}s",
                  highlight=False)


@app.command()
def generate(
    model: Annotated[str, typer.Option("--model", "-m", help="Generator checkpoint from train-generator.")],
    out: Annotated[Path, typer.Option(help="Folder for the images.")],
    num_images: Annotated[int, typer.Option("--num-images", "-n", help="How many images.", min=1)] = 16,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same images.")] = 0,
    label: Annotated[Optional[str], typer.Option(help="Class name or index (conditional models only).")] = None,
    fmt: Annotated[Literal["png", "jpg"], typer.Option("--format", "-f", help="Image format.")] = "png",
    quality: Annotated[int, typer.Option(help="JPEG quality for --format jpg.")] = 95,
    resize: Annotated[Optional[int], typer.Option(help="Resize to this side (bicubic), e.g. to match real data.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 64,
    device: Annotated[str, typer.Option(help="cpu (reproducible), auto, cuda[:N] or mps.")] = "cpu",
) -> None:
    """Write images sampled from a trained generator."""
    from fakescope.checkpoint import CheckpointError
    from fakescope.generators.sample import generate_images

    try:
        paths = generate_images(model, num_images, out, seed=seed, label=label, batch_size=batch_size,
                                image_format=fmt, quality=quality, resize=resize, device=device)
    except (CheckpointError, ValueError) as err:
        raise fail(str(err)) from None
    console.print(f"wrote {len(paths)} images to {out}", highlight=False)


@app.command()
def fid(
    dir_a: Annotated[Path, typer.Argument(help="First image folder.")],
    dir_b: Annotated[Path, typer.Argument(help="Second image folder.")],
    features: Annotated[str, typer.Option(help="Detector name or checkpoint whose pooled features are compared.")] = "default",
    inception_weights: Annotated[Optional[Path], typer.Option(help="Local torchvision Inception-v3 weights: use its features instead.")] = None,
    max_images: Annotated[Optional[int], typer.Option(help="Use the first N images of each folder.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    fmt: TableOrJsonOpt = "table",
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Fréchet distance between the feature distributions of two image folders; names its feature extractor."""
    from fakescope.checkpoint import CheckpointError
    from fakescope.generators.fid import build_extractor, compute_fid
    from fakescope.inference.detector import DetectorError

    with progress_bars():
        try:
            extractor = build_extractor(features, inception_weights, device)
            result = compute_fid(dir_a, dir_b, extractor, batch_size, max_images)
        except (DetectorError, CheckpointError, FileNotFoundError, ValueError, RuntimeError) as err:
            raise fail(str(err)) from None
    if fmt == "json":
        write_json(result.to_dict())
        return
    console.print(f"FID {result.fid:.3f}  ({result.n_a} vs {result.n_b} images; features: {result.features}, "
                  f"{result.dim}-d)", highlight=False)
