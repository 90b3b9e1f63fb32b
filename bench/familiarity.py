"""Familiarity measures compared: which features and which distance best tell never-seen kinds of image.

    python bench/familiarity.py [--model default] [--sample 400] [--write]

Two kinds of feature, from one pass of the detector: the pooled features (the classifier's input) and the stage
statistics fakescope describes (each channel's mean and standard deviation in each of timm's feature stages,
``stage_statistics``), of the detector's training images (up to 200 per set and class, as
``fakescope train`` describes them), its validation images, a sample of a shared set it never trained on (wildfaces)
and the real-only camera originals. Each measure is cut where 5% of the validation images fall beyond it (the
familiarity cut), and the share of each never-seen set beyond the cut is reported: the higher, the better the measure
says "unlike anything I know". Features are cached in runs/familiarity-features.npz.
"""
from __future__ import annotations

import argparse
import random
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import REPO, data_root, write_section
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from fakescope.config import load_config
from fakescope.data.discovery import discover_samples
from fakescope.engine.familiarity import capped
from fakescope.engine.loaders import folder_splits
from fakescope.familiarity import FeatureModel, fit_feature_model, standardisation
from fakescope.inference.detector import Detector, stage_statistics
from fakescope.inference.scan import iter_prepared

Measure = Callable[[np.ndarray], np.ndarray]  # features -> distance (higher: farther)


def both_features(det: Detector, samples: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pooled features, stage statistics, labels) of the readable ``samples``, in the samples' order (decode workers
    yield in their own: the class-conditional measures pair each row with its label), from one pass of the PyTorch
    model."""
    import torch

    ready = sorted((item.index, item.array) for item in iter_prepared([s.path for s in samples], det.preparer, 2)
                   if item.error is None)
    pooled, stages = [], []
    with torch.inference_mode():
        for i in range(0, len(ready), 32):
            x = det.preprocess.to_tensor(np.stack([a for _, a in ready[i:i + 32]]))
            final, maps = det.model.forward_intermediates(x)  # one pass gives both kinds
            pooled.append(det.model.forward_head(final, pre_logits=True).numpy())
            stages.append(stage_statistics(maps).numpy())
    return np.concatenate(pooled), np.concatenate(stages), np.asarray([samples[i].label for i, _ in ready])


def features(model: str, sample: int, cache: Path) -> dict[str, np.ndarray]:
    if cache.exists():
        return dict(np.load(cache))
    det = Detector.load(model, device="cpu")
    trained = [Path(p).name for p in det.meta.info["data"]["path"]]
    cfg = load_config(REPO / "configs" / "default.yaml", {"data.path": [str(data_root() / s) for s in trained]})
    splits = folder_splits(cfg)
    sets = {"train": capped([s for t, _ in splits for s in t], [i for i, (t, _) in enumerate(splits) for _ in t], 200),
            "val": [s for _, v in splits for s in v],
            "wildfaces": random.Random(0).sample(discover_samples(data_root() / "wildfaces"), sample),
            "cameras": discover_samples(data_root() / "cameras")}
    out = {}
    for name, samples in sets.items():
        out[f"pooled_{name}"], out[f"stages_{name}"], out[f"{name}_labels"] = both_features(det, samples)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def mahalanobis(train: np.ndarray, labels: np.ndarray, k: int) -> Measure:
    """Class-conditional Gaussians with a tied covariance in a k-component PCA (Lee et al., NeurIPS 2018)."""
    pca = PCA(n_components=k, random_state=0).fit(train)
    z = pca.transform(train)
    means = np.stack([z[labels == c].mean(0) for c in (0, 1)])
    precision = LedoitWolf(assume_centered=True).fit(z - means[labels]).precision_

    def distance(x: np.ndarray) -> np.ndarray:
        d = pca.transform(x)[:, None] - means[None]
        return np.einsum("ncj,jk,nck->nc", d, precision, d).min(1)
    return distance


def nearest(train: np.ndarray, val: np.ndarray, k: int, standardise: bool) -> Measure:
    """Cosine distance to the 5th nearest training image in a k-component PCA: ``fit_feature_model`` (which
    standardises each feature first), or without standardising, as fakescope read the pooled features until
    2026-12-07."""
    if standardise:
        return fit_feature_model(train, val, components=k).distance
    pca = PCA(n_components=k, random_state=0).fit(train)
    z = pca.transform(train)
    return FeatureModel(pca.mean_, np.ones(train.shape[1]), pca.components_,
                        z / np.linalg.norm(z, axis=1, keepdims=True), np.zeros(2)).distance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--sample", type=int, default=400, help="wildfaces images scored")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    f = features(args.model, args.sample, REPO / "runs" / "familiarity-features.npz")
    rows = []
    for kind, label in (("pooled", "pooled features"), ("stages", "stage statistics")):
        raw = {name: f[f"{kind}_{name}"] for name in ("train", "val", "wildfaces", "cameras")}
        standardise = kind == "stages"
        center, scale = standardisation(raw["train"])
        z = {name: (x - center) / scale for name, x in raw.items()} if standardise else raw
        measures: dict[str, tuple[Measure, dict[str, np.ndarray]]] = {
            f"Mahalanobis, PCA {k}": (mahalanobis(z["train"], f["train_labels"], k), z) for k in (32, 128)}
        for k in (16, 32, 128):
            measures[f"cosine to 5th nearest, PCA {k}"] = (nearest(raw["train"], raw["val"], k, standardise), raw)
        for name, (measure, x) in measures.items():
            cut = np.quantile(measure(x["val"]), 0.95)
            rows.append(f"| {label} | {name} | " + " | ".join(f"{np.mean(measure(x[s]) > cut):.3f}"
                                                             for s in ("wildfaces", "cameras")) + " |")
            print(rows[-1], flush=True)
    command = shlex.join(["python", "bench/familiarity.py", *sys.argv[1:]])
    body = (f"Command: `{command}` ({time.time() - t0:.0f} s here, features read from runs/familiarity-features.npz when "
            f"present, computed otherwise; features of {len(f['stages_train'])} training and "
            f"{len(f['stages_val'])} validation images of `{args.model}`, {len(f['stages_wildfaces'])} wildfaces "
            f"images and {len(f['stages_cameras'])} camera originals, neither set trained on).\n\n"
            "Share of each never-seen set beyond the cut that 5% of the validation images are beyond (higher is a "
            "better alarm for 'unlike anything the detector knows'):\n\n"
            "| features | measure | wildfaces | cameras |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            "fakescope ships the stage statistics, standardised, with the cosine distance to the 5th nearest "
            "training image in a 32-component PCA (`fakescope.familiarity`); until 2026-12-07 it read the pooled "
            "features the same way. The same distances, split by class, as a fake score: \"Nearest training images as "
            "a fake score\" (`bench/neighbours.py`).\n")
    print(body)
    if args.write:
        write_section("Familiarity", body)


if __name__ == "__main__":
    main()
