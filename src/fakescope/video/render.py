"""The frames of a scanned video for the HTML report: every sampled frame, its face boxes drawn, captioned with
its time, score and face flag (frames scored whole are marked "no face")."""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw

from fakescope.forensics.io import MAX_PIXELS
from fakescope.video.frames import VideoLoadError, frames_at

FLAGGED, PASSED = (220, 38, 38), (22, 163, 74)
FRAME_THUMB = 96


def draw_faces(img: Image.Image, faces: list[dict[str, Any]], threshold: float) -> Image.Image:
    """A copy of ``img`` with each face box outlined: red when its score is at or above ``threshold``."""
    out = img.convert("RGB")
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 160))
    for face in faces:
        x, y, w, h = face["box"]
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=FLAGGED if face["score"] >= threshold else PASSED,
                       width=width)
    return out


def _caption(frame: dict[str, Any]) -> str:
    face = "" if frame["face"] else ' &middot; <span class="na">no face</span>'
    return f'{frame["time"]:.2f}s &middot; {frame["score"]:.2f}{face}'


def frame_strip_html(path: str, frames: list[dict[str, Any]], threshold: float,
                     to_uri: Callable[[Image.Image, int], str], max_pixels: int = MAX_PIXELS) -> str:
    """A scrolling strip of the sampled frames (decoded again at their indices, one at a time, under
    ``max_pixels`` as the scan was); ``to_uri(img, size)`` embeds."""
    by_index = {f["index"]: f for f in frames}
    cells = []
    try:
        for vf in frames_at(path, list(by_index), max_pixels):
            f = by_index[vf.index]
            img = draw_faces(vf.image, f["faces"], threshold)
            cells.append(f'<figure style="margin:0;flex:none" title="frame {f["index"]}">'
                         f'<img class="v" style="max-width:{FRAME_THUMB}px" src="{to_uri(img, FRAME_THUMB)}" '
                         f'alt="frame {f["index"]}"><figcaption class="na">{_caption(f)}</figcaption></figure>')
    except VideoLoadError as err:
        return f'<span class="na">{html.escape(err.reason)}</span>'
    return ('<div class="frames" style="display:flex;gap:4px;overflow-x:auto;max-width:480px">'
            + "".join(cells) + "</div>")


def video_cells(result: Any, threshold: float, to_uri: Callable[[Image.Image, int], str],
                max_pixels: int = MAX_PIXELS) -> tuple[str, str, str]:
    """The report's (image, ELA, CAM) cells for a scanned video: its frame strip, and no per-image maps."""
    n_faces = sum(f["face"] for f in result.frames)
    strip = frame_strip_html(result.path, result.frames, threshold, to_uri, max_pixels)
    note = f'<span class="na">video: {len(result.frames)} frames, {n_faces} with a face</span>'
    return strip, note, '<span class="na">not computed for videos</span>'
