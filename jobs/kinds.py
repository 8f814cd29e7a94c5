"""The kinds of model a sweep trains (denoiser, VAE, classifier), and everything that differs between them.

A ``ModelKind`` owns: how a Tune point (a preset's sections for one group) becomes its run
config; its trial's training job and how each report is judged; its selection metric (lower is
better for every kind); and what its exported card records. Everything else (the trial loop,
its checkpoints, the experiment, the trials tables, the export) is one path for every kind:
``jobs.trial`` and ``jobs.experiment``.

Adding a kind: its run config and network in ``diffusion`` (``diffusion.lab.kinds``), then one
entry in ``MODEL_KINDS`` here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffusion.core.config import from_dict, lookup, to_dict
from diffusion.core.models import DENOISERS
from diffusion.core.samplers import SamplerSetting
from diffusion.core.training import Trainer, TrainProgress
from diffusion.embeddings.loading import load_embedder
from diffusion.embeddings.training import EMBEDDING_TRAINING, SELECTION_METRIC, build_embedder_job, validation_metrics
from diffusion.lab.datasets import RealSets, load_dataset, selection_splits
from diffusion.lab.kinds import STORED_KINDS, kind_of
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.store import LabStore
from diffusion.lab.tables import TRIAL_HISTORY as H
from diffusion.lab.tables import TRIALS
from diffusion.metrics.model_scores import sample_and_score
from diffusion.metrics.scoring import Scorer, real_floor

POINT_KEY = "point"
"""The trial config's key holding its group's point: ``{"name": <group>, "kind": <kind>, <section>: {...}, ...}``."""
POINT_NAME = "name"
"""The key of a point that names its group: the model (mlp, unet, ...) or the embedding kind (vae, classifier)."""
POINT_KIND = "kind"
"""The key of a point that names its group's kind (``MODEL_KINDS``)."""
TRIAL_FLOOR_DRAWS = 3
"""Draws of a denoiser trial's floor: fewer than an evaluation's, since every trial computes its own at start."""


@dataclass(frozen=True)
class TrialContext:
    """What a trial's body is given besides its run: the lab, its device and the job's settings (``_job``)."""

    store: LabStore
    device: torch.device
    job: dict[str, Any]


@dataclass(frozen=True)
class Judged:
    """A report's verdict: the figures it adds, the selection metric's value and what the best report keeps."""

    metrics: dict[str, Any]
    score: float
    info: dict[str, Any]
    weights: nn.Module
    """The network the score is of (the EMA weights): kept and exported if the score is the trial's best."""


Judge = Callable[[Trainer, TrainProgress], Judged | None]
"""A report's judge: the verdict at this report, or None where the kind scores no report here."""


@dataclass(frozen=True)
class TrialBody:
    """A kind's training job for one run: the trainer and the judge of its reports."""

    trainer: Trainer
    judge: Judge


@dataclass(frozen=True)
class ModelKind:
    """What a sweep needs of one kind of model; ``name`` is the kind a card names (``diffusion.lab.kinds``)."""

    name: str
    sections: tuple[str, ...]
    """The run config's sections a preset may set (``data`` comes from the preset's data set)."""
    defaults: Callable[[str], dict[str, dict[str, Any]]]
    """Group -> the sections a point starts from beyond its run config's own defaults (a denoiser: its
    architecture and that architecture's default size)."""
    metric: str
    """What the trials report, and ASHA, the searcher and the export minimise."""
    start: Callable[[Any, TrialContext], TrialBody]
    """(run, context) -> the trial's training job and the judge of its reports."""
    card: Callable[[dict[str, Any]], dict[str, Any]]
    """The best report's info -> what the exported card records of it."""

    def run_config(self, group: str, sections: dict[str, Any], dataset: str,
                   pick: Callable[[Any, str], Any] | None = None, where: str | None = None) -> Any:
        """The run config of one point: the group's defaults, overridden by ``sections``, each value picked by
        ``pick(value, key path)`` (default: as given; presets pass one that reads a search space's first point).
        A refused value is named by its key path, ``<where>.<section>.<key>``."""
        where = where or f"{self.name}.{group}"
        chosen = {s: {k: pick(v, f"{where}.{s}.{k}") if pick else v for k, v in (sections.get(s) or {}).items()}
                  for s in self.sections}
        base = {**section_defaults(STORED_KINDS[self.name].config_type), **self.defaults(group)}
        body = {s: {**base.get(s, {}), **chosen[s]} for s in self.sections}
        return from_dict(STORED_KINDS[self.name].config_type, {**body, "data": {"dataset": dataset}}, where)


def section_defaults(config_type: type) -> dict[str, dict[str, Any]]:
    """The sections of a run config type that have defaults (``VAERun``'s train: 1,500 steps ...), as dicts."""
    found = {}
    for f in dataclasses.fields(config_type):
        if f.default_factory is not dataclasses.MISSING:
            found[f.name] = to_dict(f.default_factory())
        elif f.default is not dataclasses.MISSING:
            found[f.name] = to_dict(f.default)
    return found


def _denoiser_defaults(group: str) -> dict[str, dict[str, Any]]:
    return {"model": {"arch": group, **lookup(DENOISERS, group, "model").defaults}}


