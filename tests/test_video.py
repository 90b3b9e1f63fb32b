"""Video: frame sampling, faces, per-frame and per-video scores, the scan JSON contract, and the temporal detector.

Videos are written inside the tests with PyAV: from shared faces140k photos where a face must be found (skipped
when the data is absent), from synthetic frames otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fakescope.checkpoint import CheckpointMeta, read_meta, save_checkpoint
from fakescope.cli import app
from fakescope.data.preprocess import Preprocess
from fakescope.inference.detector import Detector
from fakescope.inference.inputs import walk_image_files
from fakescope.inference.scan import scan
from fakescope.models.ela_cnn import ELACNN
from fakescope.video.clips import ClipPreparer, ClipSpec, clip_preprocess, fit_length
from fakescope.video.faces import FaceBox, FaceDetector, crop_box
from fakescope.video.frames import (
    VideoLoadError,
    count_frames,
    read_frames,
    sample_indices,
)
from fakescope.video.scan import VideoOptions, prepare_video, score_video, top_k_mean

RESULT_KEYS = {"path", "fake_probability", "label", "threshold", "model", "error", "familiarity"}
FRAME_KEYS = {"index", "time", "score", "face", "faces"}
runner = CliRunner()


def write_video(path: Path, frames: list[Image.Image], fps: int = 8, codec: str = "libx264") -> Path:
    """Encode RGB images (all one even size) as a video; the container follows the file extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        for img in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(img.convert("RGB"))))
        container.mux(stream.encode())
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def gray_frames(n: int, size: int = 64) -> list[Image.Image]:
    """Frame i is a flat grey of level 20 + 10 i, so a decoded frame tells which one it is."""
    return [Image.new("RGB", (size, size), (20 + 10 * i,) * 3) for i in range(n)]


