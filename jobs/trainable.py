"""The Ray Tune trial: the core's training loop, FD-scored and checkpointed at every report.

A report every ``report_every_images`` carries the mean training loss since the last one and a
checkpoint with the trainer's full resume state (torch.save, read back with
weights_only=True); every ``eval_every_images`` (and at the end) it also carries the FD (VAE
embedding) of a small DDIM sample against the held-out test set, with its floor and ratio.
ASHA acts on the FD reports only. The FD and its floor come from the core's ``Scorer``, built
once per trial, with the floor drawn from the real pool as in every evaluation (KID skipped).
After a failure Tune restarts the trial from ``tune.get_checkpoint()``, on whatever device the
retry was given (resume state is portable).

Every checkpoint also carries the EMA weights of the trial's best FD report so far
(``best.safetensors``, with ``best.json``: FD, floor, step): the sweep exports exactly the
weights that were scored, whichever checkpoints Tune keeps.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import ray
import torch
from ray import tune

from diffusion.core.samplers import sample
from diffusion.core.training import Trainer, TrainProgress
from diffusion.embeddings.loading import load_embedder
from diffusion.lab.checkpoint import weights_to_bytes
from diffusion.lab.datasets import RealSets, load_dataset
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.store import LabStore
from diffusion.metrics.scoring import Scorer, real_floor
from jobs.presets import run_config
from jobs.ray_session import task_device

STATE_FILE = "trainer_state.pt"
BEST_WEIGHTS_FILE = "best.safetensors"
BEST_INFO_FILE = "best.json"
DENOISER_KEY = "denoiser"
"""The trial config's key holding one model's point: ``{"arch": ..., "model": ..., "diffusion": ..., "train": ...}``."""
FAIL_ONCE_ENV = "DIFFUSION_LAB_FAIL_ONCE_AT_STEP"  # test hook: raise once at this step, to prove retries resume
SPOIL_AFTER_ENV = "DIFFUSION_LAB_SPOIL_WEIGHTS_AFTER_STEP"  # test hook: scramble the weights after this step, so FD worsens late
FLOOR_DRAWS = 3
"""Draws of the trial's floor: fewer than an evaluation's, since every trial computes its own at start."""


def model_of(config: dict[str, Any]) -> str:
    """The model (architecture) a trial config trains: the sweep's grouping key."""
    return config[DENOISER_KEY]["arch"]


def _write_checkpoint(directory: str, trainer: Trainer, best: tuple[bytes, dict[str, Any]] | None) -> None:
    with open(os.path.join(directory, STATE_FILE), "wb") as handle:
        handle.write(trainer.save_state())
    if best is not None:
        with open(os.path.join(directory, BEST_WEIGHTS_FILE), "wb") as handle:
            handle.write(best[0])
        with open(os.path.join(directory, BEST_INFO_FILE), "w") as handle:
            json.dump(best[1], handle)


def read_best(directory: str) -> tuple[bytes, dict[str, Any]] | None:
    """The best-FD EMA weights (safetensors bytes) and their report (FD, floor, step) in a checkpoint folder."""
    weights, info = os.path.join(directory, BEST_WEIGHTS_FILE), os.path.join(directory, BEST_INFO_FILE)
    if not (os.path.exists(weights) and os.path.exists(info)):
        return None
    with open(weights, "rb") as w, open(info) as i:
        return w.read(), json.load(i)


def _spoil(trainer: Trainer) -> None:
    """Set every weight (network and EMA) to one: a degenerate net whose samples are far from digits."""
    with torch.no_grad():
        for parameter in [*trainer.model.parameters(), *trainer.ema.model.parameters()]:
            parameter.fill_(1.0)


def train_denoiser_trial(config: dict[str, Any]) -> None:
    """Tune function trainable; ``config`` holds one model's point under ``denoiser`` and the job's settings under ``_job``."""
    job_settings = config["_job"]
    point = config[DENOISER_KEY]
    run = run_config(point["arch"], {s: point.get(s, {}) for s in ("model", "diffusion", "train")}, job_settings["dataset"])
    device = task_device()
    store = LabStore(job_settings["lab"])
    job = build_denoiser_run(run, device, store=store)
    checkpoint = tune.get_checkpoint()
    best: tuple[bytes, dict[str, Any]] | None = None
    if checkpoint is not None:
        with checkpoint.as_directory() as directory, open(os.path.join(directory, STATE_FILE), "rb") as handle:
            job.trainer.load_state(handle.read())
            best = read_best(directory)

    embedder = load_embedder("vae", store, device)
    test = load_dataset(run.data, "test", store).images
    n = min(job_settings["fd_samples"], len(test))
    pool = RealSets(job.trainer.tensors[0].cpu(), test).pool  # train: the split build_denoiser_run already loaded
    scorer = Scorer(embedder, test, floors={n: real_floor(pool, embedder, n, FLOOR_DRAWS)})  # the pool is not kept
    del pool
    every = max(1, job_settings["report_every_images"] // run.train.batch_size)
    eval_every = job_settings["eval_every_images"]
    fail_at = int(os.environ.get(FAIL_ONCE_ENV, "0"))
    spoil_after = int(os.environ.get(SPOIL_AFTER_ENV, "0"))
    node_id = ray.get_runtime_context().get_node_id()  # hosts can share an IP (several nodes on one machine)

    def report(trainer: Trainer, progress: TrainProgress) -> None:
        nonlocal best
        if fail_at and progress.step >= fail_at and checkpoint is None:
            raise RuntimeError(f"injected failure at step {progress.step} ({FAIL_ONCE_ENV})")
        if spoil_after and progress.step > spoil_after:
            _spoil(trainer)
        metrics = {"step": progress.step, "images_seen": progress.images_seen, "loss": progress.loss,
                   "lr": progress.lr, "images_per_s": progress.images_per_s, "resumed": checkpoint is not None,
                   "node_id": node_id, "device": str(device)}
        previous_images = progress.images_seen - every * run.train.batch_size
        if progress.step == run.train.steps or progress.images_seen // eval_every > previous_images // eval_every:
            images = sample(trainer.ema.model, job.schedule, n, "ddim", job_settings["fd_sampler_steps"], seed=0)
            score = scorer.score(images, kid=False)
            metrics |= {"fd": score.fd, "fd_floor": score.floor_mean, "fd_ratio": score.ratio}
            if best is None or score.fd < best[1]["fd"]:
                best = (weights_to_bytes(trainer.ema.model),
                        {"fd": score.fd, "fd_floor": score.floor_mean, "step": progress.step,
                         "images_seen": progress.images_seen,
                         "fd_samples": n, "fd_sampler": f"ddim-{job_settings['fd_sampler_steps']}"})
        with tempfile.TemporaryDirectory() as directory:
            _write_checkpoint(directory, trainer, best)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    job.trainer.fit(callback=report, every=every)