def _start_denoiser(run: Any, context: TrialContext) -> TrialBody:
    """The core's training loop; FD (VAE) of a small sample every ``eval_every_images`` and at the last step."""
    job, store, device = context.job, context.store, context.device
    denoiser = build_denoiser_run(run, device, store=store)
    embedder = load_embedder("vae", store, device)
    test = load_dataset(run.data, "test", store).images
    n = min(job["fd_samples"], len(test))
    pool = RealSets(denoiser.trainer.tensors[0].cpu(), test).pool  # train: the split build_denoiser_run loaded
    scorer = Scorer(embedder, test, floors={n: real_floor(pool, embedder, n, TRIAL_FLOOR_DRAWS)})  # no pool kept
    del pool
    setting = SamplerSetting("ddim", job["fd_sampler_steps"], num_images=n).resolve(denoiser.schedule.timesteps)
    every_images, batch = job["eval_every_images"], run.train.batch_size

    def judge(trainer: Trainer, progress: TrainProgress) -> Judged | None:
        previous = progress.images_seen - report_every(job["report_every_images"], batch) * batch
        if progress.step != run.train.steps and progress.images_seen // every_images == previous // every_images:
            return None
        [score], _seconds = sample_and_score(trainer.ema.model, denoiser.schedule, setting, [scorer], seed=0,
                                             kid=False, manifold=False)  # with the ratio's interval: a few ms here
        identity = embedder.identity
        figures = {H.fd: score.fd, TRIALS.floor_mean: score.floor_mean, H.ratio: score.ratio, H.ratio_low: score.ratio_low,
                   H.ratio_high: score.ratio_high, TRIALS.fd_embedding: identity.sha256}  # the tables' columns
        return Judged(figures, score.fd, {**figures, "fd_samples": n, "fd_sampler": setting.label,
                                          "fd_embedding_trial": identity.trial_id}, trainer.ema.model)

    return TrialBody(denoiser.trainer, judge)


def _denoiser_card(info: dict[str, Any]) -> dict[str, Any]:
    """The trial's FD of the exported weights, as the card names it (``*_sweep``: measured by the sweep)."""
    return {"fd_vae_sweep": info[H.fd], "fd_floor_sweep": info[TRIALS.floor_mean], "fd_step_sweep": info[H.step],
            "fd_samples_sweep": info["fd_samples"], "fd_sampler_sweep": info["fd_sampler"],
            "fd_embedding_sweep": info[TRIALS.fd_embedding], "fd_embedding_trial_sweep": info["fd_embedding_trial"]}


def _start_embedding(run: Any, context: TrialContext) -> TrialBody:
    """Trained on the fit part of the training split; every report judged on its validation part."""
    splits = selection_splits(run.data, context.store)
    embedding = build_embedder_job(kind_of(run), run, context.device, data=(splits.fit.images, splits.fit.labels))

    def judge(trainer: Trainer, progress: TrainProgress) -> Judged:
        figures = validation_metrics(embedding.kind, embedding.ema_model, splits.validation)
        return Judged(figures, figures[SELECTION_METRIC], {**figures, "validation_images": len(splits.validation)},
                      embedding.ema_model)

    return TrialBody(embedding.trainer, judge)


def _embedding_card(info: dict[str, Any]) -> dict[str, Any]:
    """The validation figures of the exported weights and the rule that chose them."""
    return {**{k: v for k, v in info.items() if k.startswith("val_")}, "validation_images": info["validation_images"],
            "selection": f"lowest {SELECTION_METRIC} on the validation split"}


EMBEDDING_KINDS: tuple[str, ...] = tuple(EMBEDDING_TRAINING)
"""The evaluation embeddings' kinds, swept before the denoisers (``jobs.sweep``)."""
MODEL_KINDS: dict[str, ModelKind] = {
    "denoiser": ModelKind("denoiser", ("model", "diffusion", "train"), _denoiser_defaults, H.fd, _start_denoiser,
                          _denoiser_card),
    **{kind: ModelKind(kind, ("model", "train"), lambda group: {}, SELECTION_METRIC, _start_embedding, _embedding_card)
       for kind in EMBEDDING_KINDS},
}
"""Every kind a sweep trains, by the name its cards carry."""


def report_every(report_every_images: int, batch_size: int) -> int:
    """Training steps between two reports of a trial."""
    return max(1, report_every_images // batch_size)


def group_kind(group: str) -> ModelKind:
    """The kind of a group: a denoiser architecture (mlp, unet, ...) or an embedding kind (vae, classifier)."""
    return MODEL_KINDS["denoiser"] if group in DENOISERS else lookup(MODEL_KINDS, group, "model kind")


def trial_run(config: dict[str, Any]) -> Any:
    """The run config a trial's config describes: its group's point under ``point``, the data set under ``_job``."""
    point = config[POINT_KEY]
    return MODEL_KINDS[point[POINT_KIND]].run_config(point[POINT_NAME], point, config["_job"]["dataset"])


def group_of(config: dict[str, Any]) -> str:
    """The group a trial config belongs to (its model, or its embedding kind): the experiment's grouping key."""
    return config[POINT_KEY][POINT_NAME]
