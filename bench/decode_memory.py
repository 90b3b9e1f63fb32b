"""Peak memory of decoding one image against one video of the same frame size, each in a fresh process: the ratio
behind :data:`fakescope.video.frames.FRAME_COST` (a video counts that many times its frame's pixels against the
service's pixel budgets, and may have frames of a third of an image's pixel limit).

    python bench/decode_memory.py [--side 4096] [--frames 3]

The image is a grey PNG decoded by ``load_image`` (as a scan and the service decode); the video an H.264 MP4 of
``--frames`` grey frames read by ``iter_frames`` (as a scan samples a video: FFmpeg's frame threads, one RGB frame
at a time). Each figure is the growth of the child's peak RSS (VmHWM, Linux) over its peak after the imports.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak (Linux keeps it across exec).
CHILD = """
import sys
import av
from fakescope.forensics.io import load_image
from fakescope.video.frames import iter_frames
def hwm():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
start = hwm()
if sys.argv[1] == "image":
    load_image(sys.argv[2])
else:
    for _ in iter_frames(sys.argv[2], frames=1000):
        pass
print((hwm() - start) / 1024)
"""


def write_inputs(folder: Path, side: int, frames: int) -> tuple[Path, Path]:
    import av
    from PIL import Image

    png = folder / "grey.png"
    Image.new("RGB", (side, side), (90, 90, 90)).save(png)
    mp4 = folder / "grey.mp4"
    with av.open(str(mp4), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = side, side, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_image(Image.new("RGB", (side, side), (60 + 20 * i,) * 3))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return png, mp4


def peak_mb(kind: str, path: Path) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096, help="width and height of the image and the frames")
    parser.add_argument("--frames", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fakescope-decode-") as tmp:
        png, mp4 = write_inputs(Path(tmp), args.side, args.frames)
        image, video = peak_mb("image", png), peak_mb("video", mp4)
    mpx = args.side * args.side / 1e6
    print(f"| {args.side}x{args.side} ({mpx:.1f} Mpx) | {image:.0f} | {video:.0f} ({args.frames} frames) "
          f"| {video / image:.2f} |")


if __name__ == "__main__":
    main()
