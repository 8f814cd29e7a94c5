"""Samplers as generators that yield every step (improved-diffusion's progressive loop).

A sampler takes the network as an argument (diffusers keeps model, schedule and sampler
apart); a denoising path is a list of the yielded snapshots, and a progress bar is a
``tqdm`` around the generator. Every random draw comes from one ``torch.Generator``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import safetensors.torch
import torch
from torch import nn

from diffusion.core.config import ConfigError, SamplerName, at_least, between, lookup, registry
from diffusion.core.device import autocast
from diffusion.core.schedules import NoiseSchedule

DDPM_VARIANCES: tuple[str, ...] = ("beta_tilde", "beta")


@dataclass(frozen=True)
class SamplerStep:
    """One step from level ``t`` to ``t_prev`` (-1 is the clean image): the new sample and x_0 guess."""

    index: int
    t: int
    t_prev: int
    x: torch.Tensor  # (B, C, H, W), the sample at level t_prev
    x0: torch.Tensor  # (B, C, H, W), the x_0 predicted at level t


class StackedNoise:
    """Noise for a batch stacked from several requests: each block of rows drawn from its own generator.

    Sampling several requests as one batch then gives each request the images it would get
    alone with its own seed (up to the network's batch-size-dependent rounding).
    """

    def __init__(self, generators: list[torch.Generator], counts: list[int]) -> None:
        if len(generators) != len(counts) or min(counts, default=0) < 1:
            raise ConfigError(f"one generator per request and a positive count each, got {len(generators)} and {counts}")
        self.generators, self.counts = generators, counts

    def randn(self, shape: tuple[int, ...] | torch.Size, device: torch.device) -> torch.Tensor:
        """N(0, I) of ``shape``, whose first dimension is the sum of the counts."""
        if shape[0] != sum(self.counts):
            raise ConfigError(f"noise for {shape[0]} rows requested from requests of {self.counts}")
        return torch.cat([torch.randn((n, *shape[1:]), generator=g, device=device)
                          for g, n in zip(self.generators, self.counts)])


Noise = torch.Generator | StackedNoise
"""Where a sampler's random draws come from: one generator, or one per stacked request."""


def draw_noise(shape: tuple[int, ...] | torch.Size, noise: Noise, device: torch.device) -> torch.Tensor:
    """N(0, I) of ``shape`` from ``noise``."""
    if isinstance(noise, StackedNoise):
        return noise.randn(shape, device)
    return torch.randn(shape, generator=noise, device=device)


def timestep_sequence(timesteps: int, steps: int) -> list[int]:
    """``steps`` levels from T-1 down to 0, evenly spaced and always starting at pure noise."""
    if not 1 <= steps <= timesteps:
        raise ConfigError(f"steps must be between 1 and {timesteps} (the schedule's T), got {steps}")
    levels = np.unique(np.round(np.linspace(0, timesteps - 1, steps)).astype(np.int64))
    return [int(t) for t in levels[::-1]]


def _level_pairs(schedule: NoiseSchedule, steps: int) -> list[tuple[int, int, float, float]]:
    """(t, t_prev, alpha_bar_t, alpha_bar_prev) in float64, computed once before the loop."""
    alpha_bar = schedule.alpha_bar_f64
    sequence = timestep_sequence(schedule.timesteps, steps)
    pairs = []
    for i, t in enumerate(sequence):
        t_prev = sequence[i + 1] if i + 1 < len(sequence) else -1
        pairs.append((t, t_prev, float(alpha_bar[t]), float(alpha_bar[t_prev]) if t_prev >= 0 else 1.0))
    return pairs


def _predict(
    model: nn.Module, schedule: NoiseSchedule, x: torch.Tensor, level: int, precision: str, clip: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_0, eps) from one network evaluation at ``level`` for the whole batch; x_0 clipped to [-1, 1] (and eps made consistent)."""
    t = torch.full((x.shape[0],), level, device=x.device, dtype=torch.long)
    with autocast(x.device, precision):
        output = model(schedule.network_input(x, t), t).float()
    x0, eps = schedule.split_prediction(output, x, t)
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
        a = schedule.sqrt_alpha_bar.gather(0, t).view(-1, 1, 1, 1)
        s = schedule.sqrt_one_minus_alpha_bar.gather(0, t).view(-1, 1, 1, 1)
        eps = (x - a * x0) / s
    return x0, eps


@torch.inference_mode()
def ddpm(
    model: nn.Module,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    generator: Noise,
    steps: int,
    eta: float = 1.0,
    variance: str = "beta_tilde",
    clip: bool = True,
    precision: str = "auto",
) -> Iterator[SamplerStep]:
    """Ancestral sampling, Ho et al. 2020 Algorithm 2: x_{t-1} ~ N(mu_tilde(x_t, x0_hat), sigma_t^2 I).

    sigma_t^2 is beta_tilde_t or beta_t (both in the paper). With ``steps`` < T the chain is
    respaced (Nichol and Dhariwal 2021, sec. 4): beta_t = 1 - alpha_bar_t / alpha_bar_prev.
    ``eta`` is accepted for a uniform sampler signature; ancestral sampling has eta = 1.
    """
    if variance not in DDPM_VARIANCES:
        raise ConfigError(f"variance {variance!r} is not one of {list(DDPM_VARIANCES)}")
    x = x_T
    for index, (t, t_prev, ab, ab_prev) in enumerate(_level_pairs(schedule, steps)):
        beta = 1.0 - ab / ab_prev
        coef_x0 = np.sqrt(ab_prev) * beta / (1.0 - ab)
        coef_xt = np.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab)
        sigma2 = beta * (1.0 - ab_prev) / (1.0 - ab) if variance == "beta_tilde" else beta
        x0, _eps = _predict(model, schedule, x, t, precision, clip)
        x = coef_x0 * x0 + coef_xt * x
        if t_prev >= 0:
            x = x + float(np.sqrt(sigma2)) * draw_noise(x.shape, generator, x.device)
        yield SamplerStep(index, t, t_prev, x, x0)


@torch.inference_mode()
def ddim(
    model: nn.Module,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    generator: Noise,
    steps: int,
    eta: float = 0.0,
    variance: str = "beta_tilde",
    clip: bool = True,
    precision: str = "auto",
) -> Iterator[SamplerStep]:
    """DDIM, Song et al. 2021 eq. 12: x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - s^2) eps_hat + s z.

    s = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev) (eq. 16); eta = 0 is the
    deterministic sampler, eta = 1 matches DDPM's beta_tilde variance. ``variance`` is unused.
    """
    x = x_T
    for index, (t, t_prev, ab, ab_prev) in enumerate(_level_pairs(schedule, steps)):
        sigma = eta * np.sqrt((1.0 - ab_prev) / (1.0 - ab)) * np.sqrt(1.0 - ab / ab_prev)
        direction = float(np.sqrt(max(0.0, 1.0 - ab_prev - sigma**2)))
        x0, eps = _predict(model, schedule, x, t, precision, clip)
        x = float(np.sqrt(ab_prev)) * x0 + direction * eps
        if sigma > 0 and t_prev >= 0:
            x = x + float(sigma) * draw_noise(x.shape, generator, x.device)
        yield SamplerStep(index, t, t_prev, x, x0)


def _dpm_solver_coefficients(
    schedule: NoiseSchedule, steps: int, eta: float = 0.0
) -> list[tuple[int, int, float, float, float, float]]:
    """(t, t_prev, decay, gain, spread, r = h_last / h) per step, in float64, before the loop.

    alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar) and lambda = log(alpha / sigma); h is
    the step in lambda. A step is x_prev = decay x_t + gain D + spread z with
    decay = (sigma_prev / sigma_t) e^{-eta h}, gain = alpha_prev (1 - e^{-(1 + eta) h}) and
    spread = sigma_prev sqrt(1 - e^{-2 eta h}): eta = 0 is the ODE's step (no noise), eta = 1 the
    reverse SDE's. r = 0 marks a first-order step: the first one (no history), the one
    landing on level 0 (the largest step in lambda, where extrapolating from the previous
    prediction overshoots; diffusers' ``lower_order_final``) and the last one, to the clean image.
    """
    coefficients, h_last = [], None
    for t, t_prev, ab, ab_prev in _level_pairs(schedule, steps):
        alpha_prev, sigma, sigma_prev = np.sqrt(ab_prev), np.sqrt(1.0 - ab), np.sqrt(1.0 - ab_prev)
        if t_prev < 0:
            coefficients.append((t, t_prev, 0.0, float(alpha_prev), 0.0, 0.0))
            continue
        h = np.log(alpha_prev / sigma_prev) - np.log(np.sqrt(ab) / sigma)
        r = 0.0 if h_last is None or t_prev == 0 else h_last / h
        coefficients.append((t, t_prev, float(sigma_prev / sigma * np.exp(-eta * h)),
                             float(alpha_prev * -np.expm1(-(1.0 + eta) * h)),
                             float(sigma_prev * np.sqrt(-np.expm1(-2.0 * eta * h))), float(r)))
        h_last = h
    return coefficients


def _dpm_solver_steps(
    model: nn.Module, schedule: NoiseSchedule, x_T: torch.Tensor, generator: Noise, steps: int, eta: float,
    clip: bool, precision: str,
) -> Iterator[SamplerStep]:
    """The DPM-Solver++(2M) loop for the step family of ``_dpm_solver_coefficients`` (midpoint second-order term)."""
    x, x0_last = x_T, None
    for index, (t, t_prev, decay, gain, spread, r) in enumerate(_dpm_solver_coefficients(schedule, steps, eta)):
        x0, _eps = _predict(model, schedule, x, t, precision, clip)
        if t_prev < 0:
            x = x0
        else:
            direction = x0 if x0_last is None or r == 0 else (1 + 0.5 / r) * x0 - (0.5 / r) * x0_last
            x = decay * x + gain * direction
            if spread > 0:
                x = x + spread * draw_noise(x.shape, generator, x.device)
        x0_last = x0
        yield SamplerStep(index, t, t_prev, x, x0)


@torch.inference_mode()
def dpm_solver_2m(
    model: nn.Module,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    generator: Noise,
    steps: int,
    eta: float = 1.0,
    variance: str = "beta_tilde",
    clip: bool = True,
    precision: str = "auto",
) -> Iterator[SamplerStep]:
    """DPM-Solver++(2M), Lu et al. 2022 ("DPM-Solver++", Algorithm 2), and its SDE form: the second-order
    multistep solver of the diffusion ODE (``eta`` 0) or of the reverse SDE (``eta`` 1) in its data-prediction form,
    midpoint variant.

    The ODE's step is x_prev = (sigma_prev / sigma_t) x_t + alpha_prev (1 - e^{-h}) D, with D = x0_hat on a
    first-order step (the first, and the one landing on level 0) and D = (1 + 1 / 2r) x0_hat_t - (1 / 2r)
    x0_hat_last otherwise (r = h_last / h), the linear extrapolation of x0_hat through the last two
    predictions taken at the step's midpoint in lambda. The SDE's is x_prev = (sigma_prev / sigma_t) e^{-h} x_t
    + alpha_prev (1 - e^{-2h}) D + sigma_prev sqrt(1 - e^{-2h}) z. ``eta`` scales the noise (the reverse SDE
    whose diffusion is sqrt(eta) g): h becomes eta h in the decay and noise terms and (1 + eta) h in the gain.
    The step to the clean image returns x0_hat and adds no noise. ``dpmpp2m`` is this function at eta 0
    (``SAMPLERS``), ``dpmpp2m_sde`` at eta 1 unless a setting names another. ``variance`` is unused.
    """
    yield from _dpm_solver_steps(model, schedule, x_T, generator, steps, eta, clip, precision)


Sampler = Callable[..., Iterator[SamplerStep]]


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler: its step function, the steps a setting that names none takes (None: all T), the eta it takes
    when none is named, and whether it may add noise at all (an ODE solver may not: its eta must be 0)."""

    function: Sampler
    default_steps: int | None
    default_eta: float
    stochastic: bool = True


SAMPLERS: dict[SamplerName, SamplerSpec] = registry(SamplerName, {
    "ddpm": SamplerSpec(ddpm, None, 1.0),  # ancestral: eta 1 whatever is asked (it ignores eta)
    "ddim": SamplerSpec(ddim, 50, 0.0),  # Song et al. 2021: eta 0 is the deterministic sampler
    "dpmpp2m": SamplerSpec(dpm_solver_2m, 20, 0.0, stochastic=False),  # Lu et al. 2022: the ODE solver
    "dpmpp2m_sde": SamplerSpec(dpm_solver_2m, 30, 1.0),  # its SDE form: eta 1 is the full reverse SDE
})
"""Every sampler, by the name settings use: adding one is one entry here (and its name in ``SamplerName``)."""


@dataclass(frozen=True)
class SamplerSetting:
    """One way of sampling a model, read from a preset, a flag or an HTTP body and checked once, here.

    ``steps`` None is the sampler's default, ``eta`` None its own noise (``SAMPLERS``); ``resolve``
    fills the steps in for a schedule and checks them against its T: the samplers take only a
    resolved setting. ``num_images`` None is the caller's own count (an evaluate section's
    ``num_images``), else at least 2 (an FD needs two); it is not part of how a model is sampled.
    """

    sampler: SamplerName = "ddim"
    steps: int | None = None
    eta: float | None = None
    num_images: int | None = None

    def __post_init__(self) -> None:
        spec = lookup(SAMPLERS, self.sampler, "sampler")
        if self.eta is None:
            object.__setattr__(self, "eta", spec.default_eta)
        at_least(self, 1, "steps")
        between(self, "eta", 0, 1)
        if not spec.stochastic and self.eta != 0:
            raise ConfigError(f"eta: {self.sampler} is a deterministic solver: eta must be 0, got {self.eta}", "eta")
        at_least(self, 2, "num_images")

    @property
    def resolved(self) -> bool:
        """Whether the steps are filled in (``resolve``)."""
        return self.steps is not None

    def resolve(self, timesteps: int) -> SamplerSetting:
        """This setting for a schedule of ``timesteps`` levels: steps the sampler's default where None (all T for
        DDPM, at most T for the others); ConfigError unless 1 <= steps <= T."""
        default = SAMPLERS[self.sampler].default_steps
        steps = self.steps if self.steps is not None else min(default or timesteps, timesteps)
        if steps > timesteps:
            raise ConfigError(f"steps must be between 1 and {timesteps} (the schedule's T), got {steps}", "steps")
        return dataclasses.replace(self, steps=steps)

    @property
    def label(self) -> str:
        """``sampler-steps`` as cards and logs name a setting (``ddpm-T``: all levels, not yet resolved)."""
        return f"{self.sampler}-{self.steps if self.steps is not None else 'T'}"

    @property
    def how(self) -> SamplerSetting:
        """The setting without its image count: what a batch of requests must share to be sampled together."""
        return dataclasses.replace(self, num_images=None)


def _chain(model: nn.Module, schedule: NoiseSchedule, x_T: torch.Tensor, noise: Noise, setting: SamplerSetting,
           clip: bool, precision: str) -> Iterator[SamplerStep]:
    """The steps of a resolved ``setting`` from ``x_T``; ConfigError if it was not resolved for a schedule."""
    if setting.steps is None:
        raise ConfigError(f"sampler setting {setting.label} has no step count: resolve it against the schedule first")
    return SAMPLERS[setting.sampler].function(model, schedule, x_T, noise, steps=setting.steps, eta=setting.eta,
                                              clip=clip, precision=precision)


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``: same seed, same images."""
    return torch.Generator(device=device).manual_seed(seed)


def sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    num_images: int,
    setting: SamplerSetting,
    seed: int = 0,
    batch_size: int = 500,
    precision: str = "auto",
    clip: bool = True,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``num_images`` samples of a resolved ``setting`` in [-1, 1], (N, C, H, W) on the model's device, in batches."""
    if num_images < 1:
        raise ConfigError(f"num_images must be at least 1, got {num_images}")
    device = next(model.parameters()).device
    shape = _image_shape(model)
    generator = make_generator(seed, device)
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for start in range(0, num_images, batch_size):
            n = min(batch_size, num_images - start)
            x_T = draw_noise((n, *shape), generator, device)
            last = None
            for last in _chain(model, schedule, x_T, generator, setting, clip, precision):
                if progress is not None:
                    progress(n)
            assert last is not None
            chunks.append(last.x.clamp(-1.0, 1.0))
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def sample_stacked(
    model: nn.Module,
    schedule: NoiseSchedule,
    requests: list[tuple[int, int]],
    setting: SamplerSetting,
    precision: str = "auto",
) -> list[torch.Tensor]:
    """Several (num_images, seed) requests in one sampling loop of a resolved ``setting``: one forward pass per step.

    Request i gets what ``sample(model, schedule, n_i, setting, seed_i)`` returns (for n_i up to
    that function's batch size), because its rows draw from its own generator.
    """
    if not requests:
        return []
    device = next(model.parameters()).device
    counts = [n for n, _seed in requests]
    noise = StackedNoise([make_generator(seed, device) for _n, seed in requests], counts)
    x_T = noise.randn((sum(counts), *_image_shape(model)), device)
    was_training = model.training
    model.eval()
    try:
        last = None
        for last in _chain(model, schedule, x_T, noise, setting, True, precision):
            pass
    finally:
        model.train(was_training)
    assert last is not None
    return list(last.x.clamp(-1.0, 1.0).split(counts))


@dataclass(frozen=True)
class DenoisingPaths:
    """Snapshots of ``num_paths`` chains: the input x_t of a step and the x_0 predicted there."""

    x_t: torch.Tensor  # (P, S, C, H, W)
    x0: torch.Tensor  # (P, S, C, H, W)
    levels: list[int]  # the S levels t of the snapshots, from T-1 down
    final: torch.Tensor  # (P, C, H, W), the finished samples

    def to_bytes(self) -> bytes:
        """The paths as safetensors (no pickle), for the lab store and the dashboard's slider."""
        tensors = {"x_t": self.x_t, "x0": self.x0, "final": self.final, "levels": torch.tensor(self.levels, dtype=torch.int64)}
        return safetensors.torch.save({k: v.detach().to("cpu", torch.float32 if k != "levels" else torch.int64).contiguous()
                                       for k, v in tensors.items()})

    @classmethod
    def from_bytes(cls, data: bytes) -> DenoisingPaths:
        """Read what ``to_bytes`` wrote; ConfigError if a tensor is missing."""
        tensors = safetensors.torch.load(data)
        missing = sorted({"x_t", "x0", "final", "levels"} - set(tensors))
        if missing:
            raise ConfigError(f"denoising paths file lacks {missing}")
        return cls(tensors["x_t"], tensors["x0"], [int(t) for t in tensors["levels"].tolist()], tensors["final"])


def denoising_paths(
    model: nn.Module,
    schedule: NoiseSchedule,
    setting: SamplerSetting,
    num_paths: int = 5,
    snapshots: int = 10,
    seed: int = 0,
    precision: str = "auto",
) -> DenoisingPaths:
    """Run ``num_paths`` chains of a resolved ``setting`` and keep ``snapshots`` evenly spaced steps of each."""
    if num_paths < 1 or snapshots < 1:
        raise ConfigError(f"num_paths and snapshots must be positive, got {num_paths} and {snapshots}")
    device = next(model.parameters()).device
    generator = make_generator(seed, device)
    x = draw_noise((num_paths, *_image_shape(model)), generator, device)
    chain = _chain(model, schedule, x, generator, setting, True, precision)
    total = len(timestep_sequence(schedule.timesteps, setting.steps or schedule.timesteps))
    keep = set(np.round(np.linspace(0, total - 1, min(snapshots, total))).astype(int).tolist())
    inputs, predictions, levels = [], [], []
    was_training = model.training
    model.eval()
    try:
        for step in chain:
            if step.index in keep:
                inputs.append(x.clamp(-1, 1))
                predictions.append(step.x0)
                levels.append(step.t)
            x = step.x
    finally:
        model.train(was_training)
    return DenoisingPaths(torch.stack(inputs, 1), torch.stack(predictions, 1), levels, x.clamp(-1, 1))


def _image_shape(model: nn.Module) -> tuple[int, int, int]:
    config = getattr(model, "config", None)
    if config is None:
        raise ConfigError("the model carries no config (build it with diffusion.core.models.build_denoiser)")
    return (config.image_channels, config.image_size, config.image_size)
