"""Longer mutation fuzzing of the decode function than the test suite's (tests/test_fuzz.py runs a few thousand
cases): seeded mutants of small valid JPEG/PNG/WebP/GIF/TIFF/BMP files through ``open_image`` and ``image_size``
for ``--minutes`` minutes. Anything but an image or a one-line ``ImageLoadError`` is a finding; with ``--save``
each kind is written once to tests/fixtures/malformed/<Exception>_<sha>.bin, where tests/test_decode.py replays it.

    python bench/fuzz.py --minutes 5 --seed 1 --save
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections import Counter
from pathlib import Path

from fakescope.forensics.io import ImageLoadError, image_size, open_image
from fakescope.forensics.mutate import mutants

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "malformed"


def outcome(data: bytes, name: str, max_pixels: int) -> str:
    """'image', 'error', or the name of the exception that escaped (a finding)."""
    try:
        image_size(data, max_pixels=max_pixels, name=name)
        img = open_image(data, max_pixels=max_pixels, name=name)
    except ImageLoadError as err:
        return "error" if "\n" not in str(err) else "multi-line error"
    except Exception as err:  # noqa: BLE001  what this script looks for
        return type(err).__name__
    return "image" if img.mode == "RGB" else f"mode {img.mode}"


def fuzz(minutes: float, seed: int, max_pixels: int, save: Path | None) -> dict:
    deadline = time.monotonic() + minutes * 60
    counts: Counter = Counter()
    findings: dict[str, str] = {}
    for case in mutants(None, seed=seed):
        if time.monotonic() > deadline:
            break
        kind = outcome(case.data, case.name, max_pixels)
        counts[kind] += 1
        if kind not in ("image", "error") and kind not in findings:
            findings[kind] = case.name
            if save is not None:
                path = save / f"{kind}_{hashlib.sha256(case.data).hexdigest()[:8]}.bin"
                path.write_bytes(case.data)
                findings[kind] = str(path)
    return {"minutes": minutes, "seed": seed, "cases": sum(counts.values()), "outcomes": dict(counts),
            "findings": findings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pixels", type=int, default=4_000_000, help="decode limit (mutated headers can "
                        "declare huge images)")
    parser.add_argument("--save", action="store_true", help=f"write each new finding to {FIXTURES}")
    args = parser.parse_args()
    if not 0 < args.minutes <= 600:
        parser.error("--minutes must be in (0, 600]: a bounded run")
    report = fuzz(args.minutes, args.seed, args.max_pixels, FIXTURES if args.save else None)
    print(json.dumps(report, indent=2))
    raise SystemExit(1 if report["findings"] else 0)


if __name__ == "__main__":
    main()
