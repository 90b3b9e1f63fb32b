"""On-disk cache of preprocessed arrays, keyed by file content and preprocessing parameters.

Epochs after the first read a small .npy instead of running the JPEG codec twice per image. A changed file or
changed preprocessing gives a new key, so stale entries are never used.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def default_cache_dir() -> Path:
    base = os.environ.get("FAKESCOPE_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "fakescope")
    return Path(base).expanduser()


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


class ArrayCache:
    """``get(path, compute)`` returns the cached array for ``path`` or computes and stores it."""

    def __init__(self, root: str | Path, namespace: str):
        self.root = Path(root) / "arrays" / namespace
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def _entry(self, path: str | Path) -> Path:
        digest = file_digest(path)
        return self.root / digest[:2] / f"{digest}.npy"

    def get(self, path: str | Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
        entry = self._entry(path)
        if entry.exists():
            try:
                arr = np.load(entry, allow_pickle=False)
                self.hits += 1
                return arr
            except (OSError, ValueError):
                entry.unlink(missing_ok=True)  # a half-written or corrupt entry: recompute
        arr = compute()
        self.misses += 1
        entry.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so parallel workers never read a partial entry.
        fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, entry)
        return arr
