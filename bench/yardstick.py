"""How the evaluation VAE is chosen, measured: the preset's VAE sweep against the VAE of fixed default settings.

    python bench/yardstick.py --preset quick            # about 10 minutes on 2 cores

Runs the embeddings' Tune experiment of the preset for the VAE only (``jobs.sweep.sweep_embeddings``: each
trial trains on the fit part of the training split, reports its held-out -ELBO on the validation
part, and the lowest is exported), trains the VAE of fixed default settings (``VAERun()``) on the
same fit split, and prints, for both: the validation -ELBO, and the corruption-robustness
summary of their FD on real digits (floor, monotonicity, detection threshold, FD / floor at full
severity). The test digits are the FD's reference set and never choose anything.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd
import torch

from diffusion.core.config import DataConfig, VAERun
from diffusion.embeddings import model_embedder
from diffusion.embeddings.training import train_embedder, validation_metrics
from diffusion.lab.datasets import load_real_sets, load_sklearn_digits, selection_splits
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import EMBEDDING_HISTORY, TableStore
from diffusion.lab.tables import EMBEDDING_TRIALS as T
from diffusion.lab.tables import ROBUSTNESS_SUMMARY as S
from diffusion.metrics.robustness import robustness_curve, robustness_summary
from jobs.presets import load_preset
from jobs.ray_session import start_ray
from jobs.sweep import sweep_embeddings

FIXED = "vae-fixed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--lab", default=None, help="lab store (default: a new temporary folder)")
    parser.add_argument("--n", type=int, default=1000, help="images per FD of the robustness curves")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    preset = load_preset(args.preset)
    store = LabStore(args.lab or tempfile.mkdtemp(prefix="yardstick-"))
    start_ray()
    started = time.perf_counter()
    sweep_embeddings(store, preset, "yardstick", retrain=True, kinds=["vae"])
    swept = time.perf_counter() - started
    torch.set_num_threads(2)
    started = time.perf_counter()
    fixed_run = VAERun(data=DataConfig(dataset=preset.dataset))
    train_embedder(store, FIXED, fixed_run, torch.device("cpu"))
    fixed_seconds = time.perf_counter() - started

    trials = TableStore(store).read(T)
    trials = trials[trials[T.kind] == "vae"]
    print(f"\nVAE sweep of the {preset.name} preset: {len(trials)} trials in {swept:.0f} s "
          f"(the fixed-settings VAE alone: {fixed_seconds:.0f} s)")
    columns = [T.trial_id, T.is_best, *[c for c in trials if c.startswith(T.prefixes)], T.best_val_loss,
               T.best_step, T.status, T.time_total_s]
    print(trials[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    registry, splits = ModelRegistry(store), selection_splits(DataConfig(dataset=preset.dataset), store)
    embedders, validation = [], {}
    for name, label in (("vae", "chosen"), (FIXED, "fixed")):
        loaded = registry.load_model(name, "cpu", kind="vae")
        validation[label] = validation_metrics("vae", loaded.model, splits.validation)[EMBEDDING_HISTORY.val_neg_elbo]
        embedders.append(model_embedder(f"vae ({label}, latent {loaded.run.model.latent_dim})", loaded.model))
    real = load_real_sets(preset.dataset, store)
    n = min(args.n, len(real.test))
    summary = robustness_summary(robustness_curve(real.test, real.train, embedders, load_sklearn_digits().images, n=n,
                                                  seeds=range(args.seeds)))
    print("\nvalidation -ELBO (nats/image): " + ", ".join(f"{k} {v:.2f}" for k, v in validation.items()))
    print(f"robustness of the FD on real digits (N = {n}, {args.seeds} seeds):")
    table = summary.pivot(index=S.corruption, columns=S.embedding,
                          values=[S.floor_mean, S.monotonicity, S.detection_threshold, S.max_ratio])
    with pd.option_context("display.width", 200):
        print(table.to_string(float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
