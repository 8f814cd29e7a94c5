"""Denoiser 2: a plain convolution stack at full resolution, time embedding added per block."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.core.config import DenoiserConfig
from diffusion.core.models.blocks import ConvBlock
from diffusion.core.models.embedding import TimeEmbedding


class CNNDenoiser(nn.Module):
    """eps_theta(x_t, t) from ``depth`` same-resolution conv blocks of ``width`` channels."""

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        time_dim = 4 * config.width
        self.time_embedding = TimeEmbedding(config.width, time_dim)
        channels = [config.image_channels] + [config.width] * config.depth
        self.blocks = nn.ModuleList(ConvBlock(a, b, time_dim) for a, b in zip(channels[:-1], channels[1:]))
        self.out = nn.Conv2d(config.width, config.image_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), (B,)
        temb = self.time_embedding(t)
        h = x
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h)
