"""DCGAN (Radford, Metz, Chintala 2016): transposed-convolution generator against a strided-convolution critic.

Trained with the paper's recipe: Adam(lr 2e-4, betas 0.5/0.999), N(0, 0.02) initialisation, a discriminator
step on a real and a generated batch, then a generator step with the non-saturating loss. The discriminator
returns logits and the losses use ``BCEWithLogitsLoss`` (the numerically stable form of Sigmoid + BCE).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fakescope.generators._registry import register_generator
from fakescope.generators.base import ImageGenerator, dcgan_init, down_stack, up_stack


class Discriminator(nn.Module):
    """Strided convolutions to 4x4, then a 4x4 convolution to one logit per image."""

    def __init__(self, in_chans: int, width: int, size: int):
        super().__init__()
        self.features, ch = down_stack(in_chans, width, size)
        self.head = nn.Conv2d(ch, 1, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten()


class DCGAN(ImageGenerator):
    """Generator and discriminator in one module, so one checkpoint holds both (training can resume)."""

    def __init__(self, size: int = 64, channels: int = 3, num_classes: int = 1, latent_dim: int = 100,
                 width: int = 64, d_width: int | None = None, g_in: int | None = None, d_in: int | None = None):
        super().__init__(size, channels, num_classes, latent_dim)
        self.generator = up_stack(g_in or latent_dim, width, size, channels)
        self.discriminator = Discriminator(d_in or channels, d_width or width, size)
        self.apply(dcgan_init)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z[:, :, None, None])

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.discriminator(x)

    def configure_optimizers(self, lr: float | None = None) -> dict[str, torch.optim.Optimizer]:
        lr = lr or 2e-4
        return {"g": torch.optim.Adam(self.generator_parameters(), lr=lr, betas=(0.5, 0.999)),
                "d": torch.optim.Adam(self.discriminator_parameters(), lr=lr, betas=(0.5, 0.999))}

    def generator_parameters(self):
        return self.generator.parameters()

    def discriminator_parameters(self):
        return self.discriminator.parameters()

    def train_step(self, x: torch.Tensor, y: torch.Tensor,
                   optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        n = x.size(0)
        fake_y = self._labels(n, None, None)
        fake_y = None if fake_y is None else fake_y.to(x.device)
        fake = self.decode(torch.randn(n, self.latent_dim, device=x.device), fake_y)
        ones, zeros = torch.ones(n, device=x.device), torch.zeros(n, device=x.device)

        optimizers["d"].zero_grad(set_to_none=True)
        d_real = self.discriminate(x, y if self.conditional else None)
        d_fake = self.discriminate(fake.detach(), fake_y)
        loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(d_fake, zeros)
        loss_d.backward()
        optimizers["d"].step()

        optimizers["g"].zero_grad(set_to_none=True)
        loss_g = F.binary_cross_entropy_with_logits(self.discriminate(fake, fake_y), ones)
        loss_g.backward()
        optimizers["g"].step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
                "d_real": torch.sigmoid(d_real).mean().item(), "d_fake": torch.sigmoid(d_fake).mean().item()}


@register_generator("dcgan", description="DCGAN: transposed-conv generator vs strided-conv discriminator (64 px)")
def dcgan(size: int = 64, channels: int = 3, num_classes: int = 1, **kwargs) -> DCGAN:
    return DCGAN(size=size, channels=channels, num_classes=num_classes, **kwargs)
