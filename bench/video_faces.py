"""Faces in video, before and after MTCNN with eye alignment: run through ``python bench/video.py --faces``.

Videos whose face must be found: one faces140k validation photo per video (real/ FFHQ, fake/ StyleGAN), pasted
90-144 px wide, turned by up to 35 degrees (half the videos within 10), drifting across a 480x360 photo from
cameras/; the true face centre of every frame is known, so a found face can be told from a spurious one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from _common import data_root, val_split
from PIL import Image
from sklearn.metrics import roc_auc_score

from fakescope.evaluation.metrics import paired_difference, roc_auc_interval
from fakescope.inference.detector import Detector
from fakescope.inference.scan import scan
from fakescope.video.faces import FaceDetector
from fakescope.video.scan import VideoOptions

FRAME_W, FRAME_H, LENGTH = 480, 360, 16
#: name -> how the scan finds and crops faces; the first is "before", the last "after" (the default)
CONDITIONS = {
    "Haar cascade, plain crops (before)": VideoOptions(frames=LENGTH, face_detector=FaceDetector(backend="haar"),
                                                       align=False),
    "MTCNN, plain crops": VideoOptions(frames=LENGTH, align=False),
    "MTCNN, crops levelled by the eyes (after, default)": VideoOptions(frames=LENGTH),
}


@dataclass
class Clip:
    path: Path
    label: int
    tilt: float  # the video's mean turn, degrees
    centres: list[tuple[float, float]]  # the true face centre in each frame


def backgrounds() -> list[Image.Image]:
    files = sorted((data_root() / "cameras" / "real").glob("*.jpg"))
    out = []
    for f in files:
        with Image.open(f) as img:
            img.draft("RGB", (FRAME_W * 2, FRAME_H * 2))  # JPEG decodes at a fraction of a 10 MP original
            out.append(img.convert("RGB").resize((FRAME_W, FRAME_H), Image.Resampling.BILINEAR))
    return out


def make_clip(out: Path, i: int, photo: Path, label: int, background: Image.Image, rng: np.random.Generator) -> Clip:
    face = Image.open(photo).convert("RGB")
    tilt = float(rng.uniform(-10, 10) if i % 4 < 2 else rng.choice([-1, 1]) * rng.uniform(10, 35))
    side = int(rng.uniform(90, 144))
    start, drift = rng.uniform([40, 30], [FRAME_W - 200, FRAME_H - 200]), rng.uniform(-3, 3, 2)
    path, centres = out / f"{('real', 'fake')[label]}{i:03d}.mp4", []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = FRAME_W, FRAME_H, "yuv420p"
        for t in range(LENGTH):
            angle = tilt + 3 * np.sin(t / 3)
            turned = face.resize((side, side), Image.Resampling.BILINEAR).rotate(angle, Image.Resampling.BICUBIC, expand=True)
            mask = Image.new("L", (side, side), 255).rotate(angle, expand=True)
            x, y = (start + drift * t).round().astype(int)
            frame = background.copy()
            frame.paste(turned, (int(x), int(y)), mask)
            centres.append((x + turned.width / 2, y + turned.height / 2))
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())
    return Clip(path, label, tilt, centres)


def make_clips(out: Path, n: int, seed: int = 0) -> list[Clip]:
    val = val_split("faces140k")
    by_label = {lab: [s.path for s in val if s.label == lab] for lab in (0, 1)}
    rng, bgs = np.random.default_rng(seed), backgrounds()
    return [make_clip(out, i, by_label[i % 2][i // 2], i % 2, bgs[i % len(bgs)], rng) for i in range(n)]


def holds(box: list[int], centre: tuple[float, float]) -> bool:
    x, y, w, h = box
    return x <= centre[0] <= x + w and y <= centre[1] <= y + h


def run_condition(clips: list[Clip], detector: Detector, options: VideoOptions) -> dict:
    by_path = {str(c.path): c for c in clips}
    scores, found, spurious, frames = {}, {"upright": [], "tilted": []}, 0, 0
    for r in scan(list(by_path), detector, 32, workers=0, video=options):
        clip = by_path[r.path]
        scores[r.path] = r.fake_probability
        for rec in r.frames:
            centre = clip.centres[rec["index"]]
            boxes = [f["box"] for f in rec["faces"]]
            found["upright" if abs(clip.tilt) < 10 else "tilted"].append(any(holds(b, centre) for b in boxes))
            spurious += sum(not holds(b, centre) for b in boxes)
            frames += 1
    y = [c.label for c in clips]
    p = [scores[str(c.path)] for c in clips]
    return {"y": y, "p": p, "found": {k: float(np.mean(v)) for k, v in found.items()},
            "spurious": spurious / frames}


def faces_table(results: dict[str, dict]) -> str:
    lines = ["| faces | face found, upright frames | face found, turned 10-35 degrees | other boxes per frame | "
             "video ROC-AUC [95% CI] | against before [95% CI] |", "|---|---|---|---|---|---|"]
    before = next(iter(results.values()))
    for name, r in results.items():
        lo, hi = roc_auc_interval(r["y"], r["p"])
        auc = roc_auc_score(r["y"], r["p"])
        d = paired_difference(r["y"], r["p"], before["p"]) if r is not before else None
        vs = "-" if d is None else f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        lines.append(f"| {name} | {r['found']['upright']:.1%} | {r['found']['tilted']:.1%} | {r['spurious']:.2f} | "
                     f"{auc:.3f} [{lo:.3f}, {hi:.3f}] | {vs} |")
    return "\n".join(lines)


def faces_study(out: Path, detector: Detector, n: int) -> str:
    clips = make_clips(out, n)
    results = {name: run_condition(clips, detector, options) for name, options in CONDITIONS.items()}
    return faces_table(results)


def faces_doc(n: int, described: str, model: str, text: str) -> str:
    return f"""What the face detector changes for `fakescope scan clip.mp4`: {n} videos (half real, half fake) of {LENGTH}
frames at {FRAME_W}x{FRAME_H}, each one faces140k validation photo (FFHQ or StyleGAN) 90-144 px wide, turned by up to
35 degrees (half the videos within 10 of upright) and drifting across a photo from cameras/; every frame scored
(`--frames {LENGTH}`), the video's score the mean of its 5 highest frame scores; detector `{described}` on the PyTorch
backend. "Face found" is the share of frames with a box holding the true face centre; "other boxes" counts boxes
elsewhere (the backgrounds are camera photos, some with people in them: a face found there is scored too). Produced by:

    python bench/video.py --faces --videos {n} --model {model} --write

{text}

- A frame without a face found is scored whole: the face is then a small part of a camera photo the detector sees at
  {FRAME_W}x{FRAME_H} shrunk to its input, which is why missed faces cost video-level ROC-AUC.
- Read with the table: finding the turned faces without levelling them moves ROC-AUC less than levelling them does;
  the default detector was trained on upright faces (FFHQ, StyleGAN), so a turned crop is not what it knows.
- Intervals: percentile bootstrap over videos (1,000 draws, stratified); "against before" is paired on the same
  draws, so it is tighter than the two intervals side by side.
- Load average {os.getloadavg()[0]:.1f} when this was written (figures here are not timings).
"""
