"""Score a model: sample it once per sampler setting, score the samples in every embedding, one row each.

The one scoring path of the lab: the ``score`` command, the evaluation job, the sweep's trials
and the benchmarks all sample and score through ``sample_and_score``, so an FD and its floor mean
the same everywhere. FD as in Heusel et al. 2017, next to the real-vs-real floor at the same N;
KID as in Binkowski et al. 2018. ``card_metrics`` is the one rule for what a model's card records.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import nn

from diffusion.core.samplers import SamplerSetting, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.lab.checkpoint import ModelCard
from diffusion.lab.leaderboard import best_scores, lineage_of
from diffusion.metrics.scoring import MANIFOLD_FIELDS, Score, Scorer

CARD_EMBEDDING = "vae"
"""The embedding whose chosen row gives the card's ``fd_n`` and ``fd_sampler`` (the leaderboard's default)."""


def plan_sampling(setting: SamplerSetting, timesteps: int, num_images: int, test_size: int) -> SamplerSetting:
    """``setting`` resolved for a schedule of ``timesteps`` levels, with its sample size N: its own ``num_images`` or
    else the caller's, at most the real test set's size (an FD at N compares N samples with N real digits)."""
    return dataclasses.replace(setting.resolve(timesteps), num_images=min(setting.num_images or num_images, test_size))


def evaluations(setting: SamplerSetting) -> int:
    """Network evaluations of a planned setting (images x steps): what a progress bar counts up to."""
    assert setting.steps is not None and setting.num_images is not None, "plan the setting first (plan_sampling)"
    return setting.num_images * setting.steps


def sample_and_score(model: nn.Module, schedule: NoiseSchedule, setting: SamplerSetting, scorers: Sequence[Scorer],
                     seed: int = 0, progress: Callable[[int], None] | None = None, kid: bool = True,
                     manifold: bool = True, batch_size: int = 500) -> tuple[list[Score], float]:
    """``setting.num_images`` samples of a planned ``setting`` (``plan_sampling``), scored in every scorer's
    embedding; with the seconds the sampling took (the device synchronised). KID and the manifold figures may be
    skipped (a sweep's trial)."""
    if not scorers:
        raise ValueError("sample_and_score needs at least one scorer (embedding)")
    assert setting.num_images is not None, "plan the setting first (plan_sampling)"
    start = time.perf_counter()
    images = sample(model, schedule, setting.num_images, setting, seed, batch_size=batch_size, progress=progress)
    if images.is_cuda:
        torch.cuda.synchronize(images.device)
    seconds = time.perf_counter() - start
    return [scorer.score(images, kid=kid, manifold=manifold) for scorer in scorers], seconds


@dataclass(frozen=True)
class ScoreRow(Score):
    """One row of the ``scores`` table: a ``Score`` of one model's weights at one sampler setting, and its speed."""

    model: str
    arch: str
    sampler: str
    steps: int
    eta: float
    seconds_per_image: float
    images_per_s: float
    parameters: int
    weights_sha256: str  # the weights these scores measure
    train_seconds: float | None
    images_seen: int | None
    device: str
    embedding_sha256: str  # the weights of the embedding these scores were measured in ("" for pixels)
    embedding_trial: str  # the Tune trial that embedding came from ("" if none)


def score_model(name: str, model: nn.Module, card: ModelCard, schedule: NoiseSchedule,
                settings: Sequence[SamplerSetting], scorers: Sequence[Scorer], seed: int = 0,
                progress: Callable[[int], None] | None = None) -> list[ScoreRow]:
    """One row per (setting, scorer): each planned setting's N images sampled once (timed) and scored in every
    embedding.

    ``card`` is the card of the weights in ``model``; ``progress`` gets the network evaluations
    done (``evaluations`` of every setting in all).
    """
    device = next(model.parameters()).device.type
    train_seconds, images_seen = card.metrics.get("train_seconds"), card.metrics.get("images_seen")
    rows = []
    for setting in settings:
        scores, seconds = sample_and_score(model, schedule, setting, scorers, seed, progress)
        for score, scorer in zip(scores, scorers):
            identity, n = scorer.embedder.identity, setting.num_images
            rows.append(ScoreRow(
                model=name, arch=str(card.config["model"]["arch"]), sampler=setting.sampler, steps=setting.steps,
                eta=setting.eta, **asdict(score), seconds_per_image=seconds / n, images_per_s=n / seconds,
                parameters=card.parameters, weights_sha256=card.weights_sha256,
                train_seconds=None if train_seconds is None else float(train_seconds),
                images_seen=None if images_seen is None else int(images_seen), device=device,
                embedding_sha256=identity.sha256, embedding_trial=identity.trial_id))
    return rows


def best_row(rows: Sequence[ScoreRow], embedding: str = CARD_EMBEDDING) -> ScoreRow:
    """The row of one model the leaderboard would pick in ``embedding``: the largest N, then the best ratio (the rows
    are of one scoring, so all measured in one embedding's weights)."""
    frame = pd.DataFrame(list(rows))
    picked = best_scores(frame, lineage_of(frame), embedding)  # index i is rows[i]
    if picked.empty:
        raise ValueError(f"no score row in embedding {embedding!r}")
    return rows[int(picked.index[0])]


def card_metrics(rows: Sequence[ScoreRow]) -> dict[str, float | int | str]:
    """What a model's card records of its scores: ``fd_{e}``, ``fd_floor_{e}``, ``fd_ratio_{e}`` (and ``precision_{e}``,
    ``recall_{e}``, ``density_{e}``, ``coverage_{e}`` where measured) of the chosen row in every embedding scored, with the embedding's weights it was measured in (``fd_embedding_{e}``: their sha256,
    ``fd_embedding_trial_{e}``: their Tune trial), and ``fd_n``, ``fd_sampler`` of the chosen row in the VAE embedding."""
    if len({row.model for row in rows}) != 1 or len({row.weights_sha256 for row in rows}) != 1:
        raise ValueError("card_metrics takes the rows of one model's weights")
    metrics: dict[str, float | int | str] = {}
    for embedding in dict.fromkeys(row.embedding for row in rows):
        best = best_row(rows, embedding)
        metrics |= {f"fd_{embedding}": best.fd, f"fd_floor_{embedding}": best.floor_mean,
                    f"fd_ratio_{embedding}": best.ratio, f"fd_embedding_{embedding}": best.embedding_sha256,
                    f"fd_embedding_trial_{embedding}": best.embedding_trial}
        metrics |= {f"{figure}_{embedding}": getattr(best, figure) for figure in MANIFOLD_FIELDS
                    if getattr(best, figure) is not None}
    if any(row.embedding == CARD_EMBEDDING for row in rows):
        best = best_row(rows)
        metrics |= {"fd_n": best.n, "fd_sampler": f"{best.sampler}-{best.steps}"}
    return metrics