def pattern_frames(n: int, seed: int, size: int = 64) -> list[Image.Image]:
    """Moving stripes and noise: textured, face-free frames; the seed changes the texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for i in range(n):
        base = 127 + 100 * np.sin((xx * (1 + seed % 3) + yy + 4 * i) / 5.0)
        arr = np.clip(base[..., None] + rng.normal(0, 10 + 10 * (seed % 2), (size, size, 3)), 0, 255)
        out.append(Image.fromarray(arr.astype(np.uint8)))
    return out


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 32 px ELA-CNN checkpoint: fast, and its scores differ from frame to frame."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "ela32.safetensors"
    return save_checkpoint(path, ELACNN(size=32).eval(), CheckpointMeta("ela-cnn", Preprocess("ela", size=32)))


@pytest.fixture(scope="module")
def face_photos(data_root: Path) -> dict[str, list[Image.Image]]:
    """Eight real (FFHQ) and eight fake (StyleGAN) face photos from faces140k, at 128 px."""
    out = {}
    for cls in ("real", "fake"):
        files = sorted((data_root / "faces140k" / cls).glob("*.jpg"))[:8]
        if len(files) < 8:
            pytest.skip(f"faces140k/{cls} holds fewer than 8 images")
        out[cls] = [Image.open(f).convert("RGB").resize((128, 128), Image.Resampling.BILINEAR) for f in files]
    return out


def test_sample_indices() -> None:
    assert sample_indices(100, 5) == [0, 25, 50, 74, 99]
    assert sample_indices(3, 32) == [0, 1, 2]  # fewer frames than asked: every one of them
    assert sample_indices(1) == [0] and sample_indices(0) == []
    assert sample_indices(20, every=7) == [0, 7, 14]
    assert sample_indices(20, every=3, max_frames=2) == [0, 3]
    with pytest.raises(ValueError):
        sample_indices(10, every=0)


def test_frames_are_the_sampled_ones_with_times(tmp_path: Path) -> None:
    path = write_video(tmp_path / "grey.mp4", gray_frames(20), fps=10)
    assert count_frames(path) == 20
    frames = read_frames(path, frames=5)
    assert [f.index for f in frames] == [0, 5, 10, 14, 19]
    assert [f.time for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.4, 1.9], abs=1e-6)
    levels = [float(np.asarray(f.image).mean()) for f in frames]
    assert levels == pytest.approx([20 + 10 * f.index for f in frames], abs=4)  # the right pixels, not just labels
    assert [f.index for f in read_frames(path, every=7)] == [0, 7, 14]


@pytest.mark.parametrize("name, codec", [("clip.avi", "mpeg4"), ("clip.mkv", "libx264"), ("clip.webm", "libvpx")])
def test_other_containers(tmp_path: Path, name: str, codec: str) -> None:
    path = write_video(tmp_path / name, gray_frames(6), codec=codec)
    assert [f.index for f in read_frames(path, frames=3)] == [0, 2, 5]
    assert path in list(walk_image_files([tmp_path]))  # folders yield videos as well as images


def test_unreadable_videos_raise_one_line_errors(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.mp4"
    whole = write_video(tmp_path / "whole.mp4", gray_frames(8)).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    audio = write_audio_only(tmp_path / "audio.mp4")
    cases = {corrupt: "not a readable video", truncated: "not a readable video", audio: "no video stream (only audio)",
             tmp_path / "missing.mp4": "file does not exist"}
    for path, reason in cases.items():
        with pytest.raises(VideoLoadError) as err:
            read_frames(path)
        assert reason in err.value.reason and "\n" not in str(err.value) and str(path) in str(err.value)


def test_crop_box_keeps_a_square_margin_inside_the_image() -> None:
    assert crop_box(FaceBox(40, 40, 20, 20), 100, 100, margin=0.5) == (30, 30, 70, 70)
    left, top, right, bottom = crop_box(FaceBox(0, 70, 30, 30), 100, 100, margin=0.5)
    assert (right - left, bottom - top) == (60, 60) and (left, bottom) == (0, 100)  # moved inside, not clipped
    assert crop_box(FaceBox(0, 0, 90, 90), 100, 60, margin=0.5) == (0, 0, 100, 60)  # larger than the image


def test_face_detector_on_real_faces_and_on_none(face_photos) -> None:
    detector = FaceDetector()
    found = [detector.detect(img) for img in face_photos["real"]]
    assert sum(bool(b) for b in found) >= 5, found  # the cascade finds most frontal FFHQ faces
    for boxes in found:
        for b in boxes:
            assert 0 <= b.x and 0 <= b.y and b.x + b.w <= 128 and b.y + b.h <= 128 and b.w >= 12
    assert detector.detect(pattern_frames(1, seed=0)[0]) == []
    big = face_photos["real"][0].resize((1024, 1024))  # detected on a shrunk copy, boxes mapped back
    (b_small, *_), (b_big, *_) = detector.detect(face_photos["real"][0]), FaceDetector(max_side=256).detect(big)
    assert b_big.x == pytest.approx(b_small.x * 8, abs=24) and b_big.w == pytest.approx(b_small.w * 8, abs=32)


def test_frame_without_a_face_is_scored_whole_and_flagged(tmp_path: Path, tiny_detector: Path) -> None:
    frames = pattern_frames(6, seed=1)
    path = write_video(tmp_path / "noface.mp4", frames)
    det = Detector.load(str(tiny_detector), device="cpu")
    video = prepare_video(path, det.preparer, VideoOptions(frames=3, top_k=2))
    assert [len(f.inputs) for f in video.frames] == [1, 1, 1] and not any(f.boxes for f in video.frames)
    p, records = score_video(video, det)
    decoded = [f.image for f in read_frames(path, frames=3)]
    whole = det.predict_images(decoded)  # the whole frames, as the detector sees any image
    assert [r["score"] for r in records] == pytest.approx(list(whole), abs=1e-6)
    assert all(r["face"] is False and r["faces"] == [] for r in records)
    assert p == pytest.approx(float(np.sort(whole)[-2:].mean()), abs=1e-9)
    assert top_k_mean([0.1, 0.9, 0.5], 2) == pytest.approx(0.7) and top_k_mean([0.3], 5) == pytest.approx(0.3)


def test_scan_json_contract_for_videos(tmp_path: Path, face_photos, tiny_detector: Path) -> None:
    d = tmp_path / "media"
    write_video(d / "real.mp4", face_photos["real"])
    write_video(d / "fake.mp4", face_photos["fake"])
    write_video(d / "sub" / "noface.mov", pattern_frames(8, seed=2))
    write_video(d / "one.mp4", face_photos["real"][:1])
    write_audio_only(d / "audio.mp4")
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    face_photos["real"][1].save(d / "photo.jpg", quality=90)
    res = runner.invoke(app, ["scan", str(d), "--model", str(tiny_detector), "--format", "json", "--backend", "torch",
                              "--frames", "6", "--top-k", "3"])
    assert res.exit_code == 0, res.output
    rows = {Path(r["path"]).name: r for r in json.loads(res.stdout)}
    assert set(rows) == {"real.mp4", "fake.mp4", "noface.mov", "one.mp4", "audio.mp4", "corrupt.mp4", "photo.jpg"}
    assert set(rows["photo.jpg"]) == RESULT_KEYS | {"provenance"}  # images: their fields and what the file declares
    for name in ("real.mp4", "fake.mp4", "noface.mov", "one.mp4"):
        r = rows[name]
        assert set(r) == RESULT_KEYS | {"frames"} and r["error"] is None
        assert all(set(f) == FRAME_KEYS for f in r["frames"])
        scores = sorted(f["score"] for f in r["frames"])
        assert r["fake_probability"] == pytest.approx(float(np.mean(scores[-3:])), abs=1e-9)
        assert r["label"] == ("fake" if r["fake_probability"] >= 0.5 else "real")
        for f in r["frames"]:
            assert f["face"] == bool(f["faces"])
            if f["faces"]:
                assert f["score"] == pytest.approx(max(x["score"] for x in f["faces"]))
    real = rows["real.mp4"]["frames"]
    assert [f["index"] for f in real] == [0, 1, 3, 4, 6, 7]
    assert [f["time"] for f in real] == pytest.approx([i / 8 for i in (0, 1, 3, 4, 6, 7)], abs=1e-3)
    assert sum(f["face"] for f in real) >= 3
    assert all(len(x["box"]) == 4 and x["box"][0] + x["box"][2] <= 128 for f in real for x in f["faces"])
    assert not any(f["face"] for f in rows["noface.mov"]["frames"])
    assert [(f["index"], f["time"]) for f in rows["one.mp4"]["frames"]] == [(0, 0.0)]
    for name, reason in (("audio.mp4", "no video stream"), ("corrupt.mp4", "not a readable video")):
        r = rows[name]
        assert r["fake_probability"] is None and r["label"] is None and "frames" not in r
        assert reason in r["error"] and "\n" not in r["error"]


def test_clip_tensors_and_short_videos(tmp_path: Path) -> None:
    pre = clip_preprocess(32, ClipSpec(frames=4, faces=False))
    clips = np.random.default_rng(0).integers(0, 256, (2, 4, 32, 32, 3), dtype=np.uint8)
    t = pre.to_tensor(clips)
    assert t.shape == (2, 4, 3, 32, 32)
    torch.testing.assert_close(t[1, 2], pre.to_tensor(clips[1, 2])[0])
    assert fit_length([1, 2], 4) == [1, 1, 2, 2] and fit_length([1, 2, 3, 4, 5, 6, 7, 8], 4) == [1, 3, 6, 8]
    one = ClipPreparer(pre).to_array(write_video(tmp_path / "one.mp4", gray_frames(1)))
    assert one.shape == (4, 32, 32, 3) and (one == one[0]).all()  # a one-frame video: its frame, repeated
    grey = ClipPreparer(pre).to_array(write_video(tmp_path / "grey.mp4", gray_frames(10)))
    assert [round(float(f.mean())) for f in grey] == pytest.approx([20, 50, 80, 110], abs=4)  # frames 0, 3, 6, 9


def test_temporal_training_gives_a_checkpoint_that_scans(tmp_path: Path) -> None:
    data = tmp_path / "videos"
    for i in range(4):  # textured "real" and smoother "fake" clips, 6 frames each
        write_video(data / "real" / f"r{i}.mp4", pattern_frames(6, seed=2 * i, size=48))
        write_video(data / "fake" / f"f{i}.webm", pattern_frames(6, seed=2 * i + 1, size=48), codec="libvpx")
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--model", "temporal", "--data", str(data), "--epochs", "1", "--batch-size", "4",
                              "--out", str(run), "--model.size", "32", "--data.workers", "0", "--data.val_fraction",
                              "0.25"])
    assert res.exit_code == 0, res.output
    ckpt = run / "best.safetensors"
    meta = read_meta(ckpt)
    assert meta.architecture == "temporal" and meta.info["kind"] == "clip"
    assert meta.info["data"]["counts"]["train"] == {"real": 3, "fake": 3}
    assert meta.preprocess.extra["clip"]["frames"] == 8 and meta.preprocess.size == 32

    det = Detector.load(str(ckpt), device="cpu")
    assert type(det).__name__ == "ClipDetector"
    clip = data / "real" / "r0.mp4"
    res = runner.invoke(app, ["scan", str(clip), str(data / "fake" / "f0.webm"), "--model", str(ckpt), "--format", "json"])
    assert res.exit_code == 0, res.output  # the default auto backend falls back to PyTorch for clip models
    rows = {Path(r["path"]).name: r for r in json.loads(res.stdout)}
    r = rows["r0.mp4"]
    assert r["error"] is None and len(r["frames"]) == 6 and not any(f["face"] for f in r["frames"])
    frames = [det.preparer.to_array(f.image) for f in read_frames(clip, frames=32)]
    assert r["fake_probability"] == pytest.approx(det.predict_sequence(frames), abs=1e-5)  # the learned aggregate
    assert r["frames"][0]["score"] == pytest.approx(float(det.predict_batch(frames[:1])[0]), abs=1e-5)
    pattern_frames(1, seed=9)[0].save(tmp_path / "still.png")
    (still,) = scan([tmp_path / "still.png"], det)  # an image is scored as a one-frame clip
    assert still.error is None and 0.0 <= still.fake_probability <= 1.0 and still.frames is None


def test_clip_training_draws_per_source_and_refuses_pseudo_fakes(tmp_path: Path) -> None:
    """``data.balance source`` weighs each video folder as it weighs image folders; pseudo-fakes need images."""
    from fakescope.config import load_config
    from fakescope.data.splits import source_sample_weights
    from fakescope.engine.loaders import build_loaders
    from fakescope.registry import create_detector

    for name, n in (("big", 8), ("small", 4)):
        for label in ("real", "fake"):
            for i in range(n):
                write_video(tmp_path / name / label / f"{label}{i}.mp4", pattern_frames(2, seed=i, size=32))
    overrides = {"model.name": "temporal", "model.size": 32, "data.path": [str(tmp_path / "big"), str(tmp_path / "small")],
                 "data.balance": "source", "data.workers": 0, "data.cache": False, "data.val_fraction": 0.25}
    pre = create_detector("temporal", size=32)[1]
    train_dl, _, _ = build_loaders(load_config(None, overrides), pre)
    ds = train_dl.dataset
    assert sorted(set(ds.sources)) == [0, 1] and ds.sources.count(0) > ds.sources.count(1)
    expected = source_sample_weights(ds.sources, ds.labels, ds.pseudo, 0.0)
    np.testing.assert_allclose(train_dl.sampler.weights.numpy(), expected)
    with pytest.raises(ValueError, match="data.pseudo_fakes: 0.5 makes fakes from still images"):
        build_loaders(load_config(None, {**overrides, "data.pseudo_fakes": 0.5}), pre)


def test_report_shows_the_frames_of_a_video(tmp_path: Path, tiny_detector: Path) -> None:
    from fakescope.evaluation.report import write_report

    path = write_video(tmp_path / "noface.mp4", pattern_frames(10, seed=3))
    det = Detector.load(str(tiny_detector), device="cpu")
    results = list(scan([path], det, video=VideoOptions(frames=4)))
    out = write_report(results, det, tmp_path / "report.html")
    page = out.read_text()
    assert [f["index"] for f in results[0].frames] == [0, 3, 6, 9]
    for i in (0, 3, 6, 9):
        assert f'title="frame {i}"' in page
    assert page.count("data:image/jpeg;base64,") >= 4 and page.count("no face") >= 4
    assert "video: 4 frames, 0 with a face" in page
    assert "unreadable" not in page and "provenance not read" in page  # a video's container is not read for provenance
