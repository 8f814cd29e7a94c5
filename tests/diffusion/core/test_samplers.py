import pytest
import torch
from torch import nn

from diffusion.core.config import ConfigError, DiffusionConfig
from diffusion.core.models import build_denoiser, denoiser_config
from diffusion.core.samplers import SAMPLERS, denoising_paths, make_generator, sample, timestep_sequence
from diffusion.core.schedules import NoiseSchedule


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
    a = sample(model, schedule, 6, sampler=sampler, steps=10, eta=eta, seed=3, precision="fp32")
    b = sample(model, schedule, 6, sampler=sampler, steps=10, eta=eta, seed=3, precision="fp32")
    c = sample(model, schedule, 6, sampler=sampler, steps=10, eta=eta, seed=4, precision="fp32")
    assert a.shape == (6, 1, 28, 28)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_batching_does_not_change_the_first_batch(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny
    whole = sample(model, schedule, 4, steps=5, seed=1, batch_size=4, precision="fp32")
    split = sample(model, schedule, 8, steps=5, seed=1, batch_size=4, precision="fp32")
    torch.testing.assert_close(whole, split[:4])


def test_ddim_with_eta_one_over_all_steps_is_ddpm(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    """Song et al. 2021, eq. 16: eta = 1 gives DDPM's ancestral step with variance beta_tilde."""
    model, schedule = tiny
    ddpm = sample(model, schedule, 4, sampler="ddpm", seed=7, precision="fp32", clip=False)
    ddim = sample(model, schedule, 4, sampler="ddim", steps=schedule.timesteps, eta=1.0, seed=7, precision="fp32", clip=False)
    torch.testing.assert_close(ddpm, ddim, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sampler,steps", [("ddpm", 100), ("ddpm", 20), ("ddim", 10), ("ddim", 3), ("dpmpp2m", 10), ("dpmpp2m", 2)])
def test_with_a_perfect_denoiser_every_sampler_lands_on_the_data(sampler: str, steps: int) -> None:
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=100))
    target = torch.linspace(-0.9, 0.9, 28 * 28).view(1, 1, 28, 28)
    oracle = OracleDenoiser(schedule, target)
    out = sample(oracle, schedule, 3, sampler=sampler, steps=steps, eta=1.0 if sampler == "ddpm" else 0.0, precision="fp32")
    torch.testing.assert_close(out, target.expand(3, -1, -1, -1), atol=1e-3, rtol=0)


class GaussianDenoiser(nn.Module):
    """The exact eps predictor for data x_0 ~ N(mean, std^2 I): x0_hat = E[x_0 | x_t] in closed form."""

    def __init__(self, schedule: NoiseSchedule, mean: float, std: float) -> None:
        super().__init__()
        self.schedule, self.mean, self.var = schedule, mean, std**2
        self.config = denoiser_config("cnn", width=1, depth=1)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.schedule.sqrt_alpha_bar.double()[t].view(-1, 1, 1, 1)
        s = self.schedule.sqrt_one_minus_alpha_bar.double()[t].view(-1, 1, 1, 1)
        x = x.double()
        x0 = self.mean + a * self.var / (a**2 * self.var + s**2) * (x - a * self.mean)
        return ((x - a * x0) / s).float()


def test_dpm_solver_converges_faster_than_ddim() -> None:
    """On Gaussian data the exact denoiser is known; DDIM over all 1,000 levels is the ODE's solution."""
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=1000, schedule="cosine"))
    oracle = GaussianDenoiser(schedule, mean=0.1, std=0.3)
    run = {"num_images": 8, "seed": 0, "precision": "fp32", "clip": False}
    exact = sample(oracle, schedule, sampler="ddim", steps=1000, **run)
    error = {(name, steps): (sample(oracle, schedule, sampler=name, steps=steps, **run) - exact).abs().max().item()
             for name in ("ddim", "dpmpp2m") for steps in (10, 20, 50)}
    assert error["dpmpp2m", 20] < error["ddim", 20] / 2 and error["dpmpp2m", 50] < error["ddim", 50] / 4, error
    assert error["dpmpp2m", 20] < error["dpmpp2m", 10] / 2.5, error  # second order: half the step, a quarter of the error
    with pytest.raises(ConfigError, match="eta must be 0"):
        sample(oracle, schedule, 2, sampler="dpmpp2m", eta=0.5)


def test_timestep_sequence_starts_at_pure_noise_and_descends() -> None:
    assert timestep_sequence(1000, 4) == [999, 666, 333, 0]
    assert timestep_sequence(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ConfigError, match=r"steps must be between 1 and 10"):
        timestep_sequence(10, 11)


def test_sampling_does_not_touch_the_global_rng_or_the_training_mode(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny
    model.train()
    state = torch.get_rng_state()
    sample(model, schedule, 2, steps=3, seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert model.training


def test_denoising_paths_keep_evenly_spaced_snapshots(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny
    paths = denoising_paths(model, schedule, num_paths=5, snapshots=4, sampler="ddpm", seed=0, precision="fp32")
    assert paths.x_t.shape == (5, 4, 1, 28, 28) and paths.x0.shape == (5, 4, 1, 28, 28)
    assert paths.levels[0] == schedule.timesteps - 1 and paths.levels == sorted(paths.levels, reverse=True)
    assert paths.final.shape == (5, 1, 28, 28)
    again = denoising_paths(model, schedule, num_paths=5, snapshots=4, sampler="ddpm", seed=0, precision="fp32")
    assert torch.equal(paths.final, again.final)


def test_unknown_sampler_names_the_accepted_ones(tiny: tuple[nn.Module, NoiseSchedule]) -> None:
    model, schedule = tiny
    with pytest.raises(ConfigError, match="unknown sampler 'euler'; accepted: ddpm, ddim, dpmpp2m"):
        sample(model, schedule, 1, sampler="euler")


def test_generator_lives_on_the_requested_device() -> None:
    assert make_generator(0, torch.device("cpu")).device.type == "cpu"
