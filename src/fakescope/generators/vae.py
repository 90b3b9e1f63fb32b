"""A convolutional variational autoencoder (Kingma and Welling 2014).

The encoder gives the mean and log-variance of q(z|x); a code is drawn with the reparameterisation trick
(z = mu + sigma * eps) so gradients flow through the sampling. The loss per image is the summed squared error
(a Gaussian likelihood with fixed variance) plus ``beta`` times KL(q(z|x) || N(0, I)). Samples decode N(0, I).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fakescope.generators._registry import register_generator
from fakescope.generators.autoencoder import ConvEncoder
from fakescope.generators.base import ImageGenerator, up_stack


class VAE(ImageGenerator):
    def __init__(self, size: int = 64, channels: int = 3, num_classes: int = 1, latent_dim: int = 128,
                 width: int = 32, beta: float = 1.0):
        super().__init__(size, channels, num_classes, latent_dim)
        self.encoder = ConvEncoder(channels, width, size, latent_dim, outputs=2)
        self.decoder = up_stack(latent_dim, width, size, channels)
        self.beta = beta

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)
        return mu, logvar.clamp(-30.0, 20.0)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z[:, :, None, None])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, mu, logvar); the code is sampled in training and is the mean in eval mode."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return self.decode(z), mu, logvar

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        recon, mu, logvar = self(x)
        n = x.size(0)
        rec = F.mse_loss(recon, x, reduction="sum") / n
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / n
        return {"loss": rec + self.beta * kl, "recon": rec, "kl": kl, "recon_mse": rec / x[0].numel()}

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor) -> float:
        """Mean squared error per pixel of the reconstruction from the posterior mean (eval mode)."""
        was_training = self.training
        self.eval()
        err = F.mse_loss(self(x)[0], x).item()
        self.train(was_training)
        return err

    def configure_optimizers(self, lr: float | None = None) -> dict[str, torch.optim.Optimizer]:
        return {"vae": torch.optim.Adam(self.parameters(), lr=lr or 1e-3)}

    def train_step(self, x: torch.Tensor, y: torch.Tensor,
                   optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        opt = optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        losses = self.loss(x)
        losses["loss"].backward()
        opt.step()
        return {k: v.item() for k, v in losses.items()}


@register_generator("vae", description="Convolutional VAE: reparameterised codes, summed squared error + KL")
def vae(size: int = 64, channels: int = 3, num_classes: int = 1, **kwargs) -> VAE:
    return VAE(size=size, channels=channels, num_classes=num_classes, **kwargs)
