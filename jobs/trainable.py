"""The Ray Tune trial of a denoiser: the core's training loop, FD-scored and checkpointed at every report.

A report every ``report_every_images`` carries the mean training loss since the last one and a
checkpoint (``jobs.trial_state``: resume state, and the EMA weights of the best FD so far);
every ``eval_every_images`` (and at the end) it also carries the FD (VAE embedding) of a small
DDIM sample against the held-out test set, with its floor and ratio. ASHA acts on the FD
reports only. The FD and its floor come from the core's ``Scorer``, built once per trial, with
the floor drawn from the real pool as in every evaluation (KID skipped).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from diffusion.core.config import RunConfig
from diffusion.core.samplers import sample
from diffusion.core.training import Trainer, TrainProgress
from diffusion.embeddings.loading import load_embedder
from diffusion.lab.datasets import RealSets, load_dataset
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.store import LabStore
from diffusion.metrics.scoring import Scorer, real_floor
from jobs.presets import POINT_NAME, SECTIONS, run_config
from jobs.ray_session import task_device
from jobs.trial_state import POINT_KEY, TrialCheckpoints, progress_metrics, report_every

FAIL_ONCE_ENV = "DIFFUSION_LAB_FAIL_ONCE_AT_STEP"  # test hook: raise once at this step, to prove retries resume
SPOIL_AFTER_ENV = "DIFFUSION_LAB_SPOIL_WEIGHTS_AFTER_STEP"  # test hook: scramble the weights after this step, so FD worsens late
FLOOR_DRAWS = 3
"""Draws of the trial's floor: fewer than an evaluation's, since every trial computes its own at start."""


def _spoil(trainer: Trainer) -> None:
    """Zero every weight (network and EMA) and set every bias to -10: the output is -10 everywhere, so every
    prediction (noise or v) pushes the clean-image estimate to white, and samples are blank white squares,
    far from any digit in every embedding."""
    with torch.no_grad():
        for model in (trainer.model, trainer.ema.model):
            for name, parameter in model.named_parameters():
                parameter.fill_(-10.0 if name.endswith("bias") else 0.0)


def trial_run_config(config: dict[str, Any]) -> RunConfig:
    """The run a denoiser trial's config describes: its model's point under ``point``, the data set under ``_job``."""
    point = config[POINT_KEY]
    return run_config(point[POINT_NAME], {s: point.get(s, {}) for s in SECTIONS}, config["_job"]["dataset"])


def train_denoiser_trial(config: dict[str, Any]) -> None:
    """Tune function trainable; ``config`` holds one model's point under ``point`` and the job's settings under ``_job``."""
    job_settings = config["_job"]
    run = trial_run_config(config)
    device = task_device()
    store = LabStore(job_settings["lab"])
    job = build_denoiser_run(run, device, store=store)
    checkpoints = TrialCheckpoints(job.trainer, "fd")

    embedder = load_embedder("vae", store, device)
    test = load_dataset(run.data, "test", store).images
    n = min(job_settings["fd_samples"], len(test))
    pool = RealSets(job.trainer.tensors[0].cpu(), test).pool  # train: the split build_denoiser_run already loaded
    scorer = Scorer(embedder, test, floors={n: real_floor(pool, embedder, n, FLOOR_DRAWS)})  # the pool is not kept
    del pool
    every = report_every(job_settings["report_every_images"], run.train.batch_size)
    eval_every = job_settings["eval_every_images"]
    fail_at = int(os.environ.get(FAIL_ONCE_ENV, "0"))
    spoil_after = int(os.environ.get(SPOIL_AFTER_ENV, "0"))

    def report(trainer: Trainer, progress: TrainProgress) -> None:
        if fail_at and progress.step >= fail_at and not checkpoints.resumed:
            raise RuntimeError(f"injected failure at step {progress.step} ({FAIL_ONCE_ENV})")
        if spoil_after and progress.step > spoil_after:
            _spoil(trainer)
        metrics = progress_metrics(progress, checkpoints.resumed, device)
        previous_images = progress.images_seen - every * run.train.batch_size
        if progress.step == run.train.steps or progress.images_seen // eval_every > previous_images // eval_every:
            images = sample(trainer.ema.model, job.schedule, n, "ddim", job_settings["fd_sampler_steps"], seed=0)
            score = scorer.score(images, kid=False, manifold=False)  # with the ratio's interval: a few ms at these N
            metrics |= {"fd": score.fd, "fd_floor": score.floor_mean, "fd_ratio": score.ratio,
                        "fd_ratio_low": score.ratio_low, "fd_ratio_high": score.ratio_high,
                        "fd_embedding": embedder.identity.sha256}
            checkpoints.offer(trainer.ema.model, score.fd, {
                "fd_floor": score.floor_mean, "step": progress.step, "images_seen": progress.images_seen,
                "fd_samples": n, "fd_sampler": f"ddim-{job_settings['fd_sampler_steps']}",
                "fd_embedding": embedder.identity.sha256, "fd_embedding_trial": embedder.identity.trial_id})
        checkpoints.report(trainer, metrics)

    job.trainer.fit(callback=report, every=every)
