"""Denoisers 3-5: one U-Net skeleton (28 -> 14 -> 7 and back, skip connections).

``unet`` fills it with plain conv blocks, ``resunet`` with GroupNorm residual blocks (the DDPM
architecture of Ho et al. 2020, appendix B, scaled to 28x28), and ``attnunet`` adds
self-attention at the resolutions named in ``attention_resolutions`` and in the middle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from diffusion.core.config import DenoiserConfig
from diffusion.core.models.blocks import ConvBlock, Downsample, ResBlock, SelfAttention, Upsample, group_count
from diffusion.core.models.embedding import TimeEmbedding

BlockFactory = Callable[[int, int, int, float], nn.Module]


class UNetLevel(nn.Module):
    """A block (conv or residual) optionally followed by self-attention."""

    def __init__(self, block: nn.Module, attention: nn.Module | None) -> None:
        super().__init__()
        self.block = block
        self.attention = attention if attention is not None else nn.Identity()

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.attention(self.block(h, temb))


class UNet(nn.Module):
    """eps_theta(x_t, t): ``depth`` blocks per resolution down, ``depth + 1`` up (improved-diffusion)."""

    def __init__(self, config: DenoiserConfig, make_block: BlockFactory) -> None:
        super().__init__()
        levels = len(config.channel_mults)
        if config.image_size % 2 ** (levels - 1):
            raise ValueError(f"image size {config.image_size} does not halve {levels - 1} times")
        time_dim = 4 * config.width
        self.time_embedding = TimeEmbedding(config.width, time_dim)
        self.inp = nn.Conv2d(config.image_channels, config.width, 3, padding=1)

        def level(cin: int, cout: int, resolution: int) -> UNetLevel:
            attend = resolution in config.attention_resolutions
            attention = SelfAttention(cout, config.num_heads) if attend else None
            return UNetLevel(make_block(cin, cout, time_dim, config.dropout), attention)

        self.down = nn.ModuleList()
        skip_channels = [config.width]
        channels, resolution = config.width, config.image_size
        for i, mult in enumerate(config.channel_mults):
            for _ in range(config.depth):
                self.down.append(level(channels, config.width * mult, resolution))
                channels = config.width * mult
                skip_channels.append(channels)
            if i < levels - 1:
                self.down.append(Downsample(channels))
                skip_channels.append(channels)
                resolution //= 2

        mid_attention = SelfAttention(channels, config.num_heads) if config.attention_resolutions else None
        self.middle = nn.ModuleList(
            [
                UNetLevel(make_block(channels, channels, time_dim, config.dropout), mid_attention),
                UNetLevel(make_block(channels, channels, time_dim, config.dropout), None),
            ]
        )

        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(config.channel_mults))):
            for j in range(config.depth + 1):
                self.up.append(level(channels + skip_channels.pop(), config.width * mult, resolution))
                channels = config.width * mult
                if i > 0 and j == config.depth:
                    self.up.append(Upsample(channels))
                    resolution *= 2

        self.out = nn.Sequential(
            nn.GroupNorm(group_count(channels), channels),
            nn.SiLU(),
            nn.Conv2d(channels, config.image_channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), (B,)
        temb = self.time_embedding(t)  # (B, 4W)
        h = self.inp(x)
        skips = [h]
        for layer in self.down:
            h = layer(h) if isinstance(layer, Downsample) else layer(h, temb)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, temb)
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h)
            else:
                h = layer(torch.cat([h, skips.pop()], dim=1), temb)
        return self.out(h)


def plain_unet(config: DenoiserConfig) -> UNet:
    """``unet``: the skeleton with plain conv blocks and no attention."""
    return UNet(config, ConvBlock)


def residual_unet(config: DenoiserConfig) -> UNet:
    """``resunet`` and ``attnunet``: the skeleton with residual blocks (attention from the config)."""
    return UNet(config, ResBlock)
