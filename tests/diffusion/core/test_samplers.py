import pytest
import torch
from torch import nn

from diffusion.core.config import ConfigError, DiffusionConfig, from_dict
from diffusion.core.models import build_denoiser, denoiser_config
from diffusion.core.samplers import (
    SAMPLERS,
    SamplerSetting,
    denoising_paths,
    make_generator,
    sample,
    sample_stacked,
    timestep_sequence,
)
from diffusion.core.schedules import NoiseSchedule


def resolved(schedule: NoiseSchedule, sampler: str = "ddim", steps: int | None = None,
             eta: float | None = None) -> SamplerSetting:
    """A setting as the samplers take it: checked, then resolved against ``schedule``."""
    return SamplerSetting(sampler, steps, eta).resolve(schedule.timesteps)  # type: ignore[arg-type]


class OracleDenoiser(nn.Module):
    """The exact eps predictor when the data is one fixed image: eps = (x_t - sqrt(ab) x*) / sqrt(1 - ab)."""

    def __init__(self, schedule: NoiseSchedule, target: torch.Tensor) -> None:
        super().__init__()
        self.schedule, self.target = schedule, target
        self.config = denoiser_config("cnn", width=1, depth=1)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.schedule.sqrt_alpha_bar[t].view(-1, 1, 1, 1)
        s = self.schedule.sqrt_one_minus_alpha_bar[t].view(-1, 1, 1, 1)
        return (x - a * self.target) / s


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, NoiseSchedule]:
    torch.manual_seed(0)
    return build_denoiser(denoiser_config("unet", width=8, depth=1)), NoiseSchedule.from_config(DiffusionConfig(timesteps=40))


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_a_fixed_seed_repeats_and_another_seed_differs(sampler: str, tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny
    eta = 0.0 if sampler == "dpmpp2m" else 0.5  # the ODE solver is deterministic given x_T
    a = sample(model, schedule, 6, resolved(schedule, sampler=sampler, steps=10, eta=eta), seed=3, precision="fp32")
    b = sample(model, schedule, 6, resolved(schedule, sampler=sampler, steps=10, eta=eta), seed=3, precision="fp32")
    c = sample(model, schedule, 6, resolved(schedule, sampler=sampler, steps=10, eta=eta), seed=4, precision="fp32")
    assert a.shape == (6, 1, 28, 28)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_batching_does_not_change_the_first_batch(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny
    whole = sample(model, schedule, 4, resolved(schedule, steps=5), seed=1, batch_size=4, precision="fp32")
    split = sample(model, schedule, 8, resolved(schedule, steps=5), seed=1, batch_size=4, precision="fp32")
    torch.testing.assert_close(whole, split[:4])


def test_ddim_with_eta_one_over_all_steps_is_ddpm(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    """Song et al. 2021, eq. 16: eta = 1 gives DDPM's ancestral step with variance beta_tilde."""
    model, schedule = tiny
    ddpm = sample(model, schedule, 4, resolved(schedule, sampler="ddpm"), seed=7, precision="fp32", clip=False)
    ddim = sample(model, schedule, 4, resolved(schedule, sampler="ddim", steps=schedule.timesteps, eta=1.0), seed=7, precision="fp32", clip=False)
    torch.testing.assert_close(ddpm, ddim, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sampler,steps", [("ddpm", 100), ("ddpm", 20), ("ddim", 10), ("ddim", 3), ("dpmpp2m", 10), ("dpmpp2m", 2),
                                           ("dpmpp2m_sde", 10), ("dpmpp2m_sde", 2)])
def test_with_a_perfect_denoiser_every_sampler_lands_on_the_data(sampler: str, steps: int) -> None:
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=100))
    target = torch.linspace(-0.9, 0.9, 28 * 28).view(1, 1, 28, 28)
    oracle = OracleDenoiser(schedule, target)
    eta = 1.0 if sampler in ("ddpm", "dpmpp2m_sde") else 0.0
    out = sample(oracle, schedule, 3, resolved(schedule, sampler=sampler, steps=steps, eta=eta), precision="fp32")
    torch.testing.assert_close(out, target.expand(3, -1, -1, -1), atol=1e-3, rtol=0)


