"""The registry of detector kinds: every kind is one registered Detector subclass, a checkpoint's kind picks it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakescope.checkpoint import CheckpointMeta, read_meta, save_checkpoint
from fakescope.inference.detector import Detector, DetectorError
from fakescope.inference.kinds import SINGLE, get_kind, kind_of, list_kinds, register_kind
from fakescope.registry import create_detector


def test_every_kind_the_issue_names_is_registered() -> None:
    assert {"model", "patch", "clip", "ensemble", "dynamic-int8", "onnx"} <= set(list_kinds())


@pytest.mark.parametrize("kind", list_kinds())
def test_each_kind_is_a_detector_registered_under_its_name(kind: str) -> None:
    cls = get_kind(kind)
    assert issubclass(cls, Detector) and cls.kind == kind


def test_only_the_single_model_kind_has_an_onnx_twin(tmp_path: Path) -> None:
    from fakescope.inference.detector import BackendUnavailable
    from fakescope.inference.kinds.clip import ClipDetector

    path = _tiny(tmp_path, {})
    single = Detector.load(str(path), device="cpu")
    clip = ClipDetector.from_checkpoint(path, "as-clip", "cpu")  # same weights, another kind
    with pytest.raises(BackendUnavailable, match="checkpoint kind 'clip' has no ONNX export"):
        clip.onnx_detector()
    assert clip.on_backend("auto") is clip and single.on_backend("torch") is single


def test_a_kind_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_kind(SINGLE)(type("Twice", (Detector,), {}))
    with pytest.raises(KeyError, match="unknown detector kind 'nope'; known: clip"):
        get_kind("nope")


def _tiny(tmp_path: Path, info: dict) -> Path:
    model, pre = create_detector("ela-cnn")
    return save_checkpoint(tmp_path / "m.safetensors", model.eval(), CheckpointMeta("ela-cnn", pre, info=info))


def test_kind_comes_from_the_metadata_or_the_suffix(tmp_path: Path) -> None:
    assert kind_of(_tiny(tmp_path, {})) == SINGLE
    assert kind_of(tmp_path / "exported.onnx") == "onnx"  # by suffix, before reading anything
    det = Detector.load(str(_tiny(tmp_path, {"note": "plain"})), device="cpu")
    assert det.kind == SINGLE and type(det) is get_kind(SINGLE)


def test_an_unknown_kind_is_a_one_line_error(tmp_path: Path) -> None:
    path = _tiny(tmp_path, {"kind": "hologram"})
    assert read_meta(path).info["kind"] == "hologram"
    with pytest.raises(DetectorError, match=r"m.safetensors: unknown checkpoint kind 'hologram'"):
        Detector.load(str(path))


def test_default_video_score_is_the_top_k_mean_of_frame_scores(tmp_path: Path) -> None:
    det = Detector.load(str(_tiny(tmp_path, {})), device="cpu")
    assert det.score_frames([None] * 4, np.array([0.1, 0.9, 0.5, 0.2]), top_k=2) == pytest.approx(0.7)
