"""Corruptions of a real image set, each a function of a severity in [0, 1] and a seed.

They turn real digits into progressively worse "generated" sets of known badness, so a
metric can be judged by how it responds (the slides' "Metric comparison"). Images are in
[-1, 1], (N, 1, 28, 28); severity 0 returns the images unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffusion.core.config import ConfigError, lookup

MAX_NOISE_SIGMA = 1.0  # at severity 1 the noise std is half the [-1, 1] range


def _check(severity: float) -> None:
    if not 0.0 <= severity <= 1.0:
        raise ConfigError(f"severity must be in [0, 1], got {severity}")


def dead_pixels(images: torch.Tensor, severity: float, seed: int, other: torch.Tensor | None = None) -> torch.Tensor:
    """A fraction ``severity`` of pixel positions forced to black in every image (a sensor's dead pixels)."""
    _check(severity)
    generator = torch.Generator().manual_seed(seed)
    positions = images[0].numel()
    dead = torch.randperm(positions, generator=generator)[: round(severity * positions)]
    out = images.clone().flatten(1)
    out[:, dead] = -1.0
    return out.view_as(images)


def gaussian_noise(images: torch.Tensor, severity: float, seed: int, other: torch.Tensor | None = None) -> torch.Tensor:
    """Additive N(0, (severity * MAX_NOISE_SIGMA)^2) noise, clipped back to [-1, 1]."""
    _check(severity)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator) * (severity * MAX_NOISE_SIGMA)
    return (images + noise.to(images.device)).clamp(-1.0, 1.0)


def invasion(images: torch.Tensor, severity: float, seed: int, other: torch.Tensor | None = None) -> torch.Tensor:
    """A fraction ``severity`` of the images replaced by random images of ``other`` (another set)."""
    _check(severity)
    if other is None:
        raise ConfigError("the invasion corruption needs another image set (other=...)")
    generator = torch.Generator().manual_seed(seed)
    replaced = torch.randperm(len(images), generator=generator)[: round(severity * len(images))]
    donors = torch.randint(0, len(other), (len(replaced),), generator=generator)
    out = images.clone()
    out[replaced] = other[donors].to(images.device, images.dtype)
    return out


Corruption = Callable[[torch.Tensor, float, int, "torch.Tensor | None"], torch.Tensor]

CORRUPTIONS: dict[str, Corruption] = {
    "dead_pixels": dead_pixels,
    "gaussian_noise": gaussian_noise,
    "invasion": invasion,
}


def get_corruption(name: str) -> Corruption:
    """The corruption registered as ``name``, or a ConfigError listing them."""
    return lookup(CORRUPTIONS, name, "corruption")