class GaussianDenoiser(nn.Module):
    """The exact predictor for data x_0 ~ N(mean, std^2 I): x0_hat = E[x_0 | x_t] in closed form, given
    as the schedule's prediction (eps, x0 or v); ``calls`` counts the network evaluations."""

    def __init__(self, schedule: NoiseSchedule, mean: float, std: float) -> None:
        super().__init__()
        self.schedule, self.mean, self.var, self.calls = schedule, mean, std**2, 0
        self.config = denoiser_config("cnn", width=1, depth=1)
        self.dummy = nn.Parameter(torch.zeros(()))

    def posterior_mean(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.schedule.sqrt_alpha_bar.double()[t].view(-1, 1, 1, 1)
        s = self.schedule.sqrt_one_minus_alpha_bar.double()[t].view(-1, 1, 1, 1)
        return self.mean + a * self.var / (a**2 * self.var + s**2) * (x - a * self.mean)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        a = self.schedule.sqrt_alpha_bar.double()[t].view(-1, 1, 1, 1)
        s = self.schedule.sqrt_one_minus_alpha_bar.double()[t].view(-1, 1, 1, 1)
        x = x.double()
        if self.schedule.prediction == "edm":  # the network is fed c_in x_sigma (NoiseSchedule.network_input)
            x = x / self.schedule.edm_input_scale.double()[t].view(-1, 1, 1, 1)
        x0 = self.posterior_mean(x, t)
        return self.schedule.training_target(x0, t, (x - a * x0) / s).float()


class MisledDenoiser(GaussianDenoiser):
    """GaussianDenoiser with x0_hat 0.3 too high on the noisier half of the levels, as a network errs there."""

    def posterior_mean(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return super().posterior_mean(x, t) + 0.3 * (t >= self.schedule.timesteps // 2).view(-1, 1, 1, 1)


def test_dpm_solver_converges_faster_than_ddim() -> None:
    """On Gaussian data the exact denoiser is known; DDIM over all 1,000 levels is the ODE's solution."""
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=1000, schedule="cosine"))
    oracle = GaussianDenoiser(schedule, mean=0.1, std=0.3)
    run = {"num_images": 8, "seed": 0, "precision": "fp32", "clip": False}
    exact = sample(oracle, schedule, setting=resolved(schedule, "ddim", 1000), **run)
    error = {(name, steps): (sample(oracle, schedule, setting=resolved(schedule, name, steps), **run) - exact).abs().max().item()
             for name in ("ddim", "dpmpp2m") for steps in (10, 20, 50)}
    assert error["dpmpp2m", 20] < error["ddim", 20] / 2 and error["dpmpp2m", 50] < error["ddim", 50] / 4, error
    assert error["dpmpp2m", 20] < error["dpmpp2m", 10] / 2.5, error  # second order: half the step, a quarter of the error
    with pytest.raises(ConfigError, match="eta must be 0"):
        sample(oracle, schedule, 2, resolved(schedule, sampler="dpmpp2m", eta=0.5))


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_each_step_is_one_network_evaluation_and_no_steps_is_the_default(sampler: str) -> None:
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=100))
    oracle = GaussianDenoiser(schedule, mean=0.1, std=0.2)
    eta = 0.0 if sampler == "dpmpp2m" else 1.0
    sample(oracle, schedule, 2, resolved(schedule, sampler=sampler, steps=17, eta=eta), precision="fp32")
    assert oracle.calls == 17
    oracle.calls = 0  # a setting without steps resolves to the sampler's own default
    paths = denoising_paths(oracle, schedule, resolved(schedule, sampler, eta=eta), num_paths=2, snapshots=4,
                            precision="fp32")
    assert oracle.calls == resolved(schedule, sampler).steps == (SAMPLERS[sampler].default_steps or schedule.timesteps)
    assert len(paths.levels) == 4 and paths.levels[0] == schedule.timesteps - 1


