"""A convolutional autoencoder: the DCGAN discriminator trunk as encoder, the DCGAN generator as decoder.

An autoencoder has no prior over its codes, so to *generate* it keeps running statistics (mean and standard
deviation per latent dimension) of the codes it sees in training and decodes Gaussian draws with those moments.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fakescope.generators._registry import register_generator
from fakescope.generators.base import ImageGenerator, down_stack, up_stack


class ConvEncoder(nn.Module):
    """Image -> ``outputs`` vectors of ``latent_dim`` (one for an autoencoder, mean and log-variance for a VAE)."""

    def __init__(self, channels: int, width: int, size: int, latent_dim: int, outputs: int = 1):
        super().__init__()
        self.features, ch = down_stack(channels, width, size)
        self.heads = nn.ModuleList(nn.Linear(ch * 16, latent_dim) for _ in range(outputs))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.features(x).flatten(1)
        return [head(h) for head in self.heads]


class ConvAutoencoder(ImageGenerator):
    def __init__(self, size: int = 64, channels: int = 3, num_classes: int = 1, latent_dim: int = 128,
                 width: int = 32, stats_momentum: float = 0.05):
        super().__init__(size, channels, num_classes, latent_dim)
        self.encoder = ConvEncoder(channels, width, size, latent_dim)
        self.decoder = up_stack(latent_dim, width, size, channels)
        self.stats_momentum = stats_momentum
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x``."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor) -> float:
        """Mean squared error per pixel of the (deterministic, eval-mode) reconstruction."""
        was_training = self.training
        self.eval()
        err = F.mse_loss(self(x), x).item()
        self.train(was_training)
        return err

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, generator=generator)
        return z * self.latent_std.cpu() + self.latent_mean.cpu()

    @torch.no_grad()
    def _track_codes(self, z: torch.Tensor) -> None:
        if z.size(0) < 2:
            return
        m = self.stats_momentum
        self.latent_mean.lerp_(z.mean(0), m)
        self.latent_std.lerp_(z.std(0), m)

    def configure_optimizers(self, lr: float | None = None) -> dict[str, torch.optim.Optimizer]:
        return {"ae": torch.optim.Adam(self.parameters(), lr=lr or 1e-3)}

    def train_step(self, x: torch.Tensor, y: torch.Tensor,
                   optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        opt = optimizers["ae"]
        opt.zero_grad(set_to_none=True)
        z = self.encode(x)
        loss = F.mse_loss(self.decode(z), x)
        loss.backward()
        opt.step()
        self._track_codes(z.detach())
        return {"loss": loss.item(), "recon_mse": loss.item()}


@register_generator("ae", description="Convolutional autoencoder; samples decode Gaussian codes fitted in training")
def autoencoder(size: int = 64, channels: int = 3, num_classes: int = 1, **kwargs) -> ConvAutoencoder:
    return ConvAutoencoder(size=size, channels=channels, num_classes=num_classes, **kwargs)
