"""Training-free scoring after RIGID (He et al., 2024, "RIGID: A Training-free and Model-Agnostic Framework for Robust
AI-Generated Image Detection"): does an image's representation move more than a photo's under a little noise?

    python bench/rigid.py [--per-class 250] [--write]

RIGID's reading, fixed before measuring: a frozen network's representation of a real photo is more stable under
small Gaussian noise added to its input than that of a generated image, so the fake score is one minus the cosine
similarity of the representations of the image and of the image plus noise (``noise`` times a standard normal, in
the network's normalised input). The network is ImageNet EfficientNet-Lite0 (the packaged weights, its pooled
features, 224 px) with no fine-tuning: nothing here was trained on any of the sets, so every figure is a left-out one.
RIGID's own network is a self-supervised DINOv2 ViT, whose weights this machine cannot fetch. Scored on the same
seeded ``--per-class`` images of each class and set as ``bench/zero_shot.py``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np
import torch
from _common import write_section
from sklearn.metrics import roc_auc_score
from zero_shot import SCORED, sample

from fakescope.evaluation.metrics import roc_auc_interval
from fakescope.forensics.io import load_image
from fakescope.registry import create_detector

#: Noise levels (standard deviations in the normalised input; RIGID's default is 0.05) and images per batch.
NOISE, BATCH = (0.01, 0.05, 0.1), 16


@torch.inference_mode()
def instability(paths: list, model: torch.nn.Module, pre) -> np.ndarray:
    """(N, len(NOISE)): one minus the cosine similarity of each image's pooled features with and without noise."""
    def pooled(x: torch.Tensor) -> torch.Tensor:
        return model.forward_head(model.forward_features(x), pre_logits=True)

    out = []
    for i in range(0, len(paths), BATCH):
        x = pre.to_tensor(np.stack([pre.to_array(load_image(p)) for p in paths[i:i + BATCH]]))
        clean, noise = pooled(x), torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
        out.append(torch.stack([1 - torch.cosine_similarity(clean, pooled(x + level * noise)) for level in NOISE], 1))
    return torch.cat(out).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    model, pre = create_detector("efficientnet_lite0", pretrained=True)
    model.eval()
    rows = ["| left-out set | images | " + " | ".join(f"noise {level}" for level in NOISE) + " |",
            "|---|---|" + "---|" * len(NOISE)]
    aucs = []
    for name in SCORED:
        picked = sample(name, args.per_class)
        labels, scores = np.array([label for _, label in picked]), instability([p for p, _ in picked], model, pre)
        aucs.append([roc_auc_score(labels, s) for s in scores.T])
        cells = [f"{a:.3f} [{lo:.2f}, {hi:.2f}]" for a, (lo, hi) in
                 zip(aucs[-1], (roc_auc_interval(labels, s) for s in scores.T))]
        rows.append(f"| {name} | {len(picked)} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    rows.append("| mean | | " + " | ".join(f"**{a:.3f}**" for a in np.mean(aucs, 0)) + " |")
    body = "\n".join(rows)
    print(body)
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    if args.write:
        command = shlex.join(["python", "bench/rigid.py", *(argv if argv is not None else sys.argv[1:])])
        write_section("Training-free: stability under noise", f"`{command}` ({time.time() - t0:.0f} s here; ROC-AUC, "
                      "fake = the pooled features move more under the noise, [95% bootstrap interval]; every set left "
                      "out: the ImageNet network was not fine-tuned).\n\n" + body + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
