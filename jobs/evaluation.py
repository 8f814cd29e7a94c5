"""The work of ``python -m jobs.evaluate``, one Ray task each: real-data floors, one model, the robustness curves.

Every FD is reported next to the real-vs-real floor at the same N (Heusel et al. 2017 for FD;
the floor is this lab's convention, see ``diffusion.metrics.floor``).
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import torch
from ray.experimental import tqdm_ray

from diffusion.core.samplers import default_steps, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.embeddings.loading import load_embedder
from diffusion.lab.datasets import load_real_sets, load_sklearn_digits
from diffusion.lab.pictures import render_pictures
from diffusion.lab.store import LabStore
from diffusion.metrics.floor import Floor
from diffusion.metrics.robustness import robustness_curve, robustness_summary
from diffusion.metrics.scoring import real_floor, score_images
from jobs.presets import EvaluateSettings, SamplerSetting

Floors = dict[tuple[str, int], Floor]
"""(embedding, N) -> the floor at that N."""


def sample_size(setting: SamplerSetting, settings: EvaluateSettings, test_size: int) -> int:
    """N of one sampler setting: its own or the section's count, at most the test set's size."""
    return min(setting.num_images or settings.num_images, test_size)


def compute_floors(store: LabStore, dataset: str, settings: EvaluateSettings, device: torch.device) -> Floors:
    """The floor of every embedding at every N the sampler settings use."""
    real = load_real_sets(dataset, store)
    sizes = sorted({sample_size(s, settings, len(real.test)) for s in settings.samplers})
    floors: Floors = {}
    for name in settings.embeddings:
        embedder = load_embedder(name, store, device)
        for n in sizes:
            floors[(name, n)] = real_floor(real.pool, embedder, n, settings.floor_draws, settings.seed)
    return floors


def evaluate_model(store: LabStore, name: str, settings: EvaluateSettings, floors: Floors,
                   device: torch.device) -> list[dict[str, Any]]:
    """Pictures (grid, paths, GIF) and one score row per (sampler setting, embedding) of model ``name``."""
    stored = store.load_denoiser(name, device)
    schedule = NoiseSchedule.from_config(stored.run.diffusion).to(device)
    real = load_real_sets(stored.run.data.dataset, store)
    pictures = settings.pictures
    render_pictures(store, name, stored.model, schedule, pictures.sampler, pictures.steps, settings.seed, pictures.eta)
    embedders = [load_embedder(e, store, device) for e in settings.embeddings]
    metrics = stored.card.metrics
    rows = []
    for setting in settings.samplers:
        steps = setting.steps or default_steps(setting.sampler, schedule)
        n = sample_size(setting, settings, len(real.test))
        bar = tqdm_ray.tqdm(desc=f"{name} {setting.sampler}-{steps}", total=n * steps, unit="eval")
        start = time.perf_counter()
        images = sample(stored.model, schedule, n, setting.sampler, steps, setting.eta, settings.seed, progress=bar.update)
        seconds = time.perf_counter() - start
        bar.close()
        for embedder in embedders:
            score = score_images(images, real.test, real.pool, embedder, settings.floor_draws, settings.seed,
                                 floor=floors.get((embedder.name, n)))
            rows.append({"model": name, "arch": stored.run.model.arch, "sampler": setting.sampler, "steps": steps,
                         "eta": setting.eta, **score.as_row(), "seconds_per_image": seconds / n,
                         "images_per_s": n / seconds, "parameters": stored.card.parameters,
                         "weights_sha256": stored.card.weights_sha256,  # the weights these scores measure
                         "train_seconds": metrics.get("train_seconds"), "images_seen": metrics.get("images_seen"),
                         "device": device.type})
    return rows


def robustness_tables(store: LabStore, dataset: str, settings: EvaluateSettings,
                      device: torch.device) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The corruption curves of every embedding on real digits, and their summary."""
    assert settings.robustness is not None
    curves = settings.robustness
    real = load_real_sets(dataset, store)
    embedders = [load_embedder(e, store, device) for e in settings.embeddings]
    n = min(curves.n, len(real.test), len(real.train))
    curve = robustness_curve(real.test, real.train, embedders, load_sklearn_digits().images, n=n,
                             severities=curves.severities, corruptions=curves.corruptions, seeds=range(curves.seeds))
    return curve, robustness_summary(curve)
