"""Shared fixtures: tiny configs that train in seconds on the CPU."""

from __future__ import annotations

import pytest
import torch

from diffusion.config import DiffusionConfig, RunConfig, TrainConfig
from diffusion.models import denoiser_config

TINY_SIZES = {"width": 8, "depth": 1}


def tiny_run(arch: str = "unet", steps: int = 20, **train: object) -> RunConfig:
    """A run of a tiny ``arch`` on a 50-level schedule, fp32 for bit-exact comparisons."""
    train_config = TrainConfig(steps=steps, batch_size=16, lr=2e-3, warmup_steps=2, ema_decay=0.9,
                               precision="fp32", **train)  # type: ignore[arg-type]
    return RunConfig(
        model=denoiser_config(arch, **TINY_SIZES, num_heads=2),
        diffusion=DiffusionConfig(timesteps=50),
        train=train_config,
    )


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)
