"""The scan path without PyTorch: NumPy preprocessing equals the tensor path, the shipped ONNX model is the export of
the shipped weights (checksum recorded in their header), and `fakescope scan` scores with torch unimportable."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from conftest import REPO

from fakescope.data.preprocess import Preprocess
from fakescope.forensics.io import load_image
from fakescope.inference import onnx as fonnx
from fakescope.inference import shipped
from fakescope.inference.detector import Detector, shipped_weights
from fakescope.inference.kinds.onnx import OnnxDetector, read_onnx_meta

EXAMPLES = sorted((REPO / "examples" / "images").rglob("*.jpg"))

#: Run as `python -c GUARD <args>`: any import of torch, timm or torchvision raises, then `fakescope <args>` runs
#: (what the installed `fakescope` script does).
GUARD = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "torchvision"):
            raise ImportError("torch is unimportable in this test: " + name)
sys.meta_path.insert(0, Block())
sys.argv = ["fakescope", *sys.argv[1:]]
from fakescope.cli import app
app()
"""


def test_examples_are_there() -> None:
    assert len(EXAMPLES) == 10


@pytest.mark.parametrize("pre", [Preprocess.for_mode("rgb", 320, True), Preprocess.for_mode("rgb+ela", 64, True),
                                 Preprocess("ela", size=96)], ids=["rgb-imagenet-320", "rgb+ela-64", "ela-96"])
def test_numpy_normalisation_equals_the_tensor_path_on_the_examples(pre: Preprocess) -> None:
    arrays = np.stack([pre.to_array(load_image(p)) for p in EXAMPLES])
    expected = pre.to_tensor(arrays).numpy()
    got = pre.normalize(arrays)
    assert got.dtype == np.float32 and got.shape == expected.shape == (10, pre.channels, pre.size, pre.size)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(pre.normalize(arrays[0]), expected[:1], rtol=0, atol=1e-5)  # one (H, W, C) image


def test_default_scores_through_the_shipped_onnx_as_pytorch_does() -> None:
    torch_det = Detector.load("default", backend="torch")
    onnx_det = Detector.load("default", backend="auto", device="cpu")
    assert isinstance(onnx_det, OnnxDetector) and onnx_det.name == torch_det.name
    assert onnx_det.onnx_path == shipped_weights(torch_det.name).with_suffix(".onnx")
    assert (onnx_det.preprocess, onnx_det.threshold) == (torch_det.preprocess, torch_det.threshold)
    images = [load_image(p) for p in EXAMPLES]
    np.testing.assert_allclose(onnx_det.predict_images(images), torch_det.predict_images(images), rtol=0,
                               atol=fonnx.FP32_TOLERANCE)
    assert onnx_det.model is not None and onnx_det.model.training is False  # Grad-CAM's model, built on demand


def test_shipped_onnx_is_the_export_of_the_shipped_weights() -> None:
    """Fails when the default's weights change without `fakescope export --model default --ship` being re-run."""
    weights = shipped_weights("efficientnet_lite2")
    record = shipped.shipped_record(weights)
    assert record is not None, "the weights' header records no ONNX model: run 'fakescope export --model default --ship'"
    onnx_file = weights.with_name(record["file"])
    assert shipped.sha256_hex(onnx_file.read_bytes()) == record["sha256"], "shipped ONNX differs from its checksum"
    torch_det = Detector.load("default", backend="torch")
    session = fonnx.make_session(onnx_file)
    meta = read_onnx_meta(session, onnx_file)
    assert replace(meta, info={}) == replace(torch_det.meta, info={})  # preprocessing, calibration, threshold
    assert {**meta.info, "onnx": None} == {**torch_det.meta.info, "onnx": None}  # + the exporter's opset
    assert fonnx.max_probability_difference(torch_det, onnx_file) <= fonnx.FP32_TOLERANCE


def test_a_shipped_onnx_with_another_checksum_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    weights = shipped_weights("efficientnet_lite2")
    copy = Path(shutil.copy(weights, tmp_path / weights.name))
    shutil.copy(weights.with_suffix(".onnx"), tmp_path / weights.with_suffix(".onnx").name)
    monkeypatch.setenv("FAKESCOPE_CACHE", str(tmp_path / "cache"))
    assert isinstance(OnnxDetector.ready(str(copy), "cpu"), OnnxDetector)  # as shipped: used
    record = shipped.shipped_record(copy)
    shipped.write_header_entry(copy, shipped.SHIPPED_KEY, json.dumps({**record, "sha256": "0" * 64}))
    with caplog.at_level("WARNING"):
        assert OnnxDetector.ready(str(copy), "cpu") is None  # nothing cached either: the caller exports
    assert any("checksum differs" in r.getMessage() for r in caplog.records)


