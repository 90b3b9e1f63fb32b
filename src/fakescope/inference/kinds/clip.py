"""The clip kind: a video model (``models/temporal.py``) reading clips of ``T`` frames (``info["kind"] = "clip"``).

Images and frames are scored as one-frame clips (the base contract); a video is scored from its sampled frames
by the model itself (:meth:`ClipDetector.score_frames`), a learned aggregator in place of the top-k mean.
"""
from __future__ import annotations

import numpy as np

from fakescope.inference.detector import Detector
from fakescope.inference.kinds import register_kind
from fakescope.video.clips import CLIP_KIND, ClipSpec, clip_spec, fit_length


@register_kind(CLIP_KIND)
class ClipDetector(Detector):
    """A detector whose model reads clips."""

    @property
    def clip(self) -> ClipSpec:
        return clip_spec(self.preprocess) or ClipSpec()

    def predict_sequence(self, frames: list[np.ndarray]) -> float:
        """Fake probability of a video from its prepared frames, in time order.

        The frames are dealt into interleaved clips of ``T`` (frames 0, s, 2s, ... then 1, s + 1, ...), each
        spanning the whole video as a training clip does; the video's probability is their mean.
        """
        t = self.clip.frames
        n_clips = max(1, len(frames) // t)
        clips = [np.stack(fit_length(frames[i::n_clips], t)) for i in range(n_clips)]
        return float(np.mean(self.predict_batch(clips)))

    def score_frames(self, frames: list, frame_scores: np.ndarray, top_k: int) -> float:
        return self.predict_sequence(frames)
