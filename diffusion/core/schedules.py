"""Noise schedules, the forward process q(x_t | x_0) and the posterior q(x_{t-1} | x_t, x_0).

Index convention (used everywhere in this package): noise levels are t in {0, ..., T-1};
beta_t is the variance added by step t, alpha_t = 1 - beta_t and
alpha_bar_t = prod_{s<=t} (1 - beta_s), so x_t ~ N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
is the image after t + 1 noising steps. ``x_0`` always names the clean image, and level
t = -1 is the clean image itself (alpha_bar_{-1} := 1). Ho et al. (2020) count t = 1..T;
their t is our t + 1. This is the convention of diffusers and improved-diffusion.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from diffusion.core.config import ConfigError, DiffusionConfig, Prediction, ScheduleName, registry

EDM_SIGMA_DATA = 0.5  # the data's standard deviation in EDM's preconditioning (Karras et al. 2022, Table 1)


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Linear betas of Ho et al. 2020 (sec. 4), rescaled so that any T keeps the same total noise."""
    scale = 1000.0 / timesteps
    betas = np.linspace(scale * beta_start, scale * beta_end, timesteps, dtype=np.float64)
    return np.clip(betas, 0.0, 0.999)


def cosine_betas(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine schedule of Nichol and Dhariwal 2021, eq. 17: alpha_bar(t) = f(t) / f(0)."""
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return np.clip(1 - alpha_bar[1:] / alpha_bar[:-1], 0.0, max_beta)


SCHEDULES: dict[ScheduleName, Callable[[DiffusionConfig], np.ndarray]] = registry(ScheduleName, {
    "linear": lambda c: linear_betas(c.timesteps, c.beta_start, c.beta_end),
    "cosine": lambda c: cosine_betas(c.timesteps, c.cosine_offset),
})


def _gather(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """values[t] shaped (B, 1, 1, ...) to broadcast against a (B, ...) batch."""
    return values.gather(0, t).reshape(-1, *([1] * (ndim - 1)))


class NoiseSchedule:
    """All per-level constants of one schedule, computed once in float64 and stored as tensors.

    Move it with ``.to(device)``; every method indexes with a (B,) long tensor t, so nothing is
    recomputed or copied to the host inside a training or sampling loop.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor
    sqrt_alpha_bar: torch.Tensor
    sqrt_one_minus_alpha_bar: torch.Tensor
    sigma: torch.Tensor
    edm_c_skip: torch.Tensor
    edm_c_out: torch.Tensor
    edm_input_scale: torch.Tensor
    posterior_coef_x0: torch.Tensor
    posterior_coef_xt: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance: torch.Tensor

    def __init__(self, betas: np.ndarray, prediction: Prediction = "eps") -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or len(betas) < 2 or not np.all((betas > 0) & (betas < 1)):
            raise ConfigError("betas must be a 1-D array of at least 2 values in (0, 1)")
        self.prediction = prediction
        self.timesteps = len(betas)
        alphas = 1.0 - betas
        alpha_bar = np.cumprod(alphas)
        alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
        posterior_variance = betas * (1 - alpha_bar_prev) / (1 - alpha_bar)
        table = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            "sqrt_alpha_bar": np.sqrt(alpha_bar),
            "sqrt_one_minus_alpha_bar": np.sqrt(1 - alpha_bar),
            # Ho et al. 2020, eq. 7: mu_tilde = coef_x0 * x_0 + coef_xt * x_t, variance beta_tilde.
            "posterior_coef_x0": betas * np.sqrt(alpha_bar_prev) / (1 - alpha_bar),
            "posterior_coef_xt": (1 - alpha_bar_prev) * np.sqrt(alphas) / (1 - alpha_bar),
            "posterior_variance": posterior_variance,
            # beta_tilde_0 = 0; the log is clipped to beta_tilde_1 as in improved-diffusion.
            "posterior_log_variance": np.log(np.append(posterior_variance[1], posterior_variance[1:])),
        }
        # EDM's preconditioning (Karras et al. 2022, Table 1) at sigma_t = sqrt((1 - ab) / ab), with x_sigma = x_t / sqrt(ab)
        sigma = np.sqrt((1 - alpha_bar) / alpha_bar)
        total = sigma**2 + EDM_SIGMA_DATA**2
        table |= {"sigma": sigma, "edm_c_skip": EDM_SIGMA_DATA**2 / total, "edm_c_out": sigma * EDM_SIGMA_DATA / np.sqrt(total),
                  "edm_input_scale": 1 / np.sqrt(total * alpha_bar)}  # c_in / sqrt(ab): the network's input from x_t
        self.alpha_bar_f64 = alpha_bar  # float64 numpy, for samplers' per-step scalars
        self._names = tuple(table)
        for name, values in table.items():
            setattr(self, name, torch.tensor(values, dtype=torch.float32))
        self.device = torch.device("cpu")

    @classmethod
    def from_config(cls, config: DiffusionConfig) -> NoiseSchedule:
        """Build the schedule named by ``config.schedule`` (a key of SCHEDULES)."""
        return cls(SCHEDULES[config.schedule](config), config.prediction)

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """Move every constant to ``device`` (in place) and return self."""
        self.device = torch.device(device)
        for name in self._names:
            setattr(self, name, getattr(self, name).to(self.device))
        return self

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (Ho et al. 2020, eq. 4)."""
        return (
            _gather(self.sqrt_alpha_bar, t, x0.ndim) * x0
            + _gather(self.sqrt_one_minus_alpha_bar, t, x0.ndim) * noise
        )

    def posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean mu_tilde_t(x_t, x_0) and variance beta_tilde_t of q(x_{t-1} | x_t, x_0) (eq. 6-7)."""
        mean = (
            _gather(self.posterior_coef_x0, t, x_t.ndim) * x0
            + _gather(self.posterior_coef_xt, t, x_t.ndim) * x_t
        )
        return mean, _gather(self.posterior_variance, t, x_t.ndim)

    def network_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is fed at x_t: x_t itself, or EDM's c_in x_sigma (unit variance at every level)."""
        if self.prediction != "edm":
            return x_t
        return _gather(self.edm_input_scale, t, x_t.ndim) * x_t

    def training_target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network learns to output: eps, x_0, v = sqrt(ab) eps - sqrt(1-ab) x_0, or EDM's
        F = (x_0 - c_skip x_sigma) / c_out with x_sigma = x_0 + sigma eps (Karras et al. 2022, eq. 7-8)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        if self.prediction == "edm":
            x_sigma = x0 + _gather(self.sigma, t, x0.ndim) * noise
            return (x0 - _gather(self.edm_c_skip, t, x0.ndim) * x_sigma) / _gather(self.edm_c_out, t, x0.ndim)
        return (
            _gather(self.sqrt_alpha_bar, t, x0.ndim) * noise
            - _gather(self.sqrt_one_minus_alpha_bar, t, x0.ndim) * x0
        )

    def split_prediction(
        self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, eps) implied by the network output at x_t; v as in Salimans and Ho 2022, eq. 13; EDM's
        D(x_sigma) = c_skip x_sigma + c_out F (Karras et al. 2022, eq. 7)."""
        a = _gather(self.sqrt_alpha_bar, t, x_t.ndim)
        s = _gather(self.sqrt_one_minus_alpha_bar, t, x_t.ndim)
        if self.prediction == "eps":
            eps = output
            x0 = (x_t - s * eps) / a
        elif self.prediction == "x0":
            x0 = output
            eps = (x_t - a * x0) / s
        elif self.prediction == "edm":
            x0 = _gather(self.edm_c_skip, t, x_t.ndim) * x_t / a + _gather(self.edm_c_out, t, x_t.ndim) * output
            eps = (x_t - a * x0) / s
        else:
            x0 = a * x_t - s * output
            eps = s * x_t + a * output
        return x0, eps

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) at levels t, shape (B,)."""
        ab = self.alpha_bar.gather(0, t)
        return ab / (1 - ab)
