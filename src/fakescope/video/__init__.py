"""Video: frame sampling (PyAV), face detection and cropping (OpenCV), per-frame and per-video scores.

Importing this package is cheap: PyAV and OpenCV are imported when a video is first opened.
"""
from fakescope.video.frames import (
    VIDEO_EXTENSIONS,
    VideoFrame,
    VideoLoadError,
    is_video_file,
    iter_frames,
)

__all__ = ["VIDEO_EXTENSIONS", "VideoFrame", "VideoLoadError", "is_video_file", "iter_frames"]
