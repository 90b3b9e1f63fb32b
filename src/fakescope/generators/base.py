"""The contract every generator follows, and the convolution stacks the families share.

A generator is an ``nn.Module`` that knows its own training step (a GAN steps two optimizers, an autoencoder
one), so the training loop, the sampler, the checkpoints and the CLI treat every family the same way:

- ``sample(n, generator=None, labels=None)``: ``n`` images in [-1, 1], shape (n, channels, size, size);
- ``configure_optimizers(lr=None)``: named optimizers (the family's default learning rate when ``lr`` is None);
- ``train_step(x, y, optimizers)``: one update on a batch in [-1, 1] (``y``: class indices), returns float losses.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def check_size(size: int) -> None:
    if size < 16 or size & (size - 1):
        raise ValueError(f"generator image size must be a power of two >= 16, got {size}")


def up_stack(latent_dim: int, width: int, size: int, channels: int) -> nn.Sequential:
    """The DCGAN generator: (N, latent_dim, 1, 1) -> (N, channels, size, size) in [-1, 1].

    A 4x4 transposed convolution from the latent vector, then stride-2 transposed convolutions with BatchNorm and
    ReLU halving the width while doubling the side, and a Tanh output (Radford et al. 2016). For 64 px and
    ``width=64`` this is the paper's 512-256-128-64 generator.
    """
    check_size(size)
    depth = int(math.log2(size)) - 2
    ch = width * 2 ** (depth - 1)
    layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
    for _ in range(depth - 1):
        layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
        ch //= 2
    layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def down_stack(in_chans: int, width: int, size: int) -> tuple[nn.Sequential, int]:
    """The DCGAN discriminator trunk: (N, in_chans, size, size) -> (N, C, 4, 4); returns the stack and C.

    Stride-2 convolutions with LeakyReLU(0.2), BatchNorm on every layer but the first (Radford et al. 2016).
    """
    check_size(size)
    depth = int(math.log2(size)) - 2
    layers: list[nn.Module] = [nn.Conv2d(in_chans, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    ch = width
    for _ in range(depth - 1):
        layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
        ch *= 2
    return nn.Sequential(*layers), ch


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ImageGenerator(nn.Module):
    """Base class: sizes, label handling and sampling shared by every family."""

    conditional: bool = False

    def __init__(self, size: int, channels: int, num_classes: int, latent_dim: int):
        super().__init__()
        check_size(size)
        self.size, self.channels, self.num_classes, self.latent_dim = size, channels, num_classes, latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _labels(self, n: int, labels: torch.Tensor | int | None, generator: torch.Generator | None) -> torch.Tensor | None:
        """Class indices for ``n`` samples: the given ones, or uniform draws for a conditional model."""
        if not self.conditional:
            if labels is not None:
                raise ValueError(f"{type(self).__name__} is not conditional; it takes no labels")
            return None
        if labels is None:
            return torch.randint(self.num_classes, (n,), generator=generator)
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.ndim == 0:
            labels = labels.expand(n)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes - 1}]")
        return labels

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latent codes for sampling, drawn on the CPU so a seed gives the same codes on every device."""
        return torch.randn(n, self.latent_dim, generator=generator)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | int | None = None) -> torch.Tensor:
        """``n`` new images in [-1, 1] (eval mode: BatchNorm uses running statistics, so samples are independent)."""
        was_training = self.training
        self.eval()
        y = self._labels(n, labels, generator)
        z = self.latent(n, generator).to(self.device)
        out = self.decode(z, None if y is None else y.to(self.device))
        self.train(was_training)
        return out

    def configure_optimizers(self, lr: float | None = None) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, x: torch.Tensor, y: torch.Tensor,
                   optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        raise NotImplementedError
