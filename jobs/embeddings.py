"""Train the evaluation embeddings (VAE, classifier) as Ray tasks when the lab store lacks them."""

from __future__ import annotations

from typing import Any

import ray

from diffusion.config import ClassifierRun, DataConfig, TrainConfig, VAERun, to_dict
from diffusion.device import pick_device
from diffusion.embeddings.training import EMBEDDER_RUNS, train_embedder
from diffusion.store import LabStore


def ensure_embeddings(store: LabStore, dataset: str, overrides: dict[str, dict[str, Any]], stage: str) -> None:
    """Train the VAE and the classifier (in parallel, as Ray tasks) unless the lab store has them.

    ``overrides`` maps a kind to TrainConfig fields (a preset's ``embeddings`` section).
    """
    pending = []
    for kind, run_type in EMBEDDER_RUNS.items():
        if kind in store.list_models(kind=kind):
            print(f"[{stage}] embedding {kind}: found in {store.root}", flush=True)
            continue
        defaults = to_dict(run_type().train) | dict(overrides.get(kind, {}) or {})
        run = run_type(train=TrainConfig(**defaults), data=DataConfig(dataset=dataset))
        print(f"[{stage}] embedding {kind}: training {run.train.steps} steps", flush=True)
        pending.append(_train_embedding_task.remote(store.root, kind, run))
    for metrics in ray.get(pending):
        print(f"[{stage}] embedding stored: {metrics}", flush=True)


@ray.remote(num_cpus=1)
def _train_embedding_task(root: str, kind: str, run: VAERun | ClassifierRun) -> dict[str, Any]:
    metrics = train_embedder(LabStore(root), kind, run, pick_device("auto"))
    return {"kind": kind, **{k: v for k, v in metrics.items() if k.startswith("test_")}}