def test_the_optimised_graph_is_cached_and_scores_as_the_shipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    import onnxruntime as ort

    monkeypatch.setenv("FAKESCOPE_CACHE", str(tmp_path))
    images = [load_image(p) for p in EXAMPLES[:4]]
    expected = OnnxDetector.from_onnx(shipped_weights("efficientnet_lite2").with_suffix(".onnx")).predict_images(images)
    first = Detector.load("default", backend="auto", device="cpu")  # optimises, and writes the graph
    assert first.optimized is not None and first.optimized.is_file() and tmp_path in first.optimized.parents
    second = Detector.load("default", backend="auto", device="cpu")  # loads the graph, optimises nothing
    level = second.session.get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    first.optimized.write_bytes(b"torn")
    with caplog.at_level("WARNING"):
        third = Detector.load("default", backend="auto", device="cpu")  # unusable: optimised and written again
    assert any("cannot load the optimised model" in r.getMessage() for r in caplog.records)
    assert first.optimized.stat().st_size > 1_000_000
    for det in (first, second, third):
        np.testing.assert_array_equal(det.predict_images(images), expected)
    first.optimized.unlink()
    first.optimized.with_name(f".{first.optimized.name}.{os.getpid()}.tmp").mkdir()  # the file cannot be written
    fourth = Detector.load("default", backend="auto", device="cpu")  # scores all the same, nothing cached
    np.testing.assert_array_equal(fourth.predict_images(images), expected)
    assert not first.optimized.exists()


def _run_without_torch(args: list[str], cwd: Path, code: str = GUARD) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_fakescope_scan_scores_with_torch_unimportable(tmp_path: Path) -> None:
    image = tmp_path / "one.jpg"
    shutil.copy(EXAMPLES[0], image)
    res = _run_without_torch(["scan", str(image), "--format", "json"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (row,) = json.loads(res.stdout)
    assert row["error"] is None and 0.0 <= row["fake_probability"] <= 1.0 and row["label"] in ("real", "fake")
    expected = Detector.load("default", backend="torch").predict_images([load_image(image)])[0]
    assert abs(row["fake_probability"] - expected) <= fonnx.FP32_TOLERANCE


def test_folder_scan_with_decode_workers_without_torch(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in EXAMPLES:
        shutil.copy(p, folder / p.name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    res = _run_without_torch(["scan", str(folder), "--format", "jsonl", "--workers", "2"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {Path(r["path"]).name: r for r in map(json.loads, res.stdout.splitlines())}
    assert len(rows) == 11 and rows["broken.jpg"]["error"] and rows["broken.jpg"]["fake_probability"] is None
    assert all(r["fake_probability"] is not None for name, r in rows.items() if name != "broken.jpg")


def test_fakescope_models_lists_every_detector_with_torch_unimportable(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from fakescope.registry import list_detectors

    res = _run_without_torch(["models", "--format", "json"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == list_detectors()
    assert all(isinstance(r["params"], int) and r["params"] > 0 for r in rows)
    assert [r["name"] for r in rows if r["default"]] == [shipped_weights("efficientnet_lite2").stem]
    monkeypatch.setenv("COLUMNS", "200")  # the table's name column holds the longest name
    table = _run_without_torch(["models"], tmp_path)
    assert table.returncode == 0, table.stderr[-3000:]
    assert all(f"│ {name} " in table.stdout for name in list_detectors())


@pytest.mark.parametrize("method", ["ela", "noise", "copy-move"])
def test_model_free_explain_views_need_no_torch(tmp_path: Path, method: str) -> None:
    """ELA, the noise level and the copy-move evidence read only the pixels: drawing them must not wait seconds for
    PyTorch to import."""
    res = _run_without_torch(["explain", str(EXAMPLES[0]), "--method", method, "--out", str(tmp_path / "out")],
                             tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"{EXAMPLES[0].stem}_{method}.png"]


def test_python_detect_api_without_torch(tmp_path: Path) -> None:
    code = GUARD.split("sys.argv =")[0] + (
        "import fakescope, sys\n"
        "r = fakescope.detect(sys.argv[1])\n"
        "assert r.error is None, r.error\n"
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules\n"
        "print(r.fake_probability)\n")
    res = _run_without_torch([str(EXAMPLES[-1])], tmp_path, code)
    assert res.returncode == 0, res.stderr[-3000:]
    expected = Detector.load("default", backend="torch").predict_images([load_image(EXAMPLES[-1])])[0]
    assert abs(float(res.stdout) - expected) <= fonnx.FP32_TOLERANCE


def test_service_scores_without_torch(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    code = GUARD.split("sys.argv =")[0] + (
        "import sys, time\n"
        "from fastapi.testclient import TestClient\n"
        "from fakescope.serve import Settings, create_app\n"
        "with TestClient(create_app(Settings())) as c:\n"
        "    deadline = time.monotonic() + 120\n"
        "    while not c.get('/readyz').json().get('ready') and time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    r = c.post('/v1/detect', files={'file': ('x.jpg', open(sys.argv[1], 'rb').read(), 'image/jpeg')})\n"
        "assert r.status_code == 200, r.text\n"
        "assert 'torch' not in sys.modules\n"
        "print(r.json()['fake_probability'])\n")
    res = _run_without_torch([str(EXAMPLES[0])], tmp_path, code)
    assert res.returncode == 0, res.stderr[-3000:]
    expected = Detector.load("default", backend="torch").predict_images([load_image(EXAMPLES[0])])[0]
    assert abs(float(res.stdout) - expected) <= fonnx.FP32_TOLERANCE


def test_the_shipped_onnx_is_package_data() -> None:
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["fakescope"]
    shipped_file = shipped_weights("efficientnet_lite2").with_suffix(".onnx")
    assert shipped_file.is_file() and any(fnmatch.fnmatch(f"weights/{shipped_file.name}", g) for g in globs)
