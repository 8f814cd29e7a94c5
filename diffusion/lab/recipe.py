"""Wire a RunConfig into a ready Trainer.

The standalone CLI and the Ray Tune trials both start here, so a trial is exactly the
training run a user gets from ``python -m diffusion train``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from diffusion.core.config import RunConfig
from diffusion.core.device import seeded
from diffusion.core.losses import diffusion_loss
from diffusion.core.models import build_denoiser
from diffusion.core.schedules import NoiseSchedule
from diffusion.core.training import Trainer, TrainingJob
from diffusion.lab.datasets import load_dataset
from diffusion.lab.store import LabStore


@dataclass
class DenoiserRun(TrainingJob):
    """A denoiser's run config, its schedule and the trainer that fits it, built from one RunConfig."""

    schedule: NoiseSchedule = field(kw_only=True)


def build_denoiser_run(run: RunConfig, device: torch.device, data: torch.Tensor | None = None,
                       store: LabStore | None = None) -> DenoiserRun:
    """Load the training split (unless ``data`` is given; from ``store``'s copy where it has one), build schedule, seeded model and trainer.

    ``run`` checked itself when it was made (RunConfig), so nothing here checks it again."""
    images = load_dataset(run.data, "train", store).images if data is None else data
    schedule = NoiseSchedule.from_config(run.diffusion).to(device)
    with seeded(run.train.seed):
        model = build_denoiser(run.model)
    loss = diffusion_loss(schedule, run.diffusion.loss_weighting, run.diffusion.min_snr_gamma, run.diffusion.noise_levels)
    return DenoiserRun(run, Trainer(model, loss, images, run.train, device), schedule=schedule)
