"""Faces for video: MTCNN (facenet-pytorch's packaged weights) with landmarks, crops levelled by the eyes, Haar as
the fallback. Frames are made here from the example FFHQ photos: a small, tilted face on a plain background."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from fakescope.data.preprocess import Preprocess
from fakescope.video import faces as faces_mod
from fakescope.video.clips import ClipSpec
from fakescope.video.faces import FaceDetector, crop_face, eye_angle
from fakescope.video.scan import VideoOptions, prepare_video

BACKGROUND = (90, 110, 130)


def tilted_face_frame(tilt: float, photo: str = "ffhq_00266.jpg", side: int = 120) -> Image.Image:
    """A 480x360 frame holding one face ``side`` px wide, turned ``tilt`` degrees counter-clockwise."""
    face = Image.open(REPO / "examples" / "images" / "real" / photo).convert("RGB").resize((side, side))
    frame = Image.new("RGB", (480, 360), BACKGROUND)
    frame.paste(face.rotate(tilt, expand=True, fillcolor=BACKGROUND), (200, 100))
    return frame


@pytest.mark.parametrize("tilt", [25, -30])
def test_mtcnn_finds_a_tilted_face_haar_misses_and_the_crop_is_levelled(tilt):
    frame = tilted_face_frame(tilt)
    assert FaceDetector(backend="haar").detect(frame) == []  # the frontal cascade misses a tilted face
    (face,) = FaceDetector().detect(frame)
    assert face.score > 0.9 and 200 <= face.x + face.w / 2 <= 200 + 170 and 100 <= face.y + face.h / 2 <= 100 + 170
    assert eye_angle(face) == pytest.approx(-tilt, abs=5)  # a counter-clockwise turn lifts the right eye
    (plain,) = FaceDetector().detect(crop_face(frame, face, align=False))
    (levelled,) = FaceDetector().detect(crop_face(frame, face))
    assert abs(eye_angle(plain)) > abs(tilt) - 5 and abs(eye_angle(levelled)) < 4


def test_no_face_and_box_scaling():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    assert FaceDetector().detect(noise) == []
    frame = tilted_face_frame(0)
    (small,), (big,) = FaceDetector().detect(frame), FaceDetector(max_side=240).detect(frame.resize((960, 720)))
    assert big.x == pytest.approx(small.x * 2, abs=8) and big.w == pytest.approx(small.w * 2, abs=10)
    assert big.eyes[0][0] == pytest.approx(small.eyes[0][0] * 2, abs=8)  # landmarks mapped back too
    assert big.mouth[1][1] == pytest.approx(small.mouth[1][1] * 2, abs=8)
    with pytest.raises(ValueError, match="unknown face detector"):
        FaceDetector(backend="dlib")


@pytest.mark.parametrize("backend", ["mtcnn", "haar"])
def test_a_frame_smaller_than_the_smallest_face_has_none(backend):
    """A 16 x 12 frame cannot hold a 16-pixel face: no faces (MTCNN raised from an empty pyramid, failing the video)."""
    assert FaceDetector(backend=backend).detect(Image.new("RGB", (16, 12), (128, 128, 128))) == []


def test_haar_is_the_fallback_without_facenet_pytorch(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import now fails as if not installed
    faces_mod.mtcnn_available.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            detector = FaceDetector()
            assert detector.effective_backend == "haar"
            (face,) = detector.detect(tilted_face_frame(0))
        assert face.eyes is None and "Haar cascade" in caplog.text
        assert crop_face(tilted_face_frame(0), face).size == crop_face(tilted_face_frame(0), face, align=False).size
    finally:
        faces_mod.mtcnn_available.cache_clear()


def test_video_frames_are_cropped_levelled(tmp_path):
    from test_video import write_video

    path = write_video(tmp_path / "tilted.mp4", [tilted_face_frame(t) for t in (20, 25, 30, 25)])
    pre = Preprocess("rgb", size=64)
    aligned = prepare_video(path, pre, VideoOptions(frames=4))
    plain = prepare_video(path, pre, VideoOptions(frames=4, align=False))
    assert all(len(f.boxes) == 1 and f.boxes[0].eyes is not None for f in aligned.frames)
    diffs = [np.abs(a.inputs[0].astype(int) - b.inputs[0].astype(int)).mean() for a, b in zip(aligned.frames, plain.frames)]
    assert min(diffs) > 5  # the levelled crops differ from the tilted ones
    # clip checkpoints saved before alignment keep their unaligned crops; new ones align
    assert ClipSpec.from_dict({"frames": 8, "faces": True, "margin": 0.3}).align is False and ClipSpec().align
