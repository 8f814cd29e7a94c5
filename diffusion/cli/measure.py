"""``python -m diffusion train-embedding | score | robustness``: the measuring commands, the evaluation science without Ray.

The Ray jobs run the same functions at scale; these commands reproduce the README's numbers
on one machine.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from tqdm import tqdm

from diffusion.core.config import DataConfig, replace
from diffusion.core.schedules import NoiseSchedule
from diffusion.core.training import Trainer, TrainProgress
from diffusion.embeddings.loading import load_embedder
from diffusion.embeddings.training import train_embedder
from diffusion.lab.datasets import load_real_sets, load_sklearn_digits
from diffusion.lab.kinds import STORED_KINDS
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import ROBUSTNESS, ROBUSTNESS_SUMMARY, SCORES, TableStore
from diffusion.metrics.model_scores import card_metrics, evaluations, plan_sampling, score_model
from diffusion.metrics.robustness import robustness_curve, robustness_summary
from diffusion.metrics.scoring import Scorer


def train_embedding_command(store: LabStore, args: argparse.Namespace, device: torch.device) -> int:
    """Train the VAE or the classifier on the train split and store it under its kind's name."""
    run = STORED_KINDS[args.kind].config_type(data=DataConfig(dataset=args.dataset))
    if args.steps is not None:
        run = replace(run, **{"train.steps": args.steps})
    name = args.name or args.kind
    bar = tqdm(total=run.train.steps, unit="step", desc=f"train {args.kind}", dynamic_ncols=True)

    def on_progress(trainer: Trainer, progress: TrainProgress) -> None:
        bar.update(progress.step - bar.n)
        bar.set_postfix(loss=f"{progress.loss:.4f}", img_s=f"{progress.images_per_s:.0f}")

    metrics = train_embedder(store, name, run, device, on_progress, every=50)
    bar.close()
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k.startswith("test_"))
    print(f"stored {args.kind} as {store.uri(ModelRegistry(store).model_path(name))}: {shown}")
    return 0


def score_command(store: LabStore, args: argparse.Namespace, device: torch.device) -> int:
    """Sample a stored denoiser and print FD (with floor and ratio) and KID in each embedding; record them on its card."""
    models = ModelRegistry(store)
    stored = models.load_denoiser(args.name, device)
    schedule = NoiseSchedule.from_config(stored.run.diffusion).to(device)
    real = load_real_sets(stored.run.data.dataset, store)
    plan = plan_sampling(args.setting, schedule.timesteps, args.num_images, len(real.test))
    scorers = [Scorer(load_embedder(name, store, device), real.test, real.pool, seed=args.seed) for name in args.embeddings]
    with tqdm(total=evaluations(plan), unit="eval", desc=f"sample {args.name} {plan.label}", dynamic_ncols=True) as bar:
        rows = score_model(args.name, stored.model, stored.card, schedule, [plan], scorers, args.seed, bar.update)
    table = pd.DataFrame(rows)
    shown = [SCORES.embedding, SCORES.n, SCORES.fd, SCORES.floor_mean, SCORES.floor_std, SCORES.ratio, SCORES.kid_mean]
    print(table[shown].to_string(index=False))
    models.update_metrics(args.name, card_metrics(rows),
                          expected_sha256=stored.card.weights_sha256)  # never attach a score to weights it did not measure
    return 0


def robustness_command(store: LabStore, args: argparse.Namespace, device: torch.device) -> int:
    """Compute the corruption-robustness curves of every embedding and store them as two tables."""
    real = load_real_sets(args.dataset, store)
    embedders = [load_embedder(name, store, device) for name in args.embeddings]
    start = time.perf_counter()
    curve = robustness_curve(real.test, real.train, embedders, load_sklearn_digits().images, n=args.n, seeds=range(args.seeds))
    summary = robustness_summary(curve)
    tables = TableStore(store)
    tables.write(ROBUSTNESS, curve)
    tables.write(ROBUSTNESS_SUMMARY, summary)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"{len(curve)} rows in {time.perf_counter() - start:.0f} s -> {TableStore(store).location}")
    return 0

