"""Video: scanning throughput stage by stage, and (``--faces``) what the face detector changes.

    python bench/video.py [--videos 6] [--length 96] [--frames 32] [--size 256] [--model default] [--write]
    python bench/video.py --faces [--videos 80] [--model default] [--write]

``--faces`` makes labelled videos in which the face must be found: one faces140k validation photo per video (FFHQ
for real/, StyleGAN for fake/), 90-144 px wide, turned by up to 35 degrees and drifting across a 480x360 photo from
cameras/, 16 frames. Each video is scanned three ways with the detector: OpenCV's Haar cascade with plain crops
(before), MTCNN with plain crops, and MTCNN with crops levelled by the eyes (after, the default); the table gives
the share of frames with a face box holding the true face, the boxes per frame elsewhere, and the video-level
ROC-AUC with bootstrap intervals, paired against before. --write puts it under "## Faces in video".

Videos are made in a temporary folder from the shared faces140k photos (H.264 MP4, 25 frames/s, ``--size`` px
square, ``--length`` frames, half from real/ and half from fake/, every frame a different photo), and deleted
afterwards. Each stage runs over the same videos, one process, one torch thread (the machine is shared):

- decode: PyAV decodes the stream and converts the sampled frames to RGB (``fakescope.video.frames``);
- decode + faces: plus face detection on every sampled frame, MTCNN and the Haar cascade (``fakescope.video.faces``);
- scan: ``fakescope.inference.scan.scan`` end to end (decode, faces, crop, preprocess, model, top-k mean), with
  the sampled frames (``--frames``) and with every frame (``--every 1``), in-process and with 2 worker processes.

``--model default`` uses the shipped default detector; when its weights are not there yet, an untrained
EfficientNet-Lite0 with the same architecture and input size is used instead (same cost per frame, meaningless
scores) and the table says so. --write puts the table into docs/benchmarks/video.md under "## Video".
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import av
import torch
from _common import data_root, write_section
from PIL import Image
from video_faces import faces_doc, faces_study

from fakescope.checkpoint import CheckpointMeta
from fakescope.inference.detector import DEFAULT_DETECTOR, Detector, shipped_weights
from fakescope.inference.scan import scan
from fakescope.registry import create_detector
from fakescope.video.faces import FaceDetector
from fakescope.video.frames import iter_frames
from fakescope.video.scan import VideoOptions

log = logging.getLogger("bench.video")


def make_videos(out: Path, n: int, length: int, size: int) -> list[Path]:
    """``n`` MP4s of ``length`` frames, alternately from faces140k real/ and fake/ photos."""
    paths = []
    for v in range(n):
        cls = ("real", "fake")[v % 2]
        photos = sorted((data_root() / "faces140k" / cls).glob("*.jpg"))[v // 2 * length:(v // 2 + 1) * length]
        path = out / f"{cls}{v}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            for p in photos:
                img = Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                container.mux(stream.encode(av.VideoFrame.from_image(img)))
            container.mux(stream.encode())
        paths.append(path)
    return paths


def load_detector(name: str) -> tuple[Detector, str]:
    """The detector to time, and how to describe it (an untrained stand-in when the weights are missing)."""
    key = DEFAULT_DETECTOR if name == "default" else name
    if Path(key).is_file() or shipped_weights(key) is not None:
        return Detector.load(key, device="cpu", backend="torch"), key
    model, pre = create_detector(key)
    det = Detector(model, CheckpointMeta(key, pre), key, device="cpu")
    return det, f"{key} (untrained stand-in: no shipped weights yet)"


def rate(fn, videos: list[Path]) -> tuple[float, float, int]:
    """(frames per wall-clock second, frames per CPU second of this process, frames) of ``fn(video) -> frames``.

    CPU seconds do not count the time spent waiting for a core, so that figure moves less on a shared machine."""
    fn(videos[0])  # warm-up: codec, cascade and model loading
    start, cpu = time.perf_counter(), time.process_time()
    n = sum(fn(v) for v in videos)
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu), n


def stages(videos: list[Path], detector: Detector, frames: int) -> list[tuple[str, float, float | None, int]]:
    def decode(v: Path, every: int | None = None) -> int:
        return sum(1 for _ in iter_frames(v, frames, every))

    def decode_faces(backend: str):
        faces = FaceDetector(backend=backend)
        return lambda v: sum(1 for f in iter_frames(v, frames) if faces.detect(f.image) is not None)

    def scanner(options: VideoOptions, workers: int):
        def run(v: Path | list[Path]) -> int:
            return sum(len(r.frames or []) for r in scan(v if isinstance(v, list) else [v], detector, 32, workers,
                                                         video=options))
        return run

    sampled, every = VideoOptions(frames=frames), VideoOptions(every=1)
    rows = [(f"decode, {frames} sampled frames", *rate(decode, videos)),
            (f"decode + faces (MTCNN), {frames} sampled frames", *rate(decode_faces("mtcnn"), videos)),
            (f"decode + faces (Haar), {frames} sampled frames", *rate(decode_faces("haar"), videos)),
            (f"scan, {frames} sampled frames, in-process", *rate(scanner(sampled, 0), videos)),
            ("scan, every frame, in-process", *rate(scanner(every, 0), videos))]
    two = scanner(sampled, 2)
    start = time.perf_counter()
    n = two(videos)
    rows.append((f"scan, {frames} sampled frames, 2 worker processes (start-up included)",
                 n / (time.perf_counter() - start), None, n))
    return rows


def table(rows: list[tuple[str, float, float | None, int]], videos: int) -> str:
    lines = ["| stage | frames | frames/s (wall) | videos/s (wall) | frames per CPU second |", "|---|---|---|---|---|"]
    for name, fps, cpu_fps, n in rows:
        cpu = f"{cpu_fps:.1f}" if cpu_fps is not None else "-"
        lines.append(f"| {name} | {n} | {fps:.1f} | {fps * videos / n:.2f} | {cpu} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--length", type=int, default=96, help="frames per video")
    ap.add_argument("--frames", type=int, default=32, help="frames sampled per video")
    ap.add_argument("--size", type=int, default=256, help="video side in px")
    ap.add_argument("--model", default="default")
    ap.add_argument("--faces", action="store_true", help="the face detectors' study instead of throughput")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    detector, described = load_detector(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="fakescope-video-bench-"))
    try:
        if args.faces:
            text = faces_study(tmp, detector, args.videos)
        else:
            videos = make_videos(tmp, args.videos, args.length, args.size)
            rows = stages(videos, detector, args.frames)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.faces:
        print(text)
        if args.write:
            write_section("Faces in video", faces_doc(args.videos, described, args.model, text))
        return
    text = table(rows, args.videos)
    print(text)
    if args.write:
        write_section("Video", _doc(args, described, detector.preprocess.size, text))


def _doc(args: argparse.Namespace, described: str, size: int, text: str) -> str:
    return f"""Throughput of scanning videos (`fakescope scan clip.mp4`): sampled frames per second through each stage, on
{args.videos} H.264 MP4s of {args.length} frames at {args.size}x{args.size} made from faces140k photos (half real/,
half fake/), {args.frames} frames sampled per video; one torch thread, faces by MTCNN (the default), detector
`{described}` at its {size} px input on the PyTorch backend (batch 32). Produced by:

    python bench/video.py --videos {args.videos} --length {args.length} --frames {args.frames} --size {args.size} --model {args.model} --write

{text}

- "frames per CPU second" divides by the CPU time of the scanning process (not counting the time it waited for a
  core, but counting OpenCV's own threads): the better guide to the cost of each stage on a busy machine.
- "every frame" decodes and scores all {args.length} frames of each video (`--every 1`); frames/s counts scored frames.
- Face detection: compare the MTCNN (the default) and Haar rows: MTCNN finds turned and small faces and gives the eyes
  for levelling ("Faces in video" below), at its own cost per frame.
- The machine has 2 cores shared with training runs (load average {os.getloadavg()[0]:.1f} when this was written), so
  the absolute figures are pessimistic and vary between runs; compare the stages with each other.
"""


if __name__ == "__main__":
    main()
