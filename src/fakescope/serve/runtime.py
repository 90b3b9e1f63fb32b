"""The detector a server answers with: loaded once in the background, then shared by every request.

Model calls run in worker threads (never on the event loop, so ``/healthz`` answers during inference and
while the model loads) and one at a time: a :class:`anyio.CapacityLimiter` of one token queues them without
tying up a thread per waiting request, and keeps Grad-CAM's hooks from meeting a concurrent forward pass.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import numpy as np
import torch

from fakescope.inference.detector import Detector
from fakescope.serve.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class ModelRuntime:
    """Holds the loaded :class:`Detector` (or why it failed to load) and serialises access to it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.detector: Detector | None = None
        self.error: str | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._catalog: list[dict[str, Any]] | None = None
        self._catalog_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.detector is not None

    @property
    def model_name(self) -> str | None:
        """The loaded detector's name as clients see it: a checkpoint's file name, never the server's path."""
        if self.detector is None:
            return None
        name = self.detector.name
        return Path(name).name if name.endswith(".safetensors") or "/" in name or "\\" in name else name

    def load(self) -> None:
        """Load ``settings.model``; on failure keep the reason for ``/readyz`` instead of raising."""
        from fakescope.inference.detector import DetectorError

        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)  # process-wide; applies to the worker threads too
        start = time.perf_counter()
        try:
            detector = Detector.load(self.settings.model, device=self.settings.device)
        except (DetectorError, OSError) as err:
            self.error = str(err)
            log.error("model %s not loaded: %s", self.settings.model, err)
            return
        self.detector = detector
        log.info("model %s loaded in %.1f s (threshold %.3f)", detector.name, time.perf_counter() - start,
                 detector.threshold)

    async def start(self) -> None:
        """Load the model in a worker thread; call from the app's lifespan (requests are served meanwhile)."""
        self._limiter = anyio.CapacityLimiter(1)
        await anyio.to_thread.run_sync(self.load, abandon_on_cancel=True)

    async def run_model(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (anything touching the model) in a worker thread, one call at a time."""
        if self._limiter is None:
            raise RuntimeError("ModelRuntime.start() was not awaited")
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def predict(self, items: list) -> tuple[np.ndarray, np.ndarray | None]:
        """Prepared inputs (``detector.prepare``) -> (calibrated fake probabilities, familiarity or None)."""
        assert self.detector is not None
        return await self.run_model(self.detector.score_batch, items)

    def catalog(self) -> list[dict[str, Any]]:
        """Every registered detector (computed once: counting parameters builds each model on the meta device)."""
        from fakescope.inference.catalog import detector_catalog

        with self._catalog_lock:
            if self._catalog is None:
                self._catalog = detector_catalog()
            return self._catalog
