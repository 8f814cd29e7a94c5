"""Denoiser 1: the flattened image and a time embedding through an MLP."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.core.config import DenoiserConfig
from diffusion.core.models.embedding import TimeEmbedding


class MLPBlock(nn.Module):
    """LayerNorm, Linear, SiLU with the time embedding added, and a residual connection."""

    def __init__(self, width: int, time_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, width)
        self.time = nn.Linear(time_dim, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:  # (B, W), (B, Td)
        return h + self.dropout(nn.functional.silu(self.linear(self.norm(h)) + self.time(temb)))


class MLPDenoiser(nn.Module):
    """eps_theta(x_t, t) for a flattened image: ``depth`` residual MLP blocks of ``width`` units."""

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        pixels = config.image_channels * config.image_size**2
        time_dim = 128
        self.time_embedding = TimeEmbedding(128, time_dim)
        self.inp = nn.Linear(pixels, config.width)
        self.blocks = nn.ModuleList(MLPBlock(config.width, time_dim, config.dropout) for _ in range(config.depth))
        self.out = nn.Sequential(nn.LayerNorm(config.width), nn.Linear(config.width, pixels))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), (B,)
        temb = self.time_embedding(t)
        h = self.inp(x.flatten(1))  # (B, W)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h).view_as(x)
