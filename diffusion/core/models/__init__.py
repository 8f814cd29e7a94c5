"""The denoiser registry: one dict gives dispatch, validation, defaults and test parametrisation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from diffusion.core.config import Arch, DenoiserConfig, from_dict, lookup, registry
from diffusion.core.models.cnn import CNNDenoiser
from diffusion.core.models.mlp import MLPDenoiser
from diffusion.core.models.unet import plain_unet, residual_unet


@dataclass(frozen=True)
class DenoiserSpec:
    """How to build one architecture, its default size, and a one-line description."""

    build: Callable[[DenoiserConfig], nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


# In order of rising capacity.
DENOISERS: dict[Arch, DenoiserSpec] = registry(Arch, {
    "mlp": DenoiserSpec(MLPDenoiser, {"width": 256, "depth": 4}, "flattened image + time embedding through a residual MLP"),
    "cnn": DenoiserSpec(CNNDenoiser, {"width": 64, "depth": 6}, "plain conv stack at 28x28, time embedding per block"),
    "unet": DenoiserSpec(plain_unet, {"width": 32, "depth": 1}, "plain U-Net 28 -> 14 -> 7, conv blocks, skip connections"),
    "resunet": DenoiserSpec(residual_unet, {"width": 32, "depth": 2}, "DDPM U-Net: GroupNorm residual blocks"),
    "attnunet": DenoiserSpec(
        residual_unet,
        {"width": 32, "depth": 2, "attention_resolutions": (7,)},
        "resunet + self-attention at 7x7 and in the middle",
    ),
})


def denoiser_config(arch: str, *, where: str = "DenoiserConfig", **overrides: Any) -> DenoiserConfig:
    """The default config of ``arch`` with ``overrides`` applied; a refused value is reported at ``where``."""
    return from_dict(DenoiserConfig, {"arch": arch, **lookup(DENOISERS, arch, "model").defaults, **overrides}, where)


def build_denoiser(config: DenoiserConfig) -> nn.Module:
    """A fresh denoiser eps_theta(x_t, t) of the architecture and size in ``config``."""
    model = DENOISERS[config.arch].build(config)
    model.config = config  # the samplers read the image shape from here
    return model


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (frozen ones too: an EMA copy has requires_grad off but the same size)."""
    return sum(p.numel() for p in model.parameters())