@pytest.mark.parametrize("sampler,eta", [("ddpm", 0.0), ("ddim", 0.5), ("dpmpp2m_sde", 1.0), ("dpmpp2m_sde", 0.3)])
def test_stacked_requests_get_the_images_each_gets_alone(sampler: str, eta: float) -> None:
    """Every draw of a stochastic sampler comes from the request's own generator (StackedNoise)."""
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=100, schedule="cosine"))
    oracle = GaussianDenoiser(schedule, mean=0.1, std=0.2)
    requests = [(2, 11), (1, 12), (2, 11)]
    stacked = sample_stacked(oracle, schedule, requests, resolved(schedule, sampler, 10, eta), precision="fp32")
    for (n, seed), images in zip(requests, stacked):
        alone = sample(oracle, schedule, n, resolved(schedule, sampler=sampler, steps=10, eta=eta), seed=seed, precision="fp32")
        torch.testing.assert_close(images, alone, rtol=0, atol=1e-6)
    torch.testing.assert_close(stacked[2], stacked[0], rtol=0, atol=1e-6)  # the same request, the same images
    assert not torch.allclose(stacked[1], stacked[0][:1], atol=0.1)


def test_the_sde_solver_at_eta_0_is_dpm_solver_2m(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny
    ode = sample(model, schedule, 3, resolved(schedule, sampler="dpmpp2m", steps=10), seed=2, precision="fp32")
    assert torch.equal(sample(model, schedule, 3, resolved(schedule, sampler="dpmpp2m_sde", steps=10, eta=0.0), seed=2, precision="fp32"), ode)
    assert not torch.allclose(sample(model, schedule, 3, resolved(schedule, "dpmpp2m_sde", 10, 1.0), seed=2,
                                     precision="fp32"), ode)


def test_a_setting_without_eta_takes_its_samplers_own_so_the_sde_solver_is_not_silently_an_ode(
        tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    assert {name: SamplerSetting(name).eta for name in ("ddpm", "ddim", "dpmpp2m", "dpmpp2m_sde")} == {
        "ddpm": 1.0, "ddim": 0.0, "dpmpp2m": 0.0, "dpmpp2m_sde": 1.0}
    assert from_dict(SamplerSetting, {"sampler": "dpmpp2m_sde", "steps": 20}).eta == 1.0  # a preset's entry
    assert SamplerSetting("dpmpp2m_sde", 20, 0.25).eta == 0.25  # a given eta is kept
    model, schedule = tiny
    sde = sample(model, schedule, 3, resolved(schedule, sampler="dpmpp2m_sde", steps=10), seed=2, precision="fp32")
    assert torch.equal(sde, sample(model, schedule, 3, resolved(schedule, sampler="dpmpp2m_sde", steps=10, eta=1.0), seed=2, precision="fp32"))
    ddim = sample(model, schedule, 3, resolved(schedule, sampler="ddim", steps=10), seed=2, precision="fp32")
    assert torch.equal(ddim, sample(model, schedule, 3, resolved(schedule, sampler="ddim", steps=10, eta=0.0), seed=2, precision="fp32"))


def _moment_errors(model: nn.Module, schedule: NoiseSchedule, sampler: str, steps: int, eta: float) -> tuple[float, float]:
    """|mean - 0.1| and |std - 0.2| of 100 images: 78,400 independent pixels, each measured to about 7e-4."""
    x = sample(model, schedule, 100, resolved(schedule, sampler=sampler, steps=steps, eta=eta), seed=0, precision="fp32", clip=False).double()
    return abs(x.mean().item() - 0.1), abs(x.std().item() - 0.2)


@pytest.mark.parametrize("schedule_name,prediction", [("linear", "eps"), ("linear", "v"), ("cosine", "x0")])
def test_the_sde_solver_lands_on_gaussian_data_at_least_as_well_as_ddim(schedule_name: str, prediction: str) -> None:
    """With the exact denoiser of N(0.1, 0.2^2) data: the data's mean, and its std closer than DDIM's at 30 and 50 steps.

    Measured std errors, SDE against DDIM: linear 0.060/0.058 (20 steps), 0.033/0.039 (30), 0.009/0.024 (50);
    cosine 0.018/0.031, 0.003/0.021, 0.003/0.013. Every prediction type gives the same numbers.
    """
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=1000, schedule=schedule_name, prediction=prediction))
    oracle = GaussianDenoiser(schedule, mean=0.1, std=0.2)
    sde = {steps: _moment_errors(oracle, schedule, "dpmpp2m_sde", steps, 1.0) for steps in (20, 30, 50)}
    ddim = {steps: _moment_errors(oracle, schedule, "ddim", steps, 0.0) for steps in (30, 50)}
    assert all(mean < 0.004 for mean, _std in sde.values()), sde
    assert sde[50][1] < 0.015 and sde[50][1] < sde[20][1] / 3, sde
    assert sde[30][1] < ddim[30][1] and sde[50][1] < ddim[50][1], (sde, ddim)


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
def test_the_sde_solver_forgets_an_error_of_the_noisy_levels_that_the_ode_solvers_keep(schedule_name: str) -> None:
    """Why noise closes the gap to DDPM: an x0 error at high noise moves DDIM's and DPM-Solver++'s mean (by 0.015 and
    0.012 on the linear schedule, 0.056 and 0.053 on the cosine one); the SDE's moves by 0.001 and 0.011, as DDPM-T's."""
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=1000, schedule=schedule_name))
    misled = MisledDenoiser(schedule, mean=0.1, std=0.2)
    ode = min(_moment_errors(misled, schedule, "ddim", 50, 0.0)[0], _moment_errors(misled, schedule, "dpmpp2m", 20, 0.0)[0])
    sde = _moment_errors(misled, schedule, "dpmpp2m_sde", 20, 1.0)[0]
    assert sde < ode / 4, (sde, ode)


