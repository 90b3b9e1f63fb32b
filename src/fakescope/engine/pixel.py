"""Pixel-level supervision from tampering masks (``TrainConfig.mask_loss``), a training-time aid only.

A 1x1 convolution reads the detector's Grad-CAM layer (the registry's ``target_layer``, its last spatial feature
map) and predicts, per cell, the share of tampered pixels; its binary cross-entropy against the ground-truth mask
(pooled to the same cells) is added to the image-level loss. The image label says *that* a splice exists, the mask
says *where*, so the backbone is pushed towards the evidence at the pasted region instead of scene content or
compression. Localisation-supervised detectors do this (e.g. MVSS-Net, Chen et al. ICCV 2021).

The head is dropped when saving: :class:`MaskSupervised` keeps the detector as ``module``, which
:func:`fakescope.checkpoint.unwrap` follows, so the checkpoint, ONNX export and scan see the plain detector.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fakescope.engine.adversary import source_loss


class MaskSupervised(nn.Module):
    """``detector`` plus a tampering-map head on its layer ``layer``.

    In training mode ``forward`` returns ``(logits, cell_logits)`` with cell logits (N, 1, h, w) at the layer's
    resolution; in eval mode just the detector's logits, so validation and saving treat it as the detector.
    """

    def __init__(self, detector: nn.Module, layer: str, example: torch.Tensor):
        super().__init__()
        self.module = detector
        self._features: torch.Tensor | None = None
        self._hook = detector.get_submodule(layer).register_forward_hook(self._keep)
        was_training = detector.training
        detector.eval()
        with torch.no_grad():
            detector(example)
        detector.train(was_training)
        features, self._features = self._features, None
        if features is None or features.ndim != 4:
            shape = None if features is None else tuple(features.shape)
            raise ValueError(f"mask_loss needs a spatial feature map at layer {layer!r}; it gives {shape}")
        self.head = nn.Conv2d(features.shape[1], 1, kernel_size=1).to(example.device)
        nn.init.zeros_(self.head.weight)  # start at "half tampered" everywhere, no pull on the backbone yet
        nn.init.zeros_(self.head.bias)

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._features = output

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.module(x)
        features, self._features = self._features, None
        if not self.training:
            return logits
        return logits, self.head(features.float())


def pixel_loss(cell_logits: torch.Tensor, masks: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Mean BCE of the cell predictions against each cell's tampered share, over the samples with a target.

    ``masks``: uint8 (N, H, W), 255 = tampered; ``known``: (N,) 1.0 where the sample has a pixel target. Always
    differentiable through the head (zero when nothing is known), so data-parallel replicas all use it.
    """
    target = F.adaptive_avg_pool2d(masks.float().unsqueeze(1) / 255.0, cell_logits.shape[-2:])
    per_sample = F.binary_cross_entropy_with_logits(cell_logits, target, reduction="none").mean((1, 2, 3))
    known = known.float()
    return (per_sample * known).sum() / known.sum().clamp_min(1.0)


class DetectorLoss(nn.Module):
    """The image-level loss (``image_loss(logits, labels)``), plus ``mask_weight`` x :func:`pixel_loss` when the
    model returns cell logits and the batch carries masks, plus the source head's loss when ``sources`` is set (the
    model's last output is then the source logits and the batch's last target each image's training folder:
    :mod:`fakescope.engine.adversary`)."""

    def __init__(self, image_loss: nn.Module, mask_weight: float = 0.0, sources: bool = False):
        super().__init__()
        self.image_loss = image_loss
        self.mask_weight = mask_weight
        self.sources = sources

    def forward(self, output: torch.Tensor | tuple[torch.Tensor, ...], labels: torch.Tensor,
                *targets: torch.Tensor) -> torch.Tensor:
        outputs, extra = (list(output) if isinstance(output, tuple) else [output]), 0.0
        if self.sources:
            extra, targets = source_loss(outputs.pop(), targets[-1]), targets[:-1]
        logits, cells = outputs[0], (outputs[1] if len(outputs) > 1 else None)
        loss = self.image_loss(logits.float(), labels) + extra
        if cells is not None and targets:  # masks and known come together from the dataset
            masks, known = targets
            loss = loss + self.mask_weight * pixel_loss(cells.float(), masks, known)
        return loss
