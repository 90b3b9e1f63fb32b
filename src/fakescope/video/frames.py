"""Frame sampling with PyAV: N evenly spaced frames (default 32) or every k-th frame, with times in seconds.

Frames are decoded in order and only the sampled ones are converted to RGB; they are yielded one at a time, so a
long video never sits in memory. Every way a file can fail to give frames (missing, not a container, no video
stream, nothing decodable) becomes one :class:`VideoLoadError` whose ``str`` is one line.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fakescope.forensics.io import MAX_PIXELS, MediaLoadError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
#: Frames sampled per video when nothing else is asked for.
DEFAULT_FRAMES = 32
#: Decoding a video takes up to about this many times the memory of decoding an image of its frame's size (FFmpeg's
#: reference and threading frames; bench/decode_memory.py, docs/benchmarks/serve.md#videos-and-reports), so under
#: an image pixel limit a frame may have a fifth of it (20 Mpx under the default 100 Mpx: 4K and 5K video) and a
#: video counts five times its frame against a pixel budget.
FRAME_COST = 5


class VideoLoadError(MediaLoadError):
    """A file could not be read as a video."""


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class VideoFrame:
    """One sampled frame: its position in the stream (0-based), its time in seconds from the start, its pixels."""

    index: int
    time: float
    image: Image.Image


def sample_indices(total: int, frames: int = DEFAULT_FRAMES, every: int | None = None,
                   max_frames: int | None = None) -> list[int]:
    """Frame positions to keep out of ``total``: ``frames`` evenly spaced ones (first and last included), or with
    ``every`` each ``every``-th one from the first, at most ``max_frames`` of them."""
    if total <= 0:
        return []
    if every is not None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        return list(range(0, total, every))[:max_frames]
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    return sorted({int(i) for i in np.linspace(0, total - 1, min(frames, total)).round()})


def _one_line(err: BaseException) -> str:
    """FFmpeg's reason alone: its messages add an errno and the path, which the error already names."""
    text = getattr(err, "strerror", None) or (str(err).splitlines()[0] if str(err) else type(err).__name__)
    return text.split(": '", 1)[0]


def _open(path: Path, max_pixels: int = MAX_PIXELS):
    """``av.open`` with its failures turned into :class:`VideoLoadError`; returns (container, video stream).

    Frames over ``max_pixels // FRAME_COST`` pixels are refused from the header, and FFmpeg's decoders (those
    probing the stream while it opens included) are told the same limit, so a small file declaring huge frames,
    or switching to them midway, is never decoded."""
    import av

    if not path.is_file():
        raise VideoLoadError(path, "file does not exist" if not path.exists() else "not a file")
    limit = {"max_pixels": str(max(1, max_pixels // FRAME_COST))}
    try:
        container = av.open(str(path), options=limit)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoLoadError(path, f"not a readable video ({_one_line(err)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        found = f"only {' and '.join(kinds)}" if kinds else "no streams at all"
        raise VideoLoadError(path, f"no video stream ({found})")
    stream = container.streams.video[0]
    w, h = stream.codec_context.width, stream.codec_context.height
    if w * h * FRAME_COST > max_pixels:
        container.close()
        raise VideoLoadError(path, f"frames are {w}x{h} = {w * h:,} pixels, over the limit of "
                                   f"{max_pixels // FRAME_COST:,} for a video's frames (1/{FRAME_COST} of "
                                   f"{max_pixels:,}: decoding a video holds about {FRAME_COST} frames)")
    # The decoder checks its buffers' width rounded up to FFmpeg's stride alignment (up to 64): let it have the
    # header's frame so rounded, or the limit, whichever is more.
    stream.codec_context.options = {"max_pixels": str(max(max_pixels // FRAME_COST, -(-w // 64) * 64 * h))}
    stream.thread_type = "AUTO"
    return container, stream


def video_pixels(path: str | Path, max_pixels: int = MAX_PIXELS) -> int:
    """What decoding ``path`` costs against an image pixel budget: its frame's pixels x :data:`FRAME_COST`, from
    the header (nothing decoded); :class:`VideoLoadError` as :func:`iter_frames` would fail on the header."""
    container, stream = _open(Path(path), max_pixels)
    with container:
        return stream.codec_context.width * stream.codec_context.height * FRAME_COST


def count_frames(path: str | Path, max_pixels: int = MAX_PIXELS) -> int:
    """Frames in the first video stream: the container's count, or the video packets counted without decoding."""
    import av

    container, stream = _open(Path(path), max_pixels)
    with container:
        if stream.frames:
            return int(stream.frames)
        try:
            return sum(1 for pkt in container.demux(stream) if pkt.size)
        except av.FFmpegError as err:
            raise VideoLoadError(path, f"cannot read the video packets ({_one_line(err)})") from None


def _seconds(frame, stream, index: int) -> float:
    """Time of ``frame`` from the start of the stream (falls back to index / frame rate without timestamps)."""
    if frame.pts is not None and stream.time_base is not None:
        start = stream.start_time or 0
        return max(0.0, float((frame.pts - start) * stream.time_base))
    rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    return index / rate


def iter_frames(path: str | Path, frames: int = DEFAULT_FRAMES, every: int | None = None,
                max_frames: int | None = None, max_pixels: int = MAX_PIXELS) -> Iterator[VideoFrame]:
    """The sampled frames of ``path`` (see :func:`sample_indices`), decoded in order, as RGB images.

    Raises :class:`VideoLoadError` when the file is no video, its frames are too large for ``max_pixels`` (an
    image's limit, see :data:`FRAME_COST`) or no frame can be decoded; a stream that breaks after some frames
    ends the sampling there (one warning) instead of failing the video.
    """
    path = Path(path)
    wanted = sample_indices(count_frames(path, max_pixels), frames, every, max_frames)
    if not wanted:
        raise VideoLoadError(path, "the video stream has no frames")
    yield from frames_at(path, wanted, max_pixels)


def frames_at(path: str | Path, indices: list[int], max_pixels: int = MAX_PIXELS) -> Iterator[VideoFrame]:
    """The frames at positions ``indices`` (0-based, in stream order) of ``path``; positions past the end are
    skipped. Raises :class:`VideoLoadError` when none can be decoded."""
    import av

    path = Path(path)
    keep, last, yielded = set(indices), max(indices, default=-1), 0
    container, stream = _open(path, max_pixels)
    with container:
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i in keep:
                    yield VideoFrame(i, _seconds(frame, stream, i), frame.to_image())
                    yielded += 1
                if i >= last:
                    break
        except av.FFmpegError as err:
            if not yielded:
                raise VideoLoadError(path, f"no decodable frame ({_one_line(err)})") from None
            log.warning("%s: decoding stopped after %d sampled frames: %s", path, yielded, _one_line(err))
    if not yielded:
        raise VideoLoadError(path, "no decodable frame")


def read_frames(path: str | Path, frames: int = DEFAULT_FRAMES, every: int | None = None,
                max_frames: int | None = None, max_pixels: int = MAX_PIXELS) -> list[VideoFrame]:
    """:func:`iter_frames` as a list (short clips, tests, thumbnails)."""
    return list(iter_frames(path, frames, every, max_frames, max_pixels))
