"""ONNX Runtime backend: export matches PyTorch, the .onnx file carries its metadata, auto falls back cleanly."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from conftest import make_image

from fakescope.checkpoint import CheckpointMeta, save_checkpoint
from fakescope.cli import app
from fakescope.data.preprocess import Preprocess
from fakescope.inference import onnx as fonnx
from fakescope.inference.detector import Detector, DetectorError
from fakescope.inference.kinds.onnx import OnnxDetector
from fakescope.models.ela_cnn import ELACNN
from fakescope.registry import create_detector


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module, so the tiny model is exported once."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKESCOPE_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def ela32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    meta = CheckpointMeta("ela-cnn", Preprocess("ela", size=32), temperature=1.7, threshold=0.42)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "ela32.safetensors", ELACNN(size=32).eval(), meta)


def test_onnx_backend_matches_pytorch_and_onnx_file_stands_alone(ela32: Path, _cache: Path) -> None:
    torch_det = Detector.load(str(ela32), backend="torch")
    onnx_det = Detector.load(str(ela32), backend="onnx")
    assert isinstance(onnx_det, OnnxDetector)
    assert onnx_det.onnx_path.parent == _cache / "onnx" and onnx_det.onnx_path.name.startswith("ela32-")
    images = [make_image((70, 50), seed=i) for i in range(5)]
    for batch in (images, images[:1]):  # dynamic batch axis
        diff = np.abs(torch_det.predict_images(batch) - onnx_det.predict_images(batch)).max()
        assert diff <= fonnx.FP32_TOLERANCE
    mtime = onnx_det.onnx_path.stat().st_mtime_ns
    assert Detector.load(str(ela32), backend="auto").onnx_path.stat().st_mtime_ns == mtime  # cached, not re-exported

    alone = Detector.load(str(onnx_det.onnx_path))  # no checkpoint needed
    assert alone.preprocess == torch_det.preprocess
    assert (alone.threshold, alone.meta.temperature) == (0.42, 1.7)
    np.testing.assert_allclose(alone.predict_images(images), torch_det.predict_images(images), atol=1e-4)


def test_auto_falls_back_to_pytorch_with_one_line(ela32: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FAKESCOPE_CACHE", str(tmp_path / "empty-cache"))  # nothing exported yet

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator\nsecond line")

    monkeypatch.setattr(fonnx, "export_onnx", broken)
    with caplog.at_level(logging.INFO, logger="fakescope"):
        det = Detector.load(str(ela32), backend="auto")
    assert det.kind == "model"
    lines = [r.getMessage() for r in caplog.records if "PyTorch backend" in r.getMessage()]
    assert len(lines) == 1 and "unsupported operator" in lines[0] and "second line" not in lines[0]
    with pytest.raises(DetectorError, match="cannot use the onnx backend"):
        Detector.load(str(ela32), backend="onnx")
    monkeypatch.setattr(fonnx, "onnx_available", lambda: False)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fakescope"):
        assert Detector.load(str(ela32), backend="auto").kind == "model"
    assert any("onnxruntime is not installed" in r.getMessage() for r in caplog.records)
    with pytest.raises(DetectorError, match="unknown backend"):
        Detector.load(str(ela32), backend="tensorrt")


def test_scan_fields_identical_across_backends(ela32: Path, tiny_images, tmp_path: Path) -> None:
    tiny_images(6, "imgs")
    rows = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.jsonl"
        res = CliRunner().invoke(app, ["scan", str(tmp_path / "imgs"), "-m", str(ela32), "-f", "jsonl", "-o", str(out),
                                       "--backend", backend, "--workers", "0"])
        assert res.exit_code == 0, res.output
        rows[backend] = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["path"])
    assert len(rows["torch"]) == 6
    for a, b in zip(rows["torch"], rows["onnx"]):
        assert a.keys() == b.keys()
        assert (a["path"], a["model"], a["error"]) == (b["path"], b["model"], b["error"])
        assert abs(a["fake_probability"] - b["fake_probability"]) <= 1e-4


def test_scan_with_workers_runs_onnx_threads_that_sleep_when_idle(ela32: Path, tiny_images,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy-waiting model threads would take the cores from the decode workers; the session is restored after."""
    from fakescope.inference import scan as scan_mod

    folder = tiny_images(3, "imgs")[0].parent
    det = OnnxDetector.from_onnx(fonnx.onnx_twin(Detector.load(str(ela32))).onnx_path,
                                       threads=2)
    original, seen = det.session, []
    real_logits = det.logits

    def spy(arrays):
        options = det.session.get_session_options()
        try:
            spinning = options.get_session_config_entry("session.intra_op.allow_spinning")
        except RuntimeError:  # not set: ONNX Runtime's default, spinning
            spinning = None
        seen.append((options.intra_op_num_threads, spinning))
        return real_logits(arrays)

    monkeypatch.setattr(det, "logits", spy)
    results = list(scan_mod.scan([folder], det, batch_size=8, workers=1))
    assert len(results) == 3 and all(r.error is None for r in results)
    assert seen == [(2, "0")] and det.session is original
    sleeping = det._sleeping_session
    assert len(list(scan_mod.scan([folder], det, batch_size=8, workers=1))) == 3
    assert det._sleeping_session is sleeping  # built once, not per scan
    seen.clear()
    assert len(list(scan_mod.scan([folder], det, batch_size=8, workers=0))) == 3
    assert seen == [(2, None)]  # no workers: the latency-first session


