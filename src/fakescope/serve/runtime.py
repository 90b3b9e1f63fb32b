"""The detector a server answers with: loaded once in the background, then shared by every request.

Model calls run in worker threads (never on the event loop, so ``/healthz`` answers during inference and
while the model loads) and one at a time: a :class:`anyio.CapacityLimiter` of one token queues them without
tying up a thread per waiting request, and keeps Grad-CAM's hooks from meeting a concurrent forward pass.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from fakescope.allocator import release_free_memory
from fakescope.inference.detector import Detector, Scores
from fakescope.serve.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class ServerBusy(Exception):
    """Admitting a request now would pass a server-wide limit: answer 503 with ``Retry-After``."""


class PixelBudget:
    """The decoded pixels the server holds at once. A request takes an image's pixels before decoding it and gives
    them back once the image is prepared (or, with explain=true, answered); when they would pass the total, it is
    refused instead of waiting, so memory stays bounded whatever clients send. Used from the event loop only."""

    #: Freed pixels after which the heap's free memory is handed back to the kernel (a 50-Mpx decode leaves about
    #: a GB in a tuned allocator otherwise, see :mod:`fakescope.allocator`, which the next one would add to).
    TRIM_AFTER = 20_000_000

    def __init__(self, total: int):
        self.total, self.used, self._freed = total, 0, 0

    def take(self, n: int) -> None:
        if self.used + n > self.total:
            raise ServerBusy(f"the server is decoding {self.used:,} pixels of other requests; this image needs "
                             f"{n:,} more than its limit of {self.total:,} allows now")
        self.used += n

    def give(self, n: int) -> None:
        self.used -= n
        self._freed += n
        if self._freed >= self.TRIM_AFTER:
            self._freed = 0
            threading.Thread(target=release_free_memory, daemon=True).start()  # off the event loop


class ModelRuntime:
    """Holds the loaded :class:`Detector` (or why it failed to load) and serialises access to it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.detector: Detector | None = None
        self.error: str | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._decode_limiter: anyio.CapacityLimiter | None = None
        self.pixels = PixelBudget(settings.max_inflight_pixels)
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

        start = time.perf_counter()
        try:
            detector = Detector.load(self.settings.model, device=self.settings.device, backend=self.settings.backend)
        except (DetectorError, OSError) as err:
            self.error = str(err)
            log.error("model %s not loaded: %s", self.settings.model, err)
            return
        if "torch" in sys.modules:  # a PyTorch detector (an ONNX one never imports it)
            sys.modules["torch"].set_num_threads(self.settings.threads)  # process-wide: the worker threads too
        self.detector = detector
        log.info("model %s loaded in %.1f s (threshold %.3f)", detector.name, time.perf_counter() - start,
                 detector.threshold)

    @property
    def public_error(self) -> str | None:
        """Why the model is not available, as clients may see it: the details (a checkpoint's path on this server)
        stay in the log."""
        return "the model failed to load (see the server log)" if self.error else None

    async def start(self) -> None:
        """Load the model in a worker thread; call from the app's lifespan (requests are served meanwhile)."""
        self._limiter = anyio.CapacityLimiter(1)
        self._decode_limiter = anyio.CapacityLimiter(max(1, self.settings.threads))
        await anyio.to_thread.run_sync(self.load, abandon_on_cancel=True)

    async def run_decoder(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (decoding, preparing) in a worker thread, as many at once as the model has threads."""
        if self._decode_limiter is None:
            raise RuntimeError("ModelRuntime.start() was not awaited")
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._decode_limiter)

    async def run_model(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (anything touching the model) in a worker thread, one call at a time."""
        if self._limiter is None:
            raise RuntimeError("ModelRuntime.start() was not awaited")
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def predict(self, items: list) -> Scores:
        """Prepared inputs (``detector.prepare``) -> the detector's :class:`~fakescope.inference.detector.Scores`."""
        assert self.detector is not None
        return await self.run_model(self.detector.score_batch, items)

    def catalog(self) -> list[dict[str, Any]]:
        """Every registered detector (read once from the catalog file, :mod:`fakescope.inference.catalog`)."""
        from fakescope.inference.catalog import detector_catalog

        with self._catalog_lock:
            if self._catalog is None:
                self._catalog = detector_catalog()
            return self._catalog
