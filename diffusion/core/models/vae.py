"""The evaluation VAE (Kingma and Welling 2014): its encoder mean is the embedding FD is computed in."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.core.config import VAEConfig
from diffusion.core.training import Batch, LossFn


class ConvVAE(nn.Module):
    """q(z|x) = N(mu(x), diag sigma^2(x)) with conv encoder 28 -> 14 -> 7; Bernoulli decoder p(x|z)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        w, flat = config.width, 2 * config.width * 7 * 7
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 4, stride=2, padding=1), nn.SiLU(),  # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.SiLU(),  # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(flat, config.hidden), nn.SiLU(),
            nn.Linear(config.hidden, 2 * config.latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden), nn.SiLU(),
            nn.Linear(config.hidden, flat), nn.SiLU(), nn.Unflatten(1, (2 * w, 7, 7)),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.SiLU(),  # (B, w, 14, 14)
            nn.ConvTranspose2d(w, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28) logits
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2) of q(z|x), each (B, latent_dim); x in [-1, 1]."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of the pixels in [0, 1], (B, 1, 28, 28)."""
        return self.decoder(z)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding: the encoder mean mu(x), (B, latent_dim)."""
        return self.encode(x)[0]

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised pass z = mu + sigma * noise: (logits, mu, logvar)."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * noise
        return self.decode(z), mu, logvar


def negative_elbo(model: ConvVAE, x: torch.Tensor, noise: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image -ELBO = reconstruction (Bernoulli NLL, nats) + beta KL(q(z|x) || N(0, I)), (B,) each part."""
    logits, mu, logvar = model(x, noise)
    target = (x + 1) / 2
    reconstruction = nn.functional.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).sum(1)
    return reconstruction + beta * kl, reconstruction, kl


def vae_loss(config: VAEConfig) -> LossFn:
    """The training loss: -ELBO per pixel (the same optimum as per image, gentler gradients)."""

    def loss(model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        x = batch[0] if isinstance(batch, tuple) else batch
        noise = torch.randn((x.shape[0], config.latent_dim), generator=generator, device=x.device)
        total, _, _ = negative_elbo(model, x, noise, config.beta)  # type: ignore[arg-type]
        return total.mean() / x[0].numel()

    return loss
