"""Score a model: sample it once per sampler setting, score the samples in every embedding, one row each.

The one scoring path of the lab: the ``score`` command, the evaluation job and (through
``Scorer``) the sweep's trials all use it, so an FD and its floor mean the same everywhere.
FD as in Heusel et al. 2017, next to the real-vs-real floor at the same N; KID as in
Binkowski et al. 2018. ``card_metrics`` is the one rule for what a model's card records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd
from torch import nn

from diffusion.core.config import SamplerSetting
from diffusion.core.samplers import default_steps, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.lab.checkpoint import ModelCard
from diffusion.lab.leaderboard import best_scores, lineage_of
from diffusion.metrics.scoring import MANIFOLD_FIELDS, Score, Scorer

CARD_EMBEDDING = "vae"
"""The embedding whose chosen row gives the card's ``fd_n`` and ``fd_sampler`` (the leaderboard's default)."""


@dataclass(frozen=True)
class SamplingPlan:
    """One sampler setting as scored: the step count filled in and the sample size N."""

    sampler: str
    steps: int
    eta: float
    n: int

    @property
    def evaluations(self) -> int:
        """Network evaluations of one image times images: what the progress callback counts up to."""
        return self.n * self.steps

    @property
    def label(self) -> str:
        """``sampler-steps``, as cards and logs name a setting."""
        return f"{self.sampler}-{self.steps}"


def sample_count(setting: SamplerSetting, num_images: int, test_size: int) -> int:
    """N of one setting: its own ``num_images`` or else the caller's, at most the real test set's size."""
    return min(setting.num_images or num_images, test_size)


def plan_sampling(setting: SamplerSetting, schedule: NoiseSchedule, num_images: int, test_size: int) -> SamplingPlan:
    """``setting`` resolved for ``schedule``: steps None is the sampler's default; N as ``sample_count``."""
    return SamplingPlan(setting.sampler, setting.steps or default_steps(setting.sampler, schedule), setting.eta,
                        sample_count(setting, num_images, test_size))


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


def score_model(name: str, model: nn.Module, card: ModelCard, schedule: NoiseSchedule, plans: Sequence[SamplingPlan],
                scorers: Sequence[Scorer], seed: int = 0,
                progress: Callable[[int], None] | None = None) -> list[ScoreRow]:
    """One row per (plan, scorer): each plan's N images sampled once (timed) and scored in every embedding.

    ``card`` is the card of the weights in ``model``; ``progress`` gets the network evaluations
    done (``SamplingPlan.evaluations`` in all).
    """
    if not scorers:
        raise ValueError("score_model needs at least one scorer (embedding)")
    device = next(model.parameters()).device.type
    train_seconds, images_seen = card.metrics.get("train_seconds"), card.metrics.get("images_seen")
    rows = []
    for plan in plans:
        start = time.perf_counter()
        images = sample(model, schedule, plan.n, plan.sampler, plan.steps, plan.eta, seed, progress=progress)
        seconds = time.perf_counter() - start
        for scorer in scorers:
            score, identity = scorer.score(images), scorer.embedder.identity
            rows.append(ScoreRow(
                model=name, arch=str(card.config["model"]["arch"]), sampler=plan.sampler, steps=plan.steps,
                eta=plan.eta, **asdict(score), seconds_per_image=seconds / plan.n, images_per_s=plan.n / seconds,
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
