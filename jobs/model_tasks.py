"""The Ray tasks of ``python -m jobs.evaluate``: real-data floors, one model's pictures and scores, the robustness curves.

The science is the library's (``diffusion.metrics.model_scores.score_model``: every FD next to
the real-vs-real floor at the same N); this module is the Ray side: what each task loads, its
progress bar, and floors computed once per data set and shared by every model's task.
"""

from __future__ import annotations

import pandas as pd
import ray
import torch
from ray.experimental import tqdm_ray

from diffusion.core.schedules import NoiseSchedule
from diffusion.embeddings.loading import load_embedder
from diffusion.lab.datasets import RealSets, load_real_sets, load_sklearn_digits
from diffusion.lab.pictures import render_pictures
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.metrics.floor import Floor
from diffusion.metrics.model_scores import ScoreRow, evaluations, plan_sampling, score_model
from diffusion.metrics.robustness import robustness_curve, robustness_summary
from diffusion.metrics.scoring import Scorer
from jobs.presets import EvaluateSettings
from jobs.ray_session import task_device

Floors = dict[tuple[str, int], Floor]
"""(embedding, N) -> the floor at that N."""


def scorers(store: LabStore, real: RealSets, settings: EvaluateSettings, device: torch.device,
            floors: Floors | None = None) -> list[Scorer]:
    """One scorer per embedding of the section, primed with the ``floors`` already computed."""
    known = floors or {}
    return [Scorer(load_embedder(name, store, device), real.test, real.pool, settings.floor_draws, settings.seed,
                   floors={n: floor for (embedding, n), floor in known.items() if embedding == name})
            for name in settings.embeddings]


def compute_floors(store: LabStore, dataset: str, settings: EvaluateSettings, device: torch.device) -> Floors:
    """The floor of every embedding at every N the sampler settings use."""
    real = load_real_sets(dataset, store)
    sizes = sorted({min(s.num_images or settings.num_images, len(real.test)) for s in settings.samplers})
    return {(scorer.name, n): scorer.floor(n) for scorer in scorers(store, real, settings, device) for n in sizes}


def evaluate_model(store: LabStore, name: str, settings: EvaluateSettings, floors: Floors,
                   device: torch.device) -> list[ScoreRow]:
    """Pictures (grid, paths, GIF) and one score row per (sampler setting, embedding) of model ``name``."""
    stored = ModelRegistry(store).load_denoiser(name, device)
    schedule = NoiseSchedule.from_config(stored.run.diffusion).to(device)
    real = load_real_sets(stored.run.data.dataset, store)
    render_pictures(store, name, stored.model, schedule, settings.pictures, settings.seed)
    plans = [plan_sampling(s, schedule.timesteps, settings.num_images, len(real.test)) for s in settings.samplers]
    bar = tqdm_ray.tqdm(desc=f"{name} {', '.join(p.label for p in plans)}", total=sum(map(evaluations, plans)),
                        unit="eval")
    rows = score_model(name, stored.model, stored.card, schedule, plans, scorers(store, real, settings, device, floors),
                       settings.seed, progress=bar.update)
    bar.close()
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


def task_options(resources: dict[str, float]) -> dict[str, float]:
    """Ray task options from a preset's ``resources`` mapping (cpu, gpu)."""
    return {"num_cpus": float(resources.get("cpu", 1)), "num_gpus": float(resources.get("gpu", 0))}


@ray.remote
def floors_task(root: str, dataset: str, settings: EvaluateSettings) -> Floors:
    """``compute_floors`` as a Ray task, on the device Ray gave it."""
    return compute_floors(LabStore(root), dataset, settings, task_device())


@ray.remote
def model_task(root: str, name: str, settings: EvaluateSettings, floors: Floors) -> list[ScoreRow]:
    """``evaluate_model`` as a Ray task, on the threads and device Ray gave it."""
    torch.set_num_threads(max(1, int(settings.resources.get("cpu", 1))))
    return evaluate_model(LabStore(root), name, settings, floors, task_device())


@ray.remote
def robustness_task(root: str, dataset: str, settings: EvaluateSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``robustness_tables`` as a Ray task, on the threads and device Ray gave it."""
    torch.set_num_threads(max(1, int(settings.resources.get("cpu", 1))))
    return robustness_tables(LabStore(root), dataset, settings, task_device())
