"""The Ray Tune trial: the core's training loop, FD-scored and checkpointed at every report.

A report every ``report_every_images`` carries the mean training loss since the last one and a
checkpoint with the trainer's full resume state (torch.save, read back with
weights_only=True); every ``eval_every_images`` (and at the end) it also carries the FD (VAE
embedding) of a small DDIM sample against the held-out test set, with its floor and ratio.
ASHA acts on the FD reports only. After a failure Tune restarts the trial from
``tune.get_checkpoint()``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import ray
import torch
from ray import tune

from diffusion.data import load_dataset
from diffusion.device import pick_device
from diffusion.embeddings.loading import load_embedder
from diffusion.metrics.floor import fd_floor
from diffusion.metrics.frechet import frechet_distance
from diffusion.recipe import build_denoiser_run
from diffusion.samplers import sample
from diffusion.store import LabStore
from diffusion.training import Trainer, TrainProgress
from jobs.presets import run_config

STATE_FILE = "trainer_state.pt"
FAIL_ONCE_ENV = "DIFFUSION_LAB_FAIL_ONCE_AT_STEP"  # test hook: raise once at this step, to prove retries resume


def train_denoiser_trial(config: dict[str, Any]) -> None:
    """Tune function trainable; ``config`` is one point of ``jobs.presets.param_space`` plus ``_job``."""
    job_settings = config["_job"]
    sections = {s: config.get(s, {}) for s in ("model", "diffusion", "train")}
    run = run_config(config["arch"], sections, job_settings["dataset"])
    device = pick_device("auto")
    store = LabStore(job_settings["lab"])
    job = build_denoiser_run(run, device)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory, open(os.path.join(directory, STATE_FILE), "rb") as handle:
            job.trainer.load_state(handle.read())

    embedder = load_embedder("vae", store, device)
    test = load_dataset(run.data, "test").images
    n = min(job_settings["fd_samples"], len(test))
    test_stats = embedder.stats(test[:n])
    train_images = job.trainer.tensors[0][: 4 * n].cpu()  # the split build_denoiser_run already loaded
    floor = fd_floor(embedder(torch.cat([train_images, test])), n, draws=3)
    every = max(1, job_settings["report_every_images"] // run.train.batch_size)
    eval_every = job_settings["eval_every_images"]
    fail_at = int(os.environ.get(FAIL_ONCE_ENV, "0"))
    node_id = ray.get_runtime_context().get_node_id()  # hosts can share an IP (several nodes on one machine)

    def report(trainer: Trainer, progress: TrainProgress) -> None:
        if fail_at and progress.step >= fail_at and checkpoint is None:
            raise RuntimeError(f"injected failure at step {progress.step} ({FAIL_ONCE_ENV})")
        metrics = {"step": progress.step, "images_seen": progress.images_seen, "loss": progress.loss,
                   "lr": progress.lr, "images_per_s": progress.images_per_s, "resumed": checkpoint is not None, "node_id": node_id}
        previous_images = progress.images_seen - every * run.train.batch_size
        if progress.step == run.train.steps or progress.images_seen // eval_every > previous_images // eval_every:
            images = sample(trainer.ema.model, job.schedule, n, "ddim", job_settings["fd_sampler_steps"], seed=0)
            fd = frechet_distance(embedder.stats(images), test_stats).fd
            metrics |= {"fd": fd, "fd_floor": floor.mean, "fd_ratio": floor.ratio(fd)}
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, STATE_FILE), "wb") as handle:
                handle.write(trainer.save_state())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    job.trainer.fit(callback=report, every=every)
