"""Shared fixtures: tiny images made on the fly, the real-data folder, a tiny untrained ELA-CNN checkpoint."""
from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def data_root_path() -> Path:
    """The shared real-data folder (``FAKESCOPE_DATA`` or ``<repo>/../shared/data``)."""
    return Path(os.environ.get("FAKESCOPE_DATA", REPO / ".." / "shared" / "data")).resolve()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never read or write the user's fakescope cache (array cache, ONNX exports)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FAKESCOPE_CACHE", str(tmp_path_factory.mktemp("fakescope-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    """One thread (the machine is shared) and fixed seeds, so every test is repeatable."""
    torch.set_num_threads(1)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def make_image(size: tuple[int, int] = (48, 40), mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth random-ish image (gradients plus noise) so JPEG and ELA behave as on photos."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 127 / max(w + h - 2, 1)], axis=2)
    arr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


@pytest.fixture
def tiny_images(tmp_path: Path) -> Callable[..., list[Path]]:
    """Factory: ``tiny_images(n, folder="imgs", fmt="jpg", size=(48, 40))`` writes ``n`` distinct images."""

    def write(n: int = 4, folder: str | Path = "imgs", fmt: str = "jpg", size: tuple[int, int] = (48, 40),
              prefix: str = "img", seed: int = 0) -> list[Path]:
        out = tmp_path / folder
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(n):
            path = out / f"{prefix}{i:03d}.{fmt}"
            img = make_image(size, seed=seed * 1000 + i)
            kwargs = {"quality": 90} if fmt in ("jpg", "jpeg") else {}
            img.save(path, **kwargs)
            paths.append(path)
        return paths

    return write


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real-data folder, or skip with the reason."""
    root = data_root_path()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set FAKESCOPE_DATA)")
    return root


@pytest.fixture(scope="session")
def tiny_ela_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ELA-CNN saved as a fakescope checkpoint (for scan / evaluate / CLI tests)."""
    from fakescope.checkpoint import CheckpointMeta, save_checkpoint
    from fakescope.registry import create_detector

    torch.manual_seed(0)
    model, pre = create_detector("ela-cnn")
    path = tmp_path_factory.mktemp("ckpt") / "tiny-ela.safetensors"
    return save_checkpoint(path, model.eval(), CheckpointMeta("ela-cnn", pre, info={"note": "untrained, tests only"}))
