"""The ratio's interval: a bootstrap of the FD centred on the measured FD, divided by each floor draw; two copies of one
model come out tied, a worse model does not; generated images are scored as 8-bit images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from diffusion.core.images import quantize_8bit, to_model_range
from diffusion.core.models import build_denoiser
from diffusion.core.samplers import SamplerSetting
from diffusion.core.schedules import NoiseSchedule
from diffusion.embeddings import pixel_embedder
from diffusion.lab.checkpoint import model_card, weights_to_bytes
from diffusion.lab.datasets import RealSets, load_embedded_mnist
from diffusion.lab.leaderboard import leaderboard, lineage_of
from diffusion.metrics.floor import Floor
from diffusion.metrics.frechet import GaussianStats
from diffusion.metrics.model_scores import plan_sampling, score_model
from diffusion.metrics.scoring import Scorer
from diffusion.metrics.uncertainty import bootstrap_fds, ratio_interval
from tests.conftest import tiny_run


@pytest.fixture(scope="module")
def real() -> RealSets:
    train, test = load_embedded_mnist("train"), load_embedded_mnist("test")
    return RealSets(train.images[:600], test.images[:150])


def test_the_interval_centres_the_bootstrap_on_the_fd_and_spans_the_floor_draws() -> None:
    floor = Floor(10, 2.0, 0.5, (1.5, 2.0, 2.5))
    interval = ratio_interval(4.0, np.array([5.0, 5.0, 5.0, 5.0]), floor)  # no spread in the FD: only the floor's
    assert interval.fd_std == 0.0
    assert interval.low == pytest.approx(4.0 / 2.5, rel=0.05) and interval.high == pytest.approx(4.0 / 1.5, rel=0.05)
    wide = ratio_interval(4.0, np.array([4.0, 6.0, 8.0, 10.0]), floor)  # shifted by -3: 1..7 around 4
    assert wide.low < interval.low and wide.high > interval.high and wide.fd_std == pytest.approx(np.std([4, 6, 8, 10], ddof=1))
    with pytest.raises(ValueError, match="level"):
        ratio_interval(4.0, np.ones(3), floor, level=1.0)


def test_the_bootstrap_is_seeded_and_spreads_less_with_more_samples() -> None:
    rng = np.random.default_rng(0)
    reference = GaussianStats.of(rng.normal(size=(2000, 4)))
    small, large = rng.normal(size=(50, 4)), rng.normal(size=(800, 4))
    assert np.array_equal(bootstrap_fds(small, reference, 20, seed=3), bootstrap_fds(small, reference, 20, seed=3))
    assert bootstrap_fds(large, reference, 30).std() < bootstrap_fds(small, reference, 30).std()
    with pytest.raises(ValueError, match="at least 2 draws"):
        bootstrap_fds(small, reference, 1)


def test_quantizing_keeps_real_digits_exactly_and_rounds_generated_ones_to_their_256_levels(real: RealSets) -> None:
    assert torch.equal(quantize_8bit(real.test), real.test)  # the real digits are 8-bit already
    generated = torch.linspace(-1.3, 1.3, 28 * 28).reshape(1, 1, 28, 28)
    levels = (quantize_8bit(generated) + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.min() == 0 and levels.max() == 255
    assert (quantize_8bit(generated) - generated.clamp(-1, 1)).abs().max() <= 1 / 255 + 1e-6
    every_level = to_model_range(np.resize(np.arange(256), 28 * 28))
    assert torch.equal(quantize_8bit(every_level), every_level)


def test_two_copies_of_one_model_come_out_tied_and_a_worse_model_does_not(real: RealSets) -> None:
    run = tiny_run("unet", steps=5)
    model = build_denoiser(run.model)
    card = model_card("denoiser", model, run, weights_to_bytes(model), {"train_seconds": 1, "images_seen": 80})
    schedule = NoiseSchedule.from_config(run.diffusion)
    plan = plan_sampling(SamplerSetting("ddim", 4), schedule.timesteps, 150, len(real.test))
    scorer = Scorer(pixel_embedder(), real.test, real.pool, floor_draws=3)
    rows = [*score_model("copy_a", model, card, schedule, [plan], [scorer], seed=0),
            *score_model("copy_b", model, card, schedule, [plan], [scorer], seed=1)]  # other samples, same weights
    assert rows[0].fd != rows[1].fd and all(r.ratio_low < r.ratio < r.ratio_high for r in rows)
    frame = pd.DataFrame(rows)
    good = scorer.score(real.train[:150])  # real digits: a far better "model"
    frame = pd.concat([frame, frame.iloc[[0]].assign(model="real", fd=good.fd, ratio=good.ratio,
                                                     ratio_low=good.ratio_low, ratio_high=good.ratio_high)], ignore_index=True)
    board = leaderboard(frame, lineage_of(frame), embedding="pixels")
    assert board.model.tolist()[0] == "real" and board["rank"].tolist() == [1, 2, 2]
