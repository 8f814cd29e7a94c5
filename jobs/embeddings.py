"""Train the evaluation embeddings (VAE, classifier) as Ray tasks when the lab store lacks them."""

from __future__ import annotations

from typing import Any

import ray
import torch

from diffusion.core.config import ClassifierRun, DataConfig, TrainConfig, VAERun, to_dict
from diffusion.embeddings.training import EMBEDDER_RUNS, train_embedder
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from jobs.ray_session import task_device


def task_options(resources: dict[str, float]) -> dict[str, float]:
    """Ray task options from a preset's ``resources`` mapping (cpu, gpu)."""
    return {"num_cpus": float(resources.get("cpu", 1)), "num_gpus": float(resources.get("gpu", 0))}


def ensure_embeddings(store: LabStore, dataset: str, overrides: dict[str, dict[str, Any]], stage: str,
                      resources: dict[str, float] | None = None) -> None:
    """Train the VAE and the classifier (in parallel, as Ray tasks with ``resources`` each) unless the lab store has them.

    ``overrides`` maps a kind to TrainConfig fields (a preset's ``embeddings`` section).
    """
    options = task_options(resources or {"cpu": 1, "gpu": 0})
    pending = []
    for kind, run_type in EMBEDDER_RUNS.items():
        if kind in ModelRegistry(store).list_models(kind=kind):
            print(f"[{stage}] embedding {kind}: found in {store.root}", flush=True)
            continue
        defaults = to_dict(run_type().train) | dict(overrides.get(kind, {}) or {})
        run = run_type(train=TrainConfig(**defaults), data=DataConfig(dataset=dataset))
        print(f"[{stage}] embedding {kind}: training {run.train.steps} steps", flush=True)
        pending.append(_train_embedding_task.options(**options).remote(store.root, kind, run))
    for metrics in ray.get(pending):
        print(f"[{stage}] embedding stored: {metrics}", flush=True)


@ray.remote
def _train_embedding_task(root: str, kind: str, run: VAERun | ClassifierRun) -> dict[str, Any]:
    device = task_device()
    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    metrics = train_embedder(LabStore(root), kind, run, device)
    return {"kind": kind, "device": str(device), **{k: v for k, v in metrics.items() if k.startswith("test_")}}
