"""Static int8 of the shipped default: calibrated on the training splits, compared with fp32 on every validation split.

    python bench/int8.py [--calibration 32] [--write]

fp32 is the ONNX model shipped beside the default's weights; int8 is ONNX Runtime's static QDQ quantisation of it
(uint8 activations, int8 per-channel weights; ``fakescope.compress.quantize.quantize_onnx_static``) calibrated on
--calibration images per class from the training split of each set in bench/_common.SETS (the split ``fakescope
train`` makes, seed 0). Both score every image of each set's validation split. Per set: ROC-AUC of each (sets with
reals only have none), the paired bootstrap difference int8 - fp32 with its 95% interval, and the real images
flagged at the model's threshold by each. The rule: int8 becomes the default backend only if, on every set, ROC-AUC
drops by at most 0.005 and the reals flagged change by at most 0.5 points. --write puts the table under "## Static int8 of the default".
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np
from _common import SETS, train_val_split, write_section

from fakescope.evaluation.metrics import compute_metrics, paired_difference
from fakescope.inference.detector import Detector
from fakescope.inference.kinds.onnx import OnnxDetector, cached_onnx_path
from fakescope.inference.scan import iter_prepared

log = logging.getLogger("bench.int8")
#: The rule for shipping int8 as the default backend.
MAX_AUC_DROP, MAX_FLAGGED_CHANGE = 0.005, 0.005


def calibration_paths(per_class: int, seed: int = 0) -> list[Path]:
    """``per_class`` real and ``per_class`` fake images from the training split of every set."""
    rng = random.Random(seed)
    paths = []
    for name in SETS:
        train = train_val_split(name)[0]
        for label in (0, 1):
            pool = sorted(str(s.path) for s in train if s.label == label)
            paths += [Path(p) for p in rng.sample(pool, min(per_class, len(pool)))]
    return paths


def prepared_arrays(paths: list[Path], detector: Detector, workers: int = 2) -> tuple[list[str], np.ndarray]:
    """(paths that decoded, their model inputs), decoded once in the scan's worker processes."""
    done = [item for item in iter_prepared(paths, detector.preparer, workers) if item.error is None]
    return [item.path for item in done], np.stack([item.array for item in done])


def int8_model(fp32: OnnxDetector, per_class: int) -> OnnxDetector:
    """The int8 twin of the shipped fp32 model, calibrated on the training splits (cached by the fp32 file's hash,
    calibration size in the name)."""
    from fakescope.compress.quantize import quantize_onnx_static
    from fakescope.data.cache import file_digest

    path = cached_onnx_path(fp32.name, file_digest(fp32.onnx_path)[:16], f"int8-cal{per_class}")
    if not path.is_file():
        _, calibration = prepared_arrays(calibration_paths(per_class), fp32)
        log.info("calibrating int8 on %d training-split images", len(calibration))
        quantize_onnx_static(fp32.onnx_path, path, calibration, fp32.meta)
    return OnnxDetector.from_onnx(path, name=fp32.name)


def predict(detector: Detector, arrays: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.concatenate([detector.predict_arrays(arrays[i:i + batch_size]) for i in range(0, len(arrays), batch_size)])


def set_row(name: str, fp32: OnnxDetector, int8: OnnxDetector) -> dict:
    val = train_val_split(name)[1]
    labels_by_path = {str(s.path): s.label for s in val}
    paths, arrays = prepared_arrays([s.path for s in val], fp32)
    labels = np.array([labels_by_path[p] for p in paths])
    p32, p8 = predict(fp32, arrays), predict(int8, arrays)
    reals = labels == 0
    flagged = [float(np.mean(p[reals] >= fp32.threshold)) for p in (p32, p8)]
    both = len(np.unique(labels)) == 2
    d = paired_difference(labels, p8, p32) if both else {"difference": None, "low": None, "high": None}
    return {"set": name, "n": len(labels), "reals": int(reals.sum()),
            "auc_fp32": compute_metrics(labels, p32)["roc_auc"], "auc_int8": compute_metrics(labels, p8)["roc_auc"],
            "diff": d["difference"], "low": d["low"], "high": d["high"], "flagged_fp32": flagged[0],
            "flagged_int8": flagged[1], "max_abs_p": float(np.abs(p8 - p32).max())}


def passes(r: dict) -> bool:
    auc_kept = r["diff"] is None or r["diff"] >= -MAX_AUC_DROP
    return auc_kept and abs(r["flagged_int8"] - r["flagged_fp32"]) <= MAX_FLAGGED_CHANGE


def _auc_cells(r: dict) -> str:
    if r["diff"] is None:
        return "- | - | - (reals only)"
    return (f"{r['auc_fp32']:.4f} | {r['auc_int8']:.4f} | {r['diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]")


def markdown(rows: list[dict], int8: OnnxDetector, fp32: OnnxDetector, per_class: int, seconds: float) -> str:
    verdict = all(passes(r) for r in rows)
    mb = [p.stat().st_size / 1e6 for p in (fp32.onnx_path, int8.onnx_path)]
    lines = [f"Command: `python bench/int8.py {' '.join(sys.argv[1:])}` ({seconds:.0f} s)", "",
             f"fp32: the shipped ONNX model ({mb[0]:.1f} MB); int8: static QDQ (uint8 activations, int8 per-channel "
             f"weights, {mb[1]:.1f} MB) calibrated on {per_class} real + {per_class} fake images from the training "
             f"split of each set. Every validation-split image scored by both; threshold {fp32.threshold:.3f}.", "",
             "| set | n (reals) | ROC-AUC fp32 | ROC-AUC int8 | int8 - fp32 [paired 95%] | reals flagged fp32 | "
             "reals flagged int8 | largest probability change | within the rule |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['n']} ({r['reals']}) | {_auc_cells(r)} | {r['flagged_fp32']:.1%} | "
              f"{r['flagged_int8']:.1%} | {r['max_abs_p']:.3f} | {'yes' if passes(r) else 'no'} |" for r in rows]
    lines += ["", f"Rule: ROC-AUC drop <= {MAX_AUC_DROP} and reals flagged within {MAX_FLAGGED_CHANGE * 100:.1f} "
              f"points on every set. **{'int8 meets it' if verdict else 'int8 does not meet it: fp32 stays the default'}"
              f"**."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", type=int, default=32, help="Calibration images per class and set.")
    ap.add_argument("--write", action="store_true", help="Write the section into its docs/benchmarks page.")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.time()
    fp32 = Detector.load("default", backend="onnx", device="cpu")
    int8 = int8_model(fp32, args.calibration)
    rows = []
    for name in SETS:
        rows.append(set_row(name, fp32, int8))
        log.info("%s", rows[-1])
    text = markdown(rows, int8, fp32, args.calibration, time.time() - start)
    print(text)
    if args.write:
        write_section("Static int8 of the default", text)


if __name__ == "__main__":
    main()
