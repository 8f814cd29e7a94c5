"""The denoising objective: simple MSE on the network's target, optionally min-SNR weighted."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.core.config import LossWeighting
from diffusion.core.schedules import NoiseSchedule
from diffusion.core.training import LossFn


def snr_weight(schedule: NoiseSchedule, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023, eq. 8-10), expressed for the schedule's target."""
    snr = schedule.snr(t)
    clipped = torch.clamp(snr, max=gamma)
    if schedule.prediction == "eps":
        return clipped / snr
    if schedule.prediction == "v":
        return clipped / (snr + 1)
    return clipped


def diffusion_loss(schedule: NoiseSchedule, weighting: LossWeighting = "uniform", gamma: float = 5.0) -> LossFn:
    """L_simple of Ho et al. 2020 (eq. 14): E_{t, x_0, eps} |target - net(x_t, t)|^2.

    With eps prediction and uniform weighting this is exactly the slides' objective
    mu_theta ~ mu_tilde, up to the per-t weights that Ho et al. drop.
    """

    def loss(model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch = x0.shape[0]
        t = torch.randint(0, schedule.timesteps, (batch,), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        x_t = schedule.q_sample(x0, t, noise)
        target = schedule.training_target(x0, t, noise)
        per_sample = (model(x_t, t).float() - target).pow(2).flatten(1).mean(1)  # (B,)
        if weighting == "min_snr":
            per_sample = per_sample * snr_weight(schedule, t, gamma)
        return per_sample.mean()

    return loss
