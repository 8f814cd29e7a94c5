"""What the sampler benchmarks share: FD / floor at N against the held-out digits, and a timed table of sampler settings."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from reference import DiffusersDDIM  # bench/reference.py, beside this file
from torch import nn

from diffusion.core.samplers import SamplerSetting, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.embeddings.loading import load_embedder
from diffusion.lab.datasets import load_real_sets
from diffusion.lab.store import LabStore
from diffusion.metrics.model_scores import plan_sampling, sample_and_score
from diffusion.metrics.scoring import Score
from diffusion.metrics.scoring import Scorer as LabScorer


@dataclass(frozen=True)
class Setting:
    """One row of a sampler table: a sampler setting, run by our sampler or by diffusers' DDIM (``implementation``)."""

    setting: SamplerSetting
    implementation: str = "ours"

    @property
    def label(self) -> str:
        eta = f", eta {self.setting.eta:g}" if self.setting.eta and self.setting.sampler != "ddpm" else ""  # ddpm ignores it
        return f"{'' if self.implementation == 'ours' else 'diffusers '}{self.setting.label}{eta}"


def ours(sampler: str, steps: int | None = None, eta: float | None = None) -> Setting:
    """A row of our sampler (``eta`` None: the sampler's own)."""
    return Setting(SamplerSetting(sampler, steps, eta))  # type: ignore[arg-type]


def figures(score: Score) -> dict[str, float]:
    """What a table row shows of a score: FD, its ratio to the floor and the ratio's interval."""
    return {"fd": score.fd, "ratio": score.ratio, "ratio_low": score.ratio_low, "ratio_high": score.ratio_high}


class Scorer:
    """FD / floor at N in the VAE embedding against the held-out digits, with its 95% interval: the lab's own scoring
    (``diffusion.metrics.scoring.Scorer``: 8-bit samples, the floor computed once)."""

    def __init__(self, store: LabStore, n: int, device: torch.device) -> None:
        real = load_real_sets("mnist-embedded")
        self.lab = LabScorer(load_embedder("vae", store, device), real.test, real.pool)
        self.n = self.lab.size(n)
        self.floor = self.lab.floor(self.n)

    def __call__(self, images: torch.Tensor) -> dict[str, float]:
        return figures(self.lab.score(images[: self.n], kid=False))


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
    sample(model, schedule, 8, SamplerSetting("ddim", 2))  # warm-up
    rows = []
    for row in settings:
        planned = plan_sampling(row.setting, schedule.timesteps, scorer.n, scorer.n)
        if row.implementation == "ours":  # the lab's own path: sampled and scored as every evaluation is
            [score], seconds = sample_and_score(model, schedule, planned, [scorer.lab], seed=1, kid=False,
                                                batch_size=batch)
            found = figures(score)
        else:
            assert reference is not None
            run = lambda: reference.sample(model, scorer.n, planned.steps, seed=1, batch_size=batch)  # noqa: E731
            images, seconds = timed(run, device)
            found = scorer(images)
        rows.append({"setting": row.label, "implementation": row.implementation, "sampler": planned.sampler,
                     "steps": planned.steps, "eta": planned.eta, "seconds": seconds, "images_per_s": scorer.n / seconds,
                     **found})
        print(f"  {row.label}: FD/floor {rows[-1]['ratio']:.2f}, {rows[-1]['images_per_s']:.0f} img/s", flush=True)
    return rows
