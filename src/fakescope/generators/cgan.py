"""Conditional DCGAN (Mirza and Osindero 2014, on the DCGAN architecture).

The class label reaches the generator as an ``nn.Embedding`` vector concatenated to the noise, and the
discriminator as an extra input map (a learned ``size x size`` plane per class) concatenated to the image, so
both networks see which class an image is meant to be.
"""
from __future__ import annotations

import torch
from torch import nn

from fakescope.generators._registry import register_generator
from fakescope.generators.dcgan import DCGAN


class ConditionalGAN(DCGAN):
    conditional = True

    def __init__(self, size: int = 64, channels: int = 3, num_classes: int = 2, latent_dim: int = 100,
                 width: int = 64, d_width: int | None = None, embed_dim: int = 50):
        if num_classes < 1:
            raise ValueError("a conditional GAN needs at least one class")
        super().__init__(size, channels, num_classes, latent_dim, width, d_width,
                         g_in=latent_dim + embed_dim, d_in=channels + 1)
        self.g_embedding = nn.Embedding(num_classes, embed_dim)
        self.d_embedding = nn.Embedding(num_classes, size * size)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            raise ValueError("a conditional GAN needs labels")
        h = torch.cat([z, self.g_embedding(labels)], dim=1)
        return self.generator(h[:, :, None, None])

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            raise ValueError("a conditional GAN needs labels")
        plane = self.d_embedding(labels).view(-1, 1, self.size, self.size)
        return self.discriminator(torch.cat([x, plane], dim=1))

    def generator_parameters(self):
        return [*self.generator.parameters(), *self.g_embedding.parameters()]

    def discriminator_parameters(self):
        return [*self.discriminator.parameters(), *self.d_embedding.parameters()]


@register_generator("cgan", conditional=True,
                    description="Conditional DCGAN: labels via nn.Embedding into the noise and as a map for D")
def cgan(size: int = 64, channels: int = 3, num_classes: int = 2, **kwargs) -> ConditionalGAN:
    return ConditionalGAN(size=size, channels=channels, num_classes=num_classes, **kwargs)
