"""The Detector: a model plus the preprocessing, calibration and threshold stored with its weights.

This module imports no PyTorch: a detector whose ONNX file is at hand (the shipped default, or a checkpoint
exported before) scores through ONNX Runtime and NumPy alone; torch is imported when a PyTorch model is built.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image

from fakescope.allocator import reuse_freed_memory
from fakescope.checkpoint import CheckpointError, CheckpointMeta
from fakescope.data.preprocess import Preprocess
from fakescope.familiarity import FeatureModel
from fakescope.inference.kinds import get_kind, kind_of, list_kinds

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

#: The shipped detector ``fakescope scan`` uses when no ``--model`` is given.
DEFAULT_DETECTOR = "efficientnet_lite2"


#: ``Detector.load(backend=...)``: ``auto`` is ONNX Runtime when the detector can use it, else PyTorch.
BACKENDS = ("auto", "onnx", "torch")


class Scores(NamedTuple):
    """What :meth:`Detector.score_batch` gives for a batch of N inputs."""

    #: (N,) calibrated fake probabilities: the model's, with the copy-move evidence added when it checks for it.
    probabilities: np.ndarray
    #: (N,) familiarity in [0, 1], or None without a description of the training features.
    familiarity: np.ndarray | None = None
    #: (N,) keypoint pairs one transform maps onto each other in each input, or None when it does not check.
    copy_move: np.ndarray | None = None


class DetectorError(ValueError):
    """The requested detector cannot be used (unknown name, no weights, bad checkpoint)."""


class BackendUnavailable(DetectorError):
    """This detector cannot run on the requested backend; the message says why."""


def shipped_weights(name: str) -> Path | None:
    """Path of the weights shipped inside the package for registered detector ``name``, if any."""
    path = Path(str(resources.files("fakescope") / "weights" / f"{name}.safetensors"))
    return path if path.is_file() else None


def resolve_device(device: str = "auto") -> torch.device:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_checkpoint(name_or_path: str) -> tuple[Path, str] | None:
    """(checkpoint file, detector name) for a shipped name (``default`` included) or a checkpoint path, found
    without the registry (so without PyTorch); None when it names neither a file nor shipped weights."""
    key = DEFAULT_DETECTOR if name_or_path == "default" else str(name_or_path)
    path = Path(key)
    if path.is_file():
        return path, str(path)
    found = shipped_weights(key)
    return (found, key) if found is not None else None


def softmax_fake(logits: Any, temperature: float) -> np.ndarray:
    """(N, 2) logits -> softmax probability of the second class (fake) at ``temperature``, float64 (N,); computed
    in float32 as ``torch.softmax`` does (shift by the row maximum, exponentiate, normalise)."""
    z = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e[:, 1] / e.sum(axis=1)).astype(np.float64)


class Detector:
    """Scores images: ``predict_images([...])`` returns calibrated fake probabilities.

    The contract every caller relies on (scan, evaluate, the API, the report, the benchmarks):

    - ``preparer``: a picklable object whose ``to_array(img)`` turns a decoded RGB image into this detector's
      input (run in worker processes);
    - ``predict_batch(items)``: a list of such inputs -> calibrated fake probabilities, shape (N,);
    - ``score_batch(items)``: :class:`Scores`: the same probabilities, with the copy-move evidence added when the
      detector checks for copy-moves (:attr:`checks_copy_moves`), plus each input's familiarity
      (:mod:`fakescope.familiarity`; None when the checkpoint has no description of its training features) and
      copy-move pairs (:mod:`fakescope.forensics.copymove`; None when it does not check);
    - ``probabilities(logits)``: the one place logits become calibrated probabilities;
    - ``explain_map(img, method)``: where in the image the evidence for "fake" is (a class-activation map);
    - ``score_frames(frames, frame_scores, top_k)``: a video's probability from its sampled frames;
    - ``name``, ``threshold``, ``label(p)``.

    Each kind (:mod:`fakescope.inference.kinds`: single model, patches, clips, ensembles, int8, ONNX) is a
    subclass registered with ``register_kind`` that overrides what it does differently and keeps the rest.
    """

    #: Set by ``register_kind``; a Detector built directly around a model belongs to no registered kind.
    kind: str = "unregistered"
    #: The checkpoint file the detector was loaded from, if any (names its cached ONNX export).
    checkpoint: Path | None = None

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
        if backend not in BACKENDS:
            raise DetectorError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        if backend != "torch" or str(name_or_path).endswith(".onnx"):
            found = get_kind("onnx").ready(name_or_path, device)  # an .onnx file, the shipped or cached one: no torch
            if found is not None:
                return found
        return cls._load_kind(name_or_path, device).on_backend(backend)

    @classmethod
    def _load_kind(cls, name_or_path: str, device: str) -> "Detector":
        """The detector of whatever kind the file holds (:mod:`fakescope.inference.kinds`)."""
        path, name = cls._locate(name_or_path)
        try:
            kind = kind_of(path)
            if kind not in list_kinds():
                raise DetectorError(f"{path}: unknown checkpoint kind {kind!r}")
            detector = get_kind(kind).from_checkpoint(path, name, device)
        except (CheckpointError, KeyError, RuntimeError) as err:
            raise DetectorError(f"{path}: cannot load checkpoint: {err}") from None
        detector.checkpoint = path
        return detector

    @classmethod
    def _locate(cls, name_or_path: str) -> tuple[Path, str]:
        """(file, display name) of a registry name (``default``: the default detector) or a path."""
        from fakescope.registry import list_detectors

        key = DEFAULT_DETECTOR if name_or_path == "default" else str(name_or_path)
        path = Path(key)
        if path.suffix in (".safetensors", ".onnx") or path.exists():
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
        return path, name

    @classmethod
    def from_checkpoint(cls, path: str | Path, name: str, device: str = "auto") -> "Detector":
        """The detector a checkpoint of this kind holds; by default one registered model and its weights (kinds
        stored otherwise override it)."""
        from fakescope.checkpoint import load_checkpoint

        model, meta = load_checkpoint(path)
        return cls(model, meta, name, device)

    def on_backend(self, backend: str = "auto") -> "Detector":
        """This detector on ``backend``: ``torch`` as it is, ``onnx`` through ONNX Runtime (an error saying why
        when it cannot), ``auto`` ONNX Runtime when it can be used, else as it is with one log line saying why."""
        if backend not in BACKENDS:
            raise DetectorError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        if backend == "torch":
            return self
        try:
            return self.onnx_detector()
        except BackendUnavailable as err:
            if backend == "onnx":
                raise DetectorError(f"{self.name}: cannot use the onnx backend: {err}") from None
            log.info("using the PyTorch backend for %s (%s)", self.name, err)
            return self

    def onnx_detector(self) -> "Detector":
        """This detector run by ONNX Runtime; ``BackendUnavailable`` saying why when there is none (the default:
        only a single model exports)."""
        raise BackendUnavailable(f"checkpoint kind {self.kind!r} has no ONNX export")

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
        if self.feature_model is None:
            return self.predict_arrays(np.stack(items))
        return self.model_scores(items).probabilities

    def logits(self, arrays: np.ndarray) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            x = self.preprocess.to_tensor(arrays).to(self.device)
            return self.model(x).float().cpu()

    @property
    def feature_model(self) -> FeatureModel | None:
        """The description of the training features stored with the weights (``info["familiarity"]``), if any."""
        if "_feature_model" not in self.__dict__:
            stored = self.meta.info.get("familiarity")
            self._feature_model = FeatureModel.from_dict(stored) if stored else None
            if stored and self._feature_model is None:
                log.warning("%s: its familiarity description reads features this version does not compute (%s); "
                            "results carry no familiarity until it is described again (docs/models.md)",
                            self.name, stored.get("features", "pooled features"))
        return self._feature_model

    @property
    def checks_copy_moves(self) -> bool:
        """Whether this detector adds copy-move evidence to its scores (``info["copy_move"]``, which a recipe's
        ``copy_move: true`` sets): the keypoint pairs of :mod:`fakescope.forensics.copymove` in its squashed RGB
        input. The shipped default does."""
        return bool(self.meta.info.get("copy_move")) and copy_move_input(self.preprocess)

    def decision_threshold(self, copy_move: bool = True) -> float:
        """The threshold for its scores: the shipped one, or, for scores without the copy-move check of a detector
        that makes it, the one chosen on the model's scores alone (recorded when the check's threshold was)."""
        if copy_move or not self.checks_copy_moves:
            return self.threshold
        return float(self.meta.info.get("metrics", {}).get("model_threshold") or self.threshold)

    def score_batch(self, items: list, copy_move: bool = True) -> Scores:
        """Inputs from :meth:`prepare` -> :class:`Scores`, from one pass of the model. ``copy_move=False``: without
        the copy-move check even when the detector makes it (the model's scores alone, about twice as fast)."""
        scores = self.model_scores(items)
        return self.with_copy_moves(items, scores) if copy_move else scores

    def with_copy_moves(self, items: list, scores: Scores) -> Scores:
        """``scores`` with the copy-move evidence of ``items`` added, when this detector checks for it."""
        if not self.checks_copy_moves:
            return scores
        from fakescope.forensics.copymove import pairs_of, with_copy_move

        pairs = pairs_of(items)
        return scores._replace(probabilities=with_copy_move(scores.probabilities, pairs), copy_move=pairs)

    def model_scores(self, items: list) -> Scores:
        """The model's own :class:`Scores` (no copy-move evidence), read with its description if any (familiarity)."""
        if self.feature_model is None:
            return Scores(self.predict_batch(items))
        logits, features = self.logits_and_features(np.stack(items))
        return Scores(*self.feature_model.read(self.probabilities(logits), features))

    def image_features(self, items: list) -> np.ndarray:
        """Inputs from :meth:`prepare` -> the (N, D) stage statistics familiarity reads, one row per image."""
        return self.logits_and_features(np.stack(items))[1]

    def logits_and_features(self, arrays: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """(N, 2) logits and the (N, D) stage statistics familiarity reads, from one pass
        (:func:`logits_and_stage_statistics`)."""
        import torch

        with torch.inference_mode():
            x = self.preprocess.to_tensor(arrays).to(self.device)
            logits, features = logits_and_stage_statistics(self.model, x)
            return logits.float().cpu(), features.float().cpu().numpy()

    def predict_arrays(self, arrays: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) arrays from :meth:`prepare` -> calibrated fake probabilities, shape (N,)."""
        return self.probabilities(self.logits(arrays))

    def probabilities(self, logits: Any, temperature: float | None = None) -> np.ndarray:
        """(N, 2) logits (tensor or array) -> fake probabilities at ``temperature`` (default: the calibrated one),
        float64 (N,)."""
        return softmax_fake(logits, self.meta.temperature if temperature is None else temperature)

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.predict_batch([self.prepare(im) for im in images])

    def explain_map(self, img: Image.Image, method: str | None = None) -> np.ndarray:
        """Class-activation map of the fake class for ``img`` through the layer the architecture declares in
        the registry: float32 (H, W) in [0, 1] at the image's own size. Raises ``ExplainError`` when there is
        no single model to explain."""
        from torch import nn

        from fakescope.explain.cam import DEFAULT_CAM, ExplainError, model_cam, model_input, resize_map

        if not isinstance(self.model, nn.Module):
            raise ExplainError(f"detector {self.name!r} has no single model to explain")
        heat = model_cam(self.model, self.meta.architecture, model_input(self.preprocess, img), method or DEFAULT_CAM)
        return resize_map(self.preprocess.arranged(heat, inverse=True), img.size)

    def score_frames(self, frames: list, frame_scores: np.ndarray, top_k: int) -> float:
        """A video's fake probability from its sampled frames (one prepared input each, in time order) and their
        scores: by default the mean of the ``top_k`` highest frame scores (a few convincing fake frames flag a
        video, one odd frame does not). Kinds that read sequences score ``frames`` themselves."""
        from fakescope.video.scan import top_k_mean

        return top_k_mean(frame_scores, top_k)

    def label(self, probability: float, threshold: float | None = None) -> str:
        return "fake" if probability >= (self.threshold if threshold is None else threshold) else "real"

    @contextlib.contextmanager
    def alongside_workers(self, workers: int) -> Iterator[None]:
        """Run the model while ``workers`` decode processes keep cores busy (a scan). PyTorch gets the cores they
        leave, at least one: more threads wait at every layer's barrier for a core a worker holds
        (docs/benchmarks/speed.md, "Throughput").
        The setting is process-wide and restored afterwards."""
        import torch

        before = torch.get_num_threads()
        if workers > 0:
            torch.set_num_threads(max(1, min(before, available_cores() - workers)))
        try:
            yield
        finally:
            torch.set_num_threads(before)


def copy_move_input(pre: Preprocess) -> bool:
    """Whether inputs prepared by ``pre`` are what the copy-move check reads: the whole image, squashed, RGB, in its
    own layout."""
    return pre.resize == "squash" and pre.input_mode == "rgb" and not pre.shuffle


def has_stage_features(model: nn.Module) -> bool:
    """Whether ``model`` follows timm's contract for intermediate features: ``forward_intermediates`` (each feature
    stage's output and the final features) and ``forward_head``."""
    return callable(getattr(model, "forward_intermediates", None)) and callable(getattr(model, "forward_head", None))


def logits_and_stage_statistics(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of a timm model and, from the same pass, its stage statistics: each channel's mean and standard
    deviation over the image, for every feature stage timm lists (``feature_info``), concatenated, shape (N, D).
    What familiarity describes: the early stages keep how an image was made and processed, which the pooled features
    the classifier reads are trained to ignore (docs/benchmarks/held-out.md, "Familiarity")."""
    if not has_stage_features(model):
        raise DetectorError(f"{type(model).__name__} does not expose its stages (timm's forward_intermediates)")
    final, stages = model.forward_intermediates(x)
    return model.forward_head(final), stage_statistics(stages)


def stage_statistics(stages: list[torch.Tensor]) -> torch.Tensor:
    """Each channel's mean and standard deviation over the image, for each (N, C, H, W) stage, concatenated (N, D)."""
    import torch

    return torch.cat([torch.cat([s.mean((2, 3)), s.std((2, 3), correction=0)], 1) for s in stages], 1)


def classifier_module(model: nn.Module) -> nn.Module:
    """The layer producing the logits: timm's ``get_classifier()``, else the model's last ``nn.Linear``."""
    from torch import nn

    getter = getattr(model, "get_classifier", None)
    if callable(getter) and isinstance(getter(), nn.Module) and not isinstance(getter(), nn.Identity):
        return getter()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DetectorError(f"{type(model).__name__}: no classifier layer found for penultimate features")
    return linears[-1]


def available_cores() -> int:
    """CPU cores this process may run on (respects taskset / cgroup CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
