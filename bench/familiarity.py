"""Familiarity measures compared: which distance in a detector's pooled features best tells never-seen kinds of image.

    python bench/familiarity.py [--model default] [--sample 400] [--write]

Pooled features (the classifier's input) of the detector's training images (up to 200 per set and class, as
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
from fakescope.engine.familiarity import capped, sample_features
from fakescope.engine.loaders import folder_splits
from fakescope.familiarity import fit_feature_model
from fakescope.inference.detector import Detector

Measure = Callable[[np.ndarray], np.ndarray]  # features -> distance (higher: farther)


def features(model: str, sample: int, cache: Path) -> dict[str, np.ndarray]:
    if cache.exists():
        return dict(np.load(cache))
    det = Detector.load(model, backend="auto")
    trained = [Path(p).name for p in det.meta.info["data"]["path"]]
    cfg = load_config(REPO / "configs" / "default.yaml", {"data.path": [str(data_root() / s) for s in trained]})
    splits = folder_splits(cfg)
    sets = {"train": capped([s for t, _ in splits for s in t], [i for i, (t, _) in enumerate(splits) for _ in t], 200),
            "val": [s for _, v in splits for s in v],
            "wildfaces": random.Random(0).sample(discover_samples(data_root() / "wildfaces"), sample),
            "cameras": discover_samples(data_root() / "cameras")}
    out = {name: sample_features(det, samples) for name, samples in sets.items()}
    out["train_labels"] = np.asarray([s.label for s in sets["train"]])
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--sample", type=int, default=400, help="wildfaces images scored")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    f = features(args.model, args.sample, REPO / "runs" / "familiarity-features.npz")
    measures: dict[str, Measure] = {f"Mahalanobis, PCA {k}": mahalanobis(f["train"], f["train_labels"], k)
                                    for k in (32, 128)}
    for k in (16, 32, 128):  # what fakescope ships: fit_feature_model, 5th neighbour
        measures[f"cosine to 5th nearest, PCA {k}"] = fit_feature_model(f["train"], f["val"], components=k).distance
    rows = []
    for name, measure in measures.items():
        cut = np.quantile(measure(f["val"]), 0.95)
        rows.append(f"| {name} | " + " | ".join(f"{np.mean(measure(f[s]) > cut):.3f}" for s in ("wildfaces", "cameras"))
                    + " |")
        print(rows[-1], flush=True)
    command = shlex.join(["python", "bench/familiarity.py", *sys.argv[1:]])
    body = (f"Command: `{command}` ({time.time() - t0:.0f} s here, features read from runs/familiarity-features.npz when "
            f"present, computed otherwise; features of {len(f['train'])} training and "
            f"{len(f['val'])} validation images of `{args.model}`, {len(f['wildfaces'])} wildfaces images and "
            f"{len(f['cameras'])} camera originals, neither set trained on).\n\n"
            "Share of each never-seen set beyond the cut that 5% of the validation images are beyond (higher is a "
            "better alarm for 'unlike anything the detector knows'):\n\n"
            "| measure | wildfaces | cameras |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"
            "fakescope ships the cosine distance to the 5th nearest training image in a 32-component PCA "
            "(`fakescope.familiarity`). Even so it is a weak alarm: most never-seen images look familiar to it.\n")
    print(body)
    if args.write:
        write_section("Familiarity", body)


if __name__ == "__main__":
    main()
