"""The one scoring path: a Scorer per embedding, score_model's rows, and the rule for what a card records."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffusion.core.models import build_denoiser
from diffusion.core.samplers import SamplerSetting
from diffusion.core.schedules import NoiseSchedule
from diffusion.embeddings import Embedder, pixel_embedder
from diffusion.lab.checkpoint import model_card, weights_to_bytes
from diffusion.lab.datasets import RealSets, load_embedded_mnist
from diffusion.lab.lineage import EmbeddingId
from diffusion.metrics.model_scores import ScoreRow, best_row, card_metrics, evaluations, plan_sampling, score_model
from diffusion.metrics.scoring import MANIFOLD_FIELDS, Scorer, real_floor
from tests.conftest import tiny_run


def score_row(**changes: object) -> ScoreRow:
    """A score row of model ``m`` (VAE, DDIM-20, N = 100, 2x its floor); ``changes`` override fields."""
    row = ScoreRow(model="m", arch="mlp", sampler="ddim", steps=20, eta=0.0, embedding="vae", n=100, fd=2.0,
                   mean_term=0.5, trace_term=1.5, floor_mean=1.0, floor_std=0.1, ratio=2.0, kid_mean=0.01,
                   kid_std=0.001, fd_std=0.1, ratio_low=1.7, ratio_high=2.3, precision=0.6, recall=0.5, density=0.7,
                   coverage=0.6, real_precision=0.8, real_recall=0.8, real_density=1.0, real_coverage=0.9, seconds_per_image=0.01, images_per_s=100.0, parameters=1000, weights_sha256="0" * 64,
                   train_seconds=60.0, images_seen=6400, device="cpu", embedding_sha256="e" * 64, embedding_trial="")
    return dataclasses.replace(row, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def real() -> RealSets:
    train, test = load_embedded_mnist("train"), load_embedded_mnist("test")
    return RealSets(train.images[:400], test.images[:100])


def projection_embedder(name: str) -> Embedder:
    """A fixed random projection of the pixels to 16 features: a second embedding that needs no training (named as
    if its weights came from a trial)."""
    weights = torch.randn(28 * 28, 16, generator=torch.Generator().manual_seed(3))
    return Embedder(name, 16, lambda x: x.flatten(1) @ weights, torch.device("cpu"), EmbeddingId(name, "ab" * 32, "t_1"))


def test_score_model_gives_one_row_per_setting_and_embedding_with_the_floor_at_the_same_n(real: RealSets) -> None:
    run = tiny_run("unet")
    model = build_denoiser(run.model)
    card = model_card("denoiser", model, run, weights_to_bytes(model), {"train_seconds": 3, "images_seen": 320})
    schedule = NoiseSchedule.from_config(run.diffusion)
    plans = [plan_sampling(SamplerSetting("ddim", 3), schedule.timesteps, 40, len(real.test)),
             plan_sampling(SamplerSetting("ddpm", num_images=500), schedule.timesteps, 40, 24)]
    assert (plans[0].num_images, plans[1].steps, plans[1].num_images) == (40, 50, 24)  # ddpm: all T steps; N at most the test size
    scorers = [Scorer(embedder, real.test, real.pool, floor_draws=2) for embedder in (pixel_embedder(), projection_embedder("proj"))]
    done: list[int] = []
    rows = score_model("tiny", model, card, schedule, plans, scorers, seed=1, progress=done.append)

    assert sum(done) == sum(map(evaluations, plans)) == 40 * 3 + 24 * 50
    assert [(r.sampler, r.steps, r.n, r.embedding) for r in rows] == [
        ("ddim", 3, 40, "pixels"), ("ddim", 3, 40, "proj"), ("ddpm", 50, 24, "pixels"), ("ddpm", 50, 24, "proj")]
    assert [f.name for f in dataclasses.fields(ScoreRow)] == list(dataclasses.asdict(rows[0]))
    for row, scorer in zip(rows, scorers * 2):
        floor = real_floor(real.pool, scorer.embedder, row.n, draws=2)
        assert (row.floor_mean, row.floor_std) == (floor.mean, floor.std)  # the floor at the row's own N
        assert row.ratio == pytest.approx(row.fd / row.floor_mean) and row.fd == pytest.approx(row.mean_term + row.trace_term)
        assert row.kid_mean is not None and row.seconds_per_image > 0
        assert row.images_per_s == pytest.approx(1 / row.seconds_per_image)
        assert (row.model, row.arch, row.parameters, row.weights_sha256) == ("tiny", "unet", card.parameters, card.weights_sha256)
        assert (row.train_seconds, row.images_seen, row.device) == (3.0, 320, "cpu")
        assert (row.embedding_sha256, row.embedding_trial) == (scorer.embedder.identity.sha256, scorer.embedder.identity.trial_id)
    assert (rows[0].embedding_sha256, rows[1].embedding_sha256, rows[1].embedding_trial) == ("", "ab" * 32, "t_1")
    metrics = card_metrics(rows)
    parts = ("", "_floor", "_ratio", "_embedding", "_embedding_trial")
    manifold = {f"{figure}_{e}" for figure in MANIFOLD_FIELDS for e in ("pixels", "proj")}
    assert set(metrics) == {f"fd{part}_{e}" for part in parts for e in ("pixels", "proj")} | manifold
    assert all(0 <= metrics[key] for key in manifold) and metrics["precision_pixels"] == rows[0].precision
    assert (metrics["fd_embedding_proj"], metrics["fd_embedding_trial_proj"], metrics["fd_embedding_pixels"]) == ("ab" * 32, "t_1", "")
    assert metrics["fd_pixels"] == rows[0].fd  # the larger N wins, whatever the ratio at N = 24


def test_the_scorer_caches_the_real_side_and_its_floor_equals_a_fresh_one(real: RealSets) -> None:
    embedder = pixel_embedder()
    scorer = Scorer(embedder, real.test, real.pool, floor_draws=3, seed=4)
    assert scorer.floor(30) is scorer.floor(30) and scorer.test_stats(30) is scorer.test_stats(30)
    assert scorer.floor(30) == real_floor(real.pool, embedder, 30, draws=3, seed=4)
    images = real.train[:30]
    with_kid, without = scorer.score(images), scorer.score(images, kid=False)
    assert without.kid_mean is None and without.kid_std is None and with_kid.kid_mean is not None
    assert (without.fd, without.floor_mean, without.ratio) == (with_kid.fd, with_kid.floor_mean, with_kid.ratio)
    assert scorer.score(real.train[:500]).n == len(real.test)  # at most the real test set's size

    primed = Scorer(embedder, real.test, seed=4, floors={30: scorer.floor(30)})  # a floor computed elsewhere, no pool kept
    lean = primed.score(images, kid=False, manifold=False)
    assert lean.precision is None and lean.real_coverage is None
    assert dataclasses.replace(without, **{f: None for f in MANIFOLD_FIELDS + tuple(f"real_{f}" for f in MANIFOLD_FIELDS)}) == lean
    with pytest.raises(ValueError, match="no floor at N = 20"):
        primed.score(images[:20])


def test_card_metrics_take_the_leaderboards_row_in_every_embedding() -> None:
    rows = [
        score_row(sampler="ddpm", steps=50, n=50, fd=1.5, ratio=1.5),  # best ratio, but at a smaller N
        score_row(steps=20, fd=3.0, ratio=3.0),
        score_row(steps=50, fd=2.4, floor_mean=1.2, ratio=2.0),  # the VAE row: largest N, then best ratio
        score_row(steps=20, embedding="pixels", fd=40.0, floor_mean=10.0, ratio=4.0, embedding_sha256=""),  # the pixels row
        score_row(steps=50, embedding="pixels", fd=60.0, floor_mean=10.0, ratio=6.0, embedding_sha256=""),
    ]
    assert best_row(rows) is rows[2] and best_row(rows, "pixels") is rows[3]
    assert card_metrics(rows) == {"fd_vae": 2.4, "fd_floor_vae": 1.2, "fd_ratio_vae": 2.0, "fd_n": 100,
                                  "fd_sampler": "ddim-50", "fd_pixels": 40.0, "fd_floor_pixels": 10.0,
                                  "fd_ratio_pixels": 4.0, "fd_embedding_vae": "e" * 64, "fd_embedding_trial_vae": "",
                                  "fd_embedding_pixels": "", "fd_embedding_trial_pixels": "",
                                  **{f"{figure}_{e}": getattr(rows[0], figure) for figure in MANIFOLD_FIELDS
                                     for e in ("vae", "pixels")}}
    with pytest.raises(ValueError, match="one model's weights"):
        card_metrics([*rows, score_row(model="other")])
    with pytest.raises(ValueError, match="no score row in embedding 'classifier'"):
        best_row(rows, "classifier")
