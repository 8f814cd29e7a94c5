"""What the sampler benchmarks share: FD / floor at N against the held-out digits, and a timed table of sampler settings."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from reference import DiffusersDDIM  # bench/reference.py, beside this file
from torch import nn

from diffusion.core.samplers import sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.embeddings.loading import load_embedder
from diffusion.lab.datasets import load_real_sets
from diffusion.lab.store import LabStore
from diffusion.metrics.scoring import Scorer as LabScorer


@dataclass(frozen=True)
class Setting:
    """One row of a sampler table: ours or diffusers' DDIM, a sampler, its steps (None: all T) and eta."""

    sampler: str
    steps: int | None = None
    eta: float = 0.0
    implementation: str = "ours"

    @property
    def label(self) -> str:
        steps = "T" if self.steps is None else str(self.steps)
        eta = f", eta {self.eta:g}" if self.eta and self.sampler != "ddpm" else ""  # ddpm ignores eta
        prefix = "" if self.implementation == "ours" else "diffusers "
        return f"{prefix}{self.sampler}-{steps}{eta}"


class Scorer:
    """FD / floor at N in the VAE embedding against the held-out digits, with its 95% interval: the lab's own scoring
    (``diffusion.metrics.scoring.Scorer``: 8-bit samples, the floor computed once)."""

    def __init__(self, store: LabStore, n: int, device: torch.device) -> None:
        real = load_real_sets("mnist-embedded")
        self.lab = LabScorer(load_embedder("vae", store, device), real.test, real.pool)
        self.n = self.lab.size(n)
        self.floor = self.lab.floor(self.n)

    def __call__(self, images: torch.Tensor) -> dict[str, float]:
        score = self.lab.score(images[: self.n], kid=False)
        return {"fd": score.fd, "ratio": score.ratio, "ratio_low": score.ratio_low, "ratio_high": score.ratio_high}


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """(fn(), seconds), with the device synchronised around it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return value, time.perf_counter() - start


def sampler_rows(model: nn.Module, schedule: NoiseSchedule, schedule_name: str, prediction: str, settings: Sequence[Setting],
                 scorer: Scorer, batch: int, device: torch.device) -> list[dict[str, Any]]:
    """FD / floor at the scorer's N and images/s of each setting, on ``model``."""
    # diffusers (the bench extra) only where a setting asks for its DDIM
    needs_reference = any(setting.implementation != "ours" for setting in settings)
    reference = DiffusersDDIM(schedule_name, prediction, schedule.timesteps) if needs_reference else None
    sample(model, schedule, 8, "ddim", 2)  # warm-up
    rows = []
    for setting in settings:
        if setting.implementation == "ours":
            run = lambda: sample(model, schedule, scorer.n, setting.sampler, setting.steps, setting.eta, seed=1,  # noqa: E731
                                 batch_size=batch)
        else:
            assert reference is not None
            run = lambda: reference.sample(model, scorer.n, setting.steps or schedule.timesteps, seed=1, batch_size=batch)  # noqa: E731
        images, seconds = timed(run, device)
        rows.append({"setting": setting.label, "implementation": setting.implementation, "sampler": setting.sampler,
                     "steps": setting.steps or schedule.timesteps, "eta": setting.eta, "seconds": seconds,
                     "images_per_s": scorer.n / seconds,
                     **scorer(images)})
        print(f"  {setting.label}: FD/floor {rows[-1]['ratio']:.2f}, {rows[-1]['images_per_s']:.0f} img/s", flush=True)
    return rows
