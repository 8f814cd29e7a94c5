"""Building blocks shared by the convolutional denoisers (Ho et al. 2020, appendix B)."""

from __future__ import annotations

import torch
from torch import nn


def group_count(channels: int, min_channels_per_group: int = 4) -> int:
    """GroupNorm groups for ``channels``: the most of 32, 16, ..., 1 that leave >= 4 channels each.

    DDPM uses 32 groups of 4+ channels. One channel per group would be InstanceNorm, which
    erases each channel's spatial mean: the net then cannot see an image's overall brightness
    and samples come out with grey backgrounds.
    """
    for groups in (32, 16, 8, 4, 2):
        if channels % groups == 0 and channels // groups >= min_channels_per_group:
            return groups
    return 1


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters so that a residual branch starts as the identity (DDPM code)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ConvBlock(nn.Module):
    """Conv3x3, GroupNorm, the time embedding added per channel, SiLU: no residual path."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = nn.GroupNorm(group_count(out_channels), out_channels)
        self.time = nn.Linear(time_dim, out_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:  # (B, Ci, H, W), (B, Td)
        h = self.norm(self.conv(h)) + self.time(temb)[:, :, None, None]
        return self.dropout(nn.functional.silu(h))  # (B, Co, H, W)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice with the time embedding added in between, plus a skip path."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, out_channels)
        self.norm2 = nn.GroupNorm(group_count(out_channels), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:  # (B, Ci, H, W), (B, Td)
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.time(nn.functional.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(nn.functional.silu(self.norm2(h))))
        return self.skip(x) + h  # (B, Co, H, W)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual (DDPM's 16x16 attention block)."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels cannot be split into {num_heads} attention heads")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(group_count(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        b, c, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, height * width)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, C/heads)
        h = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        h = h.transpose(-1, -2).reshape(b, c, height, width)
        return x + self.proj(h)


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 convolution (28 -> 14 -> 7)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