def test_a_setting_resolves_its_steps_against_the_schedule_once_and_the_samplers_take_only_resolved_ones(
        tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny  # T = 40
    assert [SamplerSetting(name).resolve(40).steps for name in SAMPLERS] == [40, 40, 20, 30]  # at most T
    assert SamplerSetting("ddim", 7).resolve(40) == SamplerSetting("ddim", 7).resolve(40).resolve(40)
    with pytest.raises(ConfigError, match=r"steps must be between 1 and 40 \(the schedule's T\), got 41"):
        SamplerSetting("ddim", 41).resolve(40)
    with pytest.raises(ConfigError, match="resolve it against the schedule first"):
        sample(model, schedule, 1, SamplerSetting("ddpm"))


def test_timestep_sequence_starts_at_pure_noise_and_descends() -> None:
    assert timestep_sequence(1000, 4) == [999, 666, 333, 0]
    assert timestep_sequence(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ConfigError, match=r"steps must be between 1 and 10"):
        timestep_sequence(10, 11)


def test_sampling_does_not_touch_the_global_rng_or_the_training_mode(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny
    model.train()
    state = torch.get_rng_state()
    sample(model, schedule, 2, resolved(schedule, steps=3), seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert model.training


def test_denoising_paths_keep_evenly_spaced_snapshots(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny
    paths = denoising_paths(model, schedule, resolved(schedule, "ddpm"), num_paths=5, snapshots=4, seed=0, precision="fp32")
    assert paths.x_t.shape == (5, 4, 1, 28, 28) and paths.x0.shape == (5, 4, 1, 28, 28)
    assert paths.levels[0] == schedule.timesteps - 1 and paths.levels == sorted(paths.levels, reverse=True)
    assert paths.final.shape == (5, 1, 28, 28)
    again = denoising_paths(model, schedule, resolved(schedule, "ddpm"), num_paths=5, snapshots=4, seed=0, precision="fp32")
    assert torch.equal(paths.final, again.final)


def test_unknown_sampler_names_the_accepted_ones(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny
    with pytest.raises(ConfigError, match="unknown sampler 'euler'; accepted: ddpm, ddim, dpmpp2m, dpmpp2m_sde$"):
        sample(model, schedule, 1, resolved(schedule, sampler="euler"))


def test_generator_lives_on_the_requested_device() -> None:
    assert make_generator(0, torch.device("cpu")).device.type == "cpu"


def test_an_exact_denoiser_samples_the_same_under_edm_preconditioning_as_under_eps() -> None:
    """EDM's parameterisation changes what the network outputs and is fed, not the ODE: the same exact denoiser
    reaches the same samples (Karras et al. 2022, section 5)."""
    run = {"num_images": 8, "seed": 0, "precision": "fp32", "clip": False}
    found = {}
    for prediction in ("eps", "edm"):
        schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=1000, schedule="cosine", prediction=prediction))
        found[prediction] = sample(GaussianDenoiser(schedule, mean=0.1, std=0.3), schedule,
                                   setting=resolved(schedule, "dpmpp2m", 20), **run)
    torch.testing.assert_close(found["edm"], found["eps"], atol=1e-4, rtol=1e-4)
