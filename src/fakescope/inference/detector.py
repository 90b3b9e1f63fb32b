"""The Detector: a model plus the preprocessing, calibration and threshold stored with its weights."""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from fakescope.allocator import reuse_freed_memory
from fakescope.data.preprocess import Preprocess
from fakescope.engine.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint

log = logging.getLogger(__name__)

#: The shipped detector ``fakescope scan`` uses when no ``--model`` is given.
DEFAULT_DETECTOR = "efficientnet_lite2"


class DetectorError(ValueError):
    """The requested detector cannot be used (unknown name, no weights, bad checkpoint)."""


def shipped_weights(name: str) -> Path | None:
    """Path of the weights shipped inside the package for registered detector ``name``, if any."""
    path = Path(str(resources.files("fakescope") / "weights" / f"{name}.safetensors"))
    return path if path.is_file() else None


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


#: Checkpoint kinds other than a single model (``meta.info["kind"]``), e.g. ensembles: kind -> Detector subclass
#: with a ``from_checkpoint(path, name, device)`` classmethod. Registered by the module defining the kind.
DETECTOR_KINDS: dict[str, type["Detector"]] = {}
#: Modules that register a kind, imported when a checkpoint of that kind is loaded before they were.
KIND_MODULES: dict[str, str] = {"dynamic-int8": "fakescope.compress.quantize"}
KIND_MODULES["ensemble"] = "fakescope.models.ensemble"
KIND_MODULES["clip"] = "fakescope.models.temporal"  # video models reading clips of frames (ClipDetector)


def checkpoint_kind(path: Path) -> str:
    from fakescope.engine.checkpoint import read_meta

    return read_meta(path).info.get("kind", "model")


class Detector:
    """Scores images: ``predict_images([...])`` returns calibrated fake probabilities.

    The contract every caller relies on (scan, evaluate, the API, the report, the benchmarks):

    - ``preparer``: a picklable object whose ``to_array(img)`` turns a decoded RGB image into this detector's
      input (run in worker processes);
    - ``predict_batch(items)``: a list of such inputs -> calibrated fake probabilities, shape (N,);
    - ``name``, ``threshold``, ``label(p)``.

    Subclasses (ensembles, patch-level detectors, other runtimes) override those two and keep the rest.
    """

    def __init__(self, model: nn.Module, meta: CheckpointMeta, name: str, device: str = "auto"):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.name = name

    @classmethod
    def load(cls, name_or_path: str = "default", device: str = "auto", backend: str = "torch") -> "Detector":
        """A shipped detector by registry name (``default`` for the default one), a checkpoint path or an
        exported ``.onnx`` file.

        ``backend``: ``torch``; ``onnx`` (ONNX Runtime, exported to fakescope's cache on first use); ``auto``
        (ONNX Runtime when installed and the export works, else PyTorch with one log line).
        """
        reuse_freed_memory()
        if str(name_or_path).endswith(".onnx"):
            from fakescope.inference.onnx import OnnxDetector

            return OnnxDetector.from_onnx(name_or_path)
        detector = cls._load_torch(name_or_path, device)
        if backend == "torch":
            return detector
        from fakescope.inference.onnx import to_backend

        return to_backend(detector, backend)

    @classmethod
    def _load_torch(cls, name_or_path: str, device: str) -> "Detector":
        from fakescope.registry import list_detectors

        key = DEFAULT_DETECTOR if name_or_path == "default" else str(name_or_path)
        path = Path(key)
        if path.suffix == ".safetensors" or path.exists():
            name = str(path)
        elif key in list_detectors():
            found = shipped_weights(key)
            if found is None:
                raise DetectorError(f"{key}: no shipped weights for this detector; train one with "
                                    f"'fakescope train --model {key}' and pass the checkpoint path")
            path, name = found, key
        else:
            raise DetectorError(f"{key}: neither a checkpoint file nor a registered detector "
                                f"(see 'fakescope models')")
        try:
            kind = checkpoint_kind(path)
            if kind != "model":
                if kind not in DETECTOR_KINDS and kind in KIND_MODULES:
                    importlib.import_module(KIND_MODULES[kind])  # registers the kind
                if kind not in DETECTOR_KINDS:
                    raise DetectorError(f"{path}: unknown checkpoint kind {kind!r}")
                return DETECTOR_KINDS[kind].from_checkpoint(path, name, device)
            model, meta = load_checkpoint(path)
        except (CheckpointError, KeyError, RuntimeError) as err:
            raise DetectorError(f"{path}: cannot load checkpoint: {err}") from None
        return cls(model, meta, name, device)

    @property
    def preprocess(self) -> Preprocess:
        return self.meta.preprocess

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    @property
    def preparer(self):
        """Picklable object with ``to_array(img)``; scan workers call it (default: the model's Preprocess)."""
        return self.preprocess

    def prepare(self, img: Image.Image):
        """Decoded image -> the input this detector takes (cacheable, picklable)."""
        return self.preparer.to_array(img)

    def predict_batch(self, items: list) -> np.ndarray:
        """Inputs from :meth:`prepare` -> calibrated fake probabilities, shape (N,)."""
        return self.predict_arrays(np.stack(items))

    @torch.inference_mode()
    def logits(self, arrays: np.ndarray) -> torch.Tensor:
        x = self.preprocess.to_tensor(arrays).to(self.device)
        return self.model(x).float().cpu()

    def predict_arrays(self, arrays: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) arrays from :meth:`prepare` -> calibrated fake probabilities, shape (N,)."""
        return self.probabilities(self.logits(arrays))

    def probabilities(self, logits: torch.Tensor, temperature: float | None = None) -> np.ndarray:
        """(N, 2) logits -> fake probabilities at ``temperature`` (default: the calibrated one), float64 (N,)."""
        t = self.meta.temperature if temperature is None else temperature
        return torch.softmax(logits / t, dim=1)[:, 1].numpy().astype(np.float64)

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.predict_batch([self.prepare(im) for im in images])

    def label(self, probability: float, threshold: float | None = None) -> str:
        return "fake" if probability >= (self.threshold if threshold is None else threshold) else "real"

    @contextlib.contextmanager
    def alongside_workers(self, workers: int) -> Iterator[None]:
        """Run the model while ``workers`` decode processes keep cores busy (a scan). PyTorch gets the cores they
        leave, at least one: more threads wait at every layer's barrier for a core a worker holds
        (docs/benchmarks/speed.md, "Throughput").
        The setting is process-wide and restored afterwards."""
        before = torch.get_num_threads()
        if workers > 0:
            torch.set_num_threads(max(1, min(before, available_cores() - workers)))
        try:
            yield
        finally:
            torch.set_num_threads(before)


def available_cores() -> int:
    """CPU cores this process may run on (respects taskset / cgroup CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
