import numpy as np
import pytest
import torch

from diffusion.core.config import PREDICTIONS, ConfigError, DiffusionConfig
from diffusion.core.losses import EDM_LOG_SIGMA_MEAN, EDM_LOG_SIGMA_STD, sample_levels
from diffusion.core.schedules import EDM_SIGMA_DATA, SCHEDULES, NoiseSchedule


@pytest.mark.parametrize("kind", list(SCHEDULES))
@pytest.mark.parametrize("timesteps", [10, 50, 1000, 4000])
def test_alpha_bar_decreases_strictly_from_near_one(kind: str, timesteps: int) -> None:
    schedule = NoiseSchedule.from_config(DiffusionConfig(schedule=kind, timesteps=timesteps))
    alpha_bar = schedule.alpha_bar_f64
    assert np.all(np.diff(alpha_bar) < 0)
    assert alpha_bar[0] > 0.9 and alpha_bar[-1] < 0.01
    assert torch.all((schedule.betas > 0) & (schedule.betas < 1))


def test_q_sample_matches_its_mean_and_variance() -> None:
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=1000))
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 0.7)
    for level in (0, 250, 999):
        t = torch.full((len(x0),), level)
        x_t = schedule.q_sample(x0, t, torch.randn(x0.shape, generator=generator))
        ab = schedule.alpha_bar_f64[level]
        assert x_t.mean().item() == pytest.approx(np.sqrt(ab) * 0.7, abs=0.01)
        assert x_t.var().item() == pytest.approx(1 - ab, rel=0.02, abs=1e-4)


def test_posterior_is_bayes_rule_of_the_two_gaussians() -> None:
    """q(x_{t-1}|x_t,x_0) ∝ N(x_t; sqrt(a_t) x_{t-1}, b_t) N(x_{t-1}; sqrt(ab_{t-1}) x_0, 1-ab_{t-1})."""
    schedule = NoiseSchedule.from_config(DiffusionConfig(schedule="cosine", timesteps=100))
    t = torch.tensor([1, 10, 50, 99])
    x0, x_t = torch.tensor([0.3, -0.5, 0.9, 0.1]), torch.tensor([0.2, 1.5, -0.4, 0.8])
    mean, variance = schedule.posterior(x0[:, None], x_t[:, None], t)
    a = schedule.alphas.double()[t]
    b = schedule.betas.double()[t]
    ab_prev = schedule.alpha_bar_prev.double()[t]
    precision = a / b + 1 / (1 - ab_prev)
    expected_mean = (torch.sqrt(a) * x_t / b + torch.sqrt(ab_prev) * x0 / (1 - ab_prev)) / precision
    torch.testing.assert_close(mean[:, 0].double(), expected_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(variance[:, 0].double(), 1 / precision, rtol=1e-5, atol=1e-9)


def test_posterior_variance_at_level_zero_is_zero() -> None:
    schedule = NoiseSchedule.from_config(DiffusionConfig())
    assert schedule.posterior_variance[0].item() == 0.0
    assert torch.isfinite(schedule.posterior_log_variance).all()


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_split_prediction_inverts_the_training_target(prediction: str) -> None:
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=200, prediction=prediction))
    generator = torch.Generator().manual_seed(1)
    x0 = torch.rand((8, 1, 4, 4), generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, 200, (8,), generator=generator)
    x_t = schedule.q_sample(x0, t, noise)
    x0_hat, eps_hat = schedule.split_prediction(schedule.training_target(x0, t, noise), x_t, t)
    torch.testing.assert_close(x0_hat, x0, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(eps_hat, noise, atol=2e-3, rtol=1e-3)


def test_bad_schedule_names_what_is_accepted() -> None:
    with pytest.raises(ConfigError, match=r"schedule 'sigmoid' is not one of \['cosine', 'linear'\]"):
        NoiseSchedule.from_config(DiffusionConfig(schedule="sigmoid"))
    with pytest.raises(ConfigError, match="prediction"):
        NoiseSchedule.from_config(DiffusionConfig(prediction="score"))
    with pytest.raises(ConfigError, match="timesteps must be at least 2"):
        NoiseSchedule.from_config(DiffusionConfig(timesteps=1))


def test_edm_feeds_the_network_unit_variance_at_every_level() -> None:
    """c_in x_sigma has variance 1 for data of standard deviation sigma_data (Karras et al. 2022, Table 1)."""
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=1000, schedule="cosine", prediction="edm"))
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn((4000, 1, 2, 2), generator=generator) * EDM_SIGMA_DATA
    for level in (0, 300, 700, 999):
        t = torch.full((4000,), level)
        fed = schedule.network_input(schedule.q_sample(x0, t, torch.randn(x0.shape, generator=generator)), t)
        assert fed.var().item() == pytest.approx(1.0, rel=0.05), level
    plain = NoiseSchedule.from_config(DiffusionConfig(timesteps=10, prediction="v"))
    x_t = torch.ones(2, 1, 2, 2)
    assert plain.network_input(x_t, torch.tensor([3, 7])) is x_t  # the other parameterisations feed x_t itself


def test_lognormal_levels_follow_edms_sigma_distribution() -> None:
    schedule = NoiseSchedule.from_config(DiffusionConfig(timesteps=1000, schedule="cosine"))
    t = sample_levels(schedule, 20000, torch.Generator().manual_seed(0), torch.device("cpu"), "lognormal")
    log_sigma = schedule.sigma[t].log()
    assert log_sigma.median().item() == pytest.approx(EDM_LOG_SIGMA_MEAN, abs=0.05)
    assert log_sigma.std().item() == pytest.approx(EDM_LOG_SIGMA_STD, abs=0.1)
    uniform = sample_levels(schedule, 20000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert uniform.min().item() == 0 and uniform.max().item() == 999
