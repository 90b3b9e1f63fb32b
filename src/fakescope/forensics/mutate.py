"""Seeded mutations of small valid image files, for fuzzing the decoders (tests/test_fuzz.py, bench/fuzz.py).

Each case is one mutation of one seed file: bits flipped, the file truncated, a chunk of another seed spliced in,
a run of bytes set to boundary values, or a chunk repeated. The same ``seed`` gives the same cases everywhere.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Formats of the seed files; each is also written with EXIF where the format holds it (orientation 6), so the
#: EXIF readers and ``exif_transpose`` are fuzzed too.
SEED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")


def _picture(size: tuple[int, int], seed: int) -> Image.Image:
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 127 / max(w + h - 2, 1)], axis=2)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8), "RGB")


def seed_files(size: tuple[int, int] = (24, 16)) -> dict[str, bytes]:
    """Small valid files, one or two per format: ``{"JPEG": ..., "JPEG+exif": ..., ...}``."""
    img = _picture(size, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    exif[0x010F] = "fakescope"  # Make
    out = {}
    for fmt in SEED_FORMATS:
        for tag, extra in (("", {}), ("+exif", {"exif": exif})):
            if tag and fmt in ("GIF", "BMP"):
                continue
            buf = io.BytesIO()
            (img.convert("P") if fmt == "GIF" else img).save(buf, format=fmt, **extra)
            out[fmt + tag] = buf.getvalue()
    return out


@dataclass(frozen=True)
class Case:
    name: str  # "<seed>-<mutation>-<index>", for a failure message or a fixture's file name
    data: bytes


def _flip(data: bytes, rng: np.random.Generator, donor: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(len(buf)))
        buf[i] ^= 1 << int(rng.integers(8))
    return bytes(buf)


def _truncate(data: bytes, rng: np.random.Generator, donor: bytes) -> bytes:
    return data[: int(rng.integers(1, len(data)))]


def _splice(data: bytes, rng: np.random.Generator, donor: bytes) -> bytes:
    start = int(rng.integers(len(donor)))
    chunk = donor[start: start + int(rng.integers(1, 257))]
    at = int(rng.integers(len(data)))
    cut = at + (len(chunk) if rng.random() < 0.5 else 0)  # overwrite or insert
    return data[:at] + chunk + data[cut:]


def _boundary(data: bytes, rng: np.random.Generator, donor: bytes) -> bytes:
    buf = bytearray(data)
    at, n = int(rng.integers(len(buf))), int(rng.integers(1, 5))
    buf[at: at + n] = bytes([int(rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))]) * len(buf[at: at + n])
    return bytes(buf)


def _repeat(data: bytes, rng: np.random.Generator, donor: bytes) -> bytes:
    at = int(rng.integers(len(data)))
    chunk = data[at: at + int(rng.integers(1, 65))]
    return data[:at] + chunk * int(rng.integers(2, 6)) + data[at:]


MUTATIONS: dict[str, Callable[[bytes, np.random.Generator, bytes], bytes]] = {
    "flip": _flip, "truncate": _truncate, "splice": _splice, "boundary": _boundary, "repeat": _repeat}


def mutants(n: int | None, seed: int = 0, seeds: dict[str, bytes] | None = None) -> Iterator[Case]:
    """``n`` cases (None: without end), cycling through the seeds and mutations, reproducible from ``seed``."""
    seeds = seeds or seed_files()
    names, kinds = sorted(seeds), sorted(MUTATIONS)
    rng = np.random.default_rng(seed)
    i = 0
    while n is None or i < n:
        name, kind = names[i % len(names)], kinds[(i // len(names)) % len(kinds)]
        donor = seeds[names[int(rng.integers(len(names)))]]
        yield Case(f"{name}-{kind}-{i}", MUTATIONS[kind](seeds[name], rng, donor))
        i += 1
