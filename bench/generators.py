"""Close the loop: train detectors on fakes we make ourselves, measure them on the real fake classes.

1. Split ``faces140k/real`` in two (seeded): a *train* half for the generator and the detectors, an *eval* half.
   Split ``faces140k/fake`` (StyleGAN) and ``casia1`` (scene-group aware) the same way.
2. Train a generator at 64 px on the train reals (a VAE by default, or a DCGAN); generate fakes, upscaled to
   256 px and saved as JPEG q75 like the faces140k files, so a detector cannot separate the classes by size or
   compression.
3. Synthesise splice and copy-move tampering (with exact masks) from the train half of ``casia1/real``.
4. Train a resnet18 (RGB, 64 px, from scratch) on train reals vs generated faces, and an ELA-CNN (128 px) on train
   reals vs synthetic tampering; with ``--reference``, the same recipes on the train halves of the real fake
   classes too (what the detector reaches when it does see the real fakes).
5. Evaluate every detector on the eval halves: faces140k (held-out FFHQ vs StyleGAN) and casia1 (held-out scenes).

    python bench/generators.py --out runs/bench-generators [--generator dcgan] [--reference]

One torch thread; about 10 minutes on a busy 2-core CPU (``--reference``: 5 more). Prints a Markdown table; writes ``results.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import torch
from _common import data_root

from fakescope.config import load_config
from fakescope.data.discovery import Sample, discover_samples, iter_image_files
from fakescope.data.splits import stratified_split
from fakescope.data.synth import SynthConfig, synthesize
from fakescope.engine.train import fit
from fakescope.evaluation.evaluate import evaluate_detector
from fakescope.generators.sample import generate_images
from fakescope.generators.train import GeneratorTrainConfig, train_generator
from fakescope.inference.detector import Detector

log = logging.getLogger("bench.generators")


def link_all(paths: list[Path], folder: Path) -> Path:
    """Symbolic links to ``paths`` in ``folder`` (the shared data is never copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        link = folder / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    return folder


def halves(paths: list[Path], seed: int) -> tuple[list[Path], list[Path]]:
    paths = sorted(paths)
    random.Random(seed).shuffle(paths)
    return sorted(paths[: len(paths) // 2]), sorted(paths[len(paths) // 2:])


def prepare_splits(work: Path, seed: int) -> dict[str, Path]:
    """Folders (of links) for every training and evaluation set."""
    root = data_root()
    real_train, real_eval = halves(list(iter_image_files([root / "faces140k" / "real"])), seed)
    fake_train, fake_eval = halves(list(iter_image_files([root / "faces140k" / "fake"])), seed)
    casia_train, casia_eval = stratified_split(discover_samples(root / "casia1"), 0.5, seed)

    def paths(samples: list[Sample], label: int) -> list[Path]:
        return [s.path for s in samples if s.label == label]

    dirs = {
        "faces_train_real": link_all(real_train, work / "faces_train_real"),
        "faces_ref": work / "faces_ref", "faces_eval": work / "faces_eval",
        "casia_train_real": link_all(paths(casia_train, 0), work / "casia_train_real"),
        "casia_ref": work / "casia_ref", "casia_eval": work / "casia_eval",
    }
    link_all(real_train, dirs["faces_ref"] / "real"), link_all(fake_train, dirs["faces_ref"] / "fake")
    link_all(real_eval, dirs["faces_eval"] / "real"), link_all(fake_eval, dirs["faces_eval"] / "fake")
    link_all(paths(casia_train, 0), dirs["casia_ref"] / "real"), link_all(paths(casia_train, 1), dirs["casia_ref"] / "fake")
    link_all(paths(casia_eval, 0), dirs["casia_eval"] / "real"), link_all(paths(casia_eval, 1), dirs["casia_eval"] / "fake")
    return dirs


def make_generated_set(dirs: dict[str, Path], work: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    """Train the generator and write real/ (links) + fake/ (generated, 256 px JPEG q75) for detector training."""
    cfg = GeneratorTrainConfig(model=args.generator, data=str(dirs["faces_train_real"]), out=str(work / args.generator),
                               epochs=args.gen_epochs, size=64, batch_size=args.gen_batch, seed=args.seed,
                               model_kwargs={"width": args.gen_width})
    result = train_generator(cfg, on_epoch=lambda row: log.info("%s %s", args.generator,
                                                                  {k: round(v, 3) for k, v in row.items()}))
    out = work / f"gen_set_{args.generator}"
    link_all(list(iter_image_files([dirs["faces_train_real"]])), out / "real")
    generate_images(result.checkpoint, args.num_generated, out / "fake", seed=args.seed, image_format="jpg",
                    quality=75, resize=256)
    return out, {"model": args.generator, "epochs": args.gen_epochs, "final": result.history[-1]}


def make_synth_set(dirs: dict[str, Path], work: Path, seed: int) -> tuple[Path, dict]:
    """Half the train reals spliced, the other half copy-moved, one fake per real, JPEG q90 for both classes."""
    reals = sorted(iter_image_files([dirs["casia_train_real"]]))
    first, second = halves(reals, seed)
    out = work / "synth_set"
    counts = {}
    for kind, part in (("splice", first), ("copy-move", second)):
        src = link_all(part, work / f"synth_src_{kind}")
        cfg = SynthConfig(kind=kind, seed=seed, quality=90, recompress_p=0.3, blend_p=0.5)
        counts[kind] = synthesize(src, out / kind, cfg).n_fake
    return out, counts


def train_detector(data: Path, out: Path, recipe: tuple, epochs: int, seed: int) -> tuple[Path, float]:
    """``fakescope train`` with the default augmentation; ``recipe`` is (model, size or None, learning rate)."""
    model, size, lr = recipe
    overrides = {"data.path": [str(data)], "model.name": model, "epochs": epochs, "batch_size": 32, "out": str(out),
                 "data.workers": 1, "data.cache": False, "seed": seed, "optim.lr": lr}
    if size is not None:
        overrides["model.size"] = size
    result = fit(load_config(None, overrides), on_epoch=lambda row: log.info("%s epoch %s", out.name, row))
    return result.checkpoint, result.metrics.get("roc_auc") or float("nan")  # on its own validation split


def evaluate_all(trained: dict[str, tuple[Path, float]], evals: dict[str, Path]) -> list[dict]:
    rows = []
    for name, (ckpt, val_auc) in trained.items():
        detector = Detector.load(str(ckpt), device="cpu")
        for set_name, folder in evals.items():
            m = evaluate_detector(detector, folder, workers=0)
            rows.append({"detector": name, "val_auc": val_auc, "eval": set_name, "roc_auc": m["roc_auc"],
                         "ap": m["average_precision"], "accuracy": m["accuracy"], "n": m["n"]})
            log.info("%s on %s: ROC-AUC %.3f, accuracy %.3f", name, set_name, m["roc_auc"], m["accuracy"])
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| detector (training data) | own val ROC-AUC | eval set (n) | ROC-AUC | AP | accuracy@0.5 |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['detector']} | {r['val_auc']:.3f} | {r['eval']} ({r['n']}) | {r['roc_auc']:.3f} | "
                     f"{r['ap']:.3f} | {r['accuracy']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-generators"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generator", choices=["vae", "dcgan"], default="vae")
    parser.add_argument("--gen-epochs", type=int, default=12)
    parser.add_argument("--gen-batch", type=int, default=32)
    parser.add_argument("--gen-width", type=int, default=32)
    parser.add_argument("--num-generated", type=int, default=400)
    parser.add_argument("--det-epochs", type=int, default=2)
    parser.add_argument("--reference", action="store_true", help="Also train on the real fake classes.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    work = args.out
    dirs = prepare_splits(work, args.seed)
    gen_set, gen_info = make_generated_set(dirs, work, args)
    synth_set, synth_info = make_synth_set(dirs, work, args.seed)
    log.info("data ready after %.0f s", time.perf_counter() - t0)
    # resnet18 from scratch learns at 1e-3; the ELA-CNN's 7M-weight dense head diverges there (its recipe: 1e-4).
    rgb, ela = ("resnet18", 64, 1e-3), ("ela-cnn", None, 1e-4)
    recipes = {f"resnet18-64 (real vs {args.generator.upper()})": (gen_set, rgb),
               "ela-cnn-128 (real vs synth tampering)": (synth_set, ela)}
    if args.reference:
        recipes["resnet18-64 (reference: real vs StyleGAN)"] = (dirs["faces_ref"], rgb)
        recipes["ela-cnn-128 (reference: real vs CASIA tampering)"] = (dirs["casia_ref"], ela)
    trained = {name: train_detector(data, work / f"det_{i}", recipe, args.det_epochs, args.seed)
               for i, (name, (data, recipe)) in enumerate(recipes.items())}
    rows = evaluate_all(trained, {"faces140k eval half": dirs["faces_eval"], "casia1 eval half": dirs["casia_eval"]})
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "generator": gen_info, "synth": synth_info,
               "rows": rows, "seconds": time.perf_counter() - t0}
    (work / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(markdown(rows))
    print(f"\ntotal {results['seconds']:.0f} s; {args.generator} after {args.gen_epochs} epochs: {gen_info['final']}")


if __name__ == "__main__":
    main()
