"""Source-invariant training (``TrainConfig.source_adversary``), a training-time aid only.

A small classifier reads the detector's pooled features (the input of its classifier layer) and learns which
training folder each image came from; between the two sits a gradient reversal layer (Ganin & Lempitsky, "Unsupervised
Domain Adaptation by Backpropagation", ICML 2015), so the backbone is pushed, with weight ``source_adversary``, to
make the sources *in*distinguishable while it learns real against fake. Features that cannot tell CASIA's scenes
from FFHQ's faces or DiffusionDB's art cannot lean on what a source looks like, only on what its fakes share.

:class:`SourceAdversary` keeps the detector (or a :class:`~fakescope.engine.pixel.MaskSupervised` around it) as
``module``, which :func:`fakescope.checkpoint.unwrap` follows, so the checkpoint, ONNX export and scan see the
plain detector. In training mode its output is the inner output with the source logits appended.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:  # noqa: D102
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """``x`` unchanged going forward; its gradient multiplied by ``-weight`` going back."""
    return _Reverse.apply(x, weight)


class SourceAdversary(nn.Module):
    """``model`` plus a source classifier behind gradient reversal on the pooled features of ``classifier``.

    ``classifier``: the layer producing the detector's logits (its input is what the source head reads);
    ``n_sources``: the number of training folders; ``weight``: the reversed gradient's scale.
    """

    def __init__(self, model: nn.Module, classifier: nn.Module, n_sources: int, weight: float, hidden: int = 256):
        super().__init__()
        if n_sources < 2:
            raise ValueError(f"source_adversary needs at least two training folders, got {n_sources}")
        self.module = model
        self.weight = weight
        self._features: torch.Tensor | None = None
        width = getattr(classifier, "in_features", None)
        if not isinstance(width, int):
            raise ValueError(f"source_adversary needs a linear classifier layer; got {type(classifier).__name__}")
        self._hook = classifier.register_forward_pre_hook(self._keep)
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, n_sources))

    def _keep(self, module: nn.Module, inputs: tuple) -> None:
        self._features = inputs[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        output = self.module(x)
        features, self._features = self._features, None
        if not self.training:
            return output
        inner = output if isinstance(output, tuple) else (output,)
        return (*inner, self.head(reverse_gradient(features.float().flatten(1), self.weight)))


def source_loss(source_logits: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the source head against each image's training folder."""
    return F.cross_entropy(source_logits.float(), sources.long())
