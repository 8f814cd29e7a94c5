"""The denoising objective: simple MSE on the network's target, optionally min-SNR weighted, at uniform or log-normal noise levels."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.core.config import LossWeighting, NoiseLevels
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
    if schedule.prediction == "edm":  # |F error|^2 = |x_0 error|^2 / c_out^2: weigh the x_0 error by min(snr, gamma)
        return clipped * schedule.edm_c_out.gather(0, t) ** 2
    return clipped


EDM_LOG_SIGMA_MEAN, EDM_LOG_SIGMA_STD = -1.2, 1.2  # Karras et al. 2022, Table 1 (P_mean, P_std)


def sample_levels(schedule: NoiseSchedule, batch: int, generator: torch.Generator, device: torch.device,
                  levels: NoiseLevels = "uniform") -> torch.Tensor:
    """Each image's noise level t, shape (B,): uniform over 0..T-1, or EDM's log-normal sigma rounded to the nearest
    level (the first t whose sigma_t reaches it; sigma_t rises with t)."""
    if levels == "uniform":
        return torch.randint(0, schedule.timesteps, (batch,), generator=generator, device=device)
    log_sigma = EDM_LOG_SIGMA_MEAN + EDM_LOG_SIGMA_STD * torch.randn(batch, generator=generator, device=device)
    return torch.searchsorted(schedule.sigma, log_sigma.exp()).clamp(max=schedule.timesteps - 1)


def diffusion_loss(schedule: NoiseSchedule, weighting: LossWeighting = "uniform", gamma: float = 5.0,
                   levels: NoiseLevels = "uniform") -> LossFn:
    """L_simple of Ho et al. 2020 (eq. 14): E_{t, x_0, eps} |target - net(x_t, t)|^2.

    With eps prediction and uniform weighting this is exactly the slides' objective
    mu_theta ~ mu_tilde, up to the per-t weights that Ho et al. drop. With ``edm`` prediction and
    uniform weighting it is EDM's loss (Karras et al. 2022, eq. 8: lambda(sigma) c_out^2 = 1).
    """

    def loss(model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch = x0.shape[0]
        t = sample_levels(schedule, batch, generator, x0.device, levels)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        x_t = schedule.q_sample(x0, t, noise)
        target = schedule.training_target(x0, t, noise)
        output = model(schedule.network_input(x_t, t), t).float()
        per_sample = (output - target).pow(2).flatten(1).mean(1)  # (B,)
        if weighting == "min_snr":
            per_sample = per_sample * snr_weight(schedule, t, gamma)
        return per_sample.mean()

    return loss