def test_torch_threads_leave_the_workers_their_cores(ela32: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fakescope.inference import detector as det_mod

    det = Detector.load(str(ela32), backend="torch")
    monkeypatch.setattr(det_mod, "available_cores", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        for workers, expected in ((0, 4), (1, 3), (2, 2), (4, 1), (8, 1)):
            with det.alongside_workers(workers):
                assert torch.get_num_threads() == expected
            assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_export_cli_resnet18_dynamic_batch(tmp_path: Path) -> None:
    model, pre = create_detector("resnet18", size=64)
    ckpt = save_checkpoint(tmp_path / "r18.safetensors", model.eval(), CheckpointMeta("resnet18", pre))
    out = tmp_path / "r18.onnx"
    res = CliRunner().invoke(app, ["export", "--model", str(ckpt), "--format", "onnx", "--out", str(out)])
    assert res.exit_code == 0, res.output
    diff = float(res.output.split("difference to PyTorch:")[1].split()[0])
    assert diff <= 1e-4
    det = OnnxDetector.from_onnx(out)
    assert det.session.get_inputs()[0].shape[0] == "batch"
    assert det.predict_arrays(np.zeros((3, 64, 64, 3), np.uint8)).shape == (3,)


def test_int8_export_is_smaller_and_reports_accuracy_change(ela32: Path, tiny_images, tmp_path: Path,
                                                            _cache: Path) -> None:
    for label in ("real", "fake"):
        tiny_images(12, f"data/{label}", size=(64, 48), seed=1 if label == "fake" else 0)
    res = CliRunner().invoke(app, ["export", "--model", str(ela32), "--quantize", "int8", "--calibration-data",
                                   str(tmp_path / "data"), "--calibration-samples", "8", "--out", str(tmp_path / "q.onnx")])
    assert res.exit_code == 0, res.output
    for variant in ("pytorch fp32", "onnx fp32", "onnx int8"):
        assert variant in res.output
    import onnx

    q = onnx.load(str(tmp_path / "q.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    fp32 = next((_cache / "onnx").glob("ela32-*[0-9a-f].onnx"))
    assert (tmp_path / "q.onnx").stat().st_size < fp32.stat().st_size / 2
    alone = Detector.load(str(tmp_path / "q.onnx"))
    assert alone.meta.info["onnx"]["quantization"] == "static-int8-qdq"
    fp32_det = Detector.load(str(fp32))
    images = [make_image((64, 48), seed=i) for i in range(4)]
    assert np.abs(alone.predict_images(images) - fp32_det.predict_images(images)).max() < 0.1
