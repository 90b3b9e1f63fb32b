"""Invariance check: real images must stay "real" after the everyday changes of sharing and saving.

Each real image is re-saved at JPEG quality 60, 75, 90 and 100 and rescaled to 0.5x and 0.75x; the false-positive
rate at the detector's threshold over all those variants is the figure (target: at most 5%).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from fakescope.data.discovery import Sample
from fakescope.evaluation.robustness import downscale, jpeg

INVARIANCE_VARIANTS = {
    "jpeg q60": partial(jpeg, quality=60),
    "jpeg q75": partial(jpeg, quality=75),
    "jpeg q90": partial(jpeg, quality=90),
    "jpeg q100": partial(jpeg, quality=100),
    "rescale 0.5": partial(downscale, factor=0.5),
    "rescale 0.75": partial(downscale, factor=0.75),
}


def invariance_fpr(detector, samples: Sequence[Sample], threshold: float | None = None, batch_size: int = 32,
                   workers: int | None = None) -> dict[str, Any]:
    """False-positive rate of ``detector`` on the real ``samples`` under each variant, and over all of them."""
    from fakescope.evaluation.evaluate import score_samples

    reals = [s for s in samples if s.label == 0]
    if not reals:
        raise ValueError("the invariance check needs real images")
    thr = detector.threshold if threshold is None else threshold
    per_variant, flagged, total = {}, 0, 0
    for name, transform in INVARIANCE_VARIANTS.items():
        _, probs, _ = score_samples(detector, reals, batch_size, workers, transform=transform)
        n_fake = sum(p >= thr for p in probs)
        per_variant[name] = n_fake / max(len(probs), 1)
        flagged += n_fake
        total += len(probs)
    return {"n_real": len(reals), "threshold": thr, "fpr": flagged / max(total, 1), "per_variant": per_variant}
