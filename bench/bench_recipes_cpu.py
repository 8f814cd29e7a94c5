"""Quality per CPU-minute of training recipes on this machine, side by side in one run.

Trains a denoiser (the ``unet`` unless a recipe names another) under each recipe through the
trials' loop, and scores its EMA model --scores times along the way: FD / floor in a lab's VAE at
N = --n with the SDE solver at 20 steps (the main job's best setting), precision and coverage.
``--emas`` keeps further EMAs of the same run beside the recipe's own, scored at the end, so one
run compares EMA decays (the trained weights are the same; only the average differs). The x axis
is training CPU time: wall seconds of training alone (the scoring is not counted) times the threads.

    python bench/bench_recipes_cpu.py --lab lab [--recipes v "v, lr 4e-3" ...] [--images 96000] [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sampling import Scorer  # bench/sampling.py, beside this script
from torch import nn

from diffusion.core.config import DiffusionConfig, RunConfig, TrainConfig
from diffusion.core.ema import EMA
from diffusion.core.models import denoiser_config
from diffusion.core.samplers import SamplerSetting
from diffusion.lab.datasets import load_embedded_mnist
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.store import LabStore
from diffusion.metrics.model_scores import plan_sampling, sample_and_score


@dataclass(frozen=True)
class Recipe:
    """One recipe: the network and its size, the diffusion settings and the training keys beside the quick ones."""

    arch: str = "unet"
    model: dict[str, Any] = field(default_factory=dict)
    diffusion: dict[str, Any] = field(default_factory=lambda: dict(V_MIN_SNR))
    train: dict[str, Any] = field(default_factory=dict)


SDE_20 = SamplerSetting("dpmpp2m_sde", 20)
"""The main job's evaluation setting (eta 1, the sampler's own)."""
V_MIN_SNR = {"schedule": "cosine", "prediction": "v", "loss_weighting": "min_snr"}  # the quick preset's
QUICK_TRAIN = {"batch_size": 64, "lr": 2e-3, "warmup_steps": 50, "ema_decay": 0.995}  # the quick preset's
RECIPES: dict[str, Recipe] = {
    "v": Recipe(),
    "v, batch 32": Recipe(train={"batch_size": 32}),  # the same images in twice the steps
    "v, batch 128": Recipe(train={"batch_size": 128}),  # in half the steps
    "v, lr 4e-3": Recipe(train={"lr": 4e-3}),
    "v, batch 128, lr 4e-3": Recipe(train={"batch_size": 128, "lr": 4e-3}),
    "v, width 24": Recipe(model={"width": 24}),
    "v, width 48": Recipe(model={"width": 48}),
    "v, width 16": Recipe(model={"width": 16}),
    "v, lr 1e-3": Recipe(train={"lr": 1e-3}),
    "v, width 24, lr 1e-3": Recipe(model={"width": 24}, train={"lr": 1e-3}),
    "v, width 24, batch 128": Recipe(model={"width": 24}, train={"batch_size": 128}),
    "v, lr to 0": Recipe(train={"min_lr_ratio": 0.0}),
    "eps, cosine": Recipe(diffusion={"schedule": "cosine"}),
    "edm": Recipe(diffusion={"schedule": "cosine", "prediction": "edm"}),  # EDM's preconditioning, its own weighting
    "edm, log-normal levels": Recipe(diffusion={"schedule": "cosine", "prediction": "edm", "noise_levels": "lognormal"}),
    "resunet": Recipe(arch="resunet", model={"width": 24, "depth": 1}),  # the quick preset's sizes
    "attnunet": Recipe(arch="attnunet", model={"width": 24, "depth": 1}),
    "cnn, width 32": Recipe(arch="cnn", model={"width": 32}),
    "cnn, width 24": Recipe(arch="cnn", model={"width": 24}),
    "cnn, width 16": Recipe(arch="cnn", model={"width": 16}),
    "resunet, width 16": Recipe(arch="resunet", model={"width": 16, "depth": 1}),
    "attnunet, width 16": Recipe(arch="attnunet", model={"width": 16, "depth": 1}),
}


def run_of(recipe: Recipe, images: int) -> RunConfig:
    """The run a recipe trains on ``images`` training images."""
    train = {**QUICK_TRAIN, **recipe.train}
    steps = images // train["batch_size"]
    return RunConfig(model=denoiser_config(recipe.arch, **recipe.model), diffusion=DiffusionConfig(**recipe.diffusion),
                     train=TrainConfig(steps=steps, **train))


def score_row(name: str, model: nn.Module, job: Any, scorer: Scorer) -> dict[str, Any]:
    """FD / floor, its interval, precision and coverage of ``model``'s SDE-20 samples."""
    planned = plan_sampling(SDE_20, job.schedule.timesteps, scorer.n, scorer.n)
    [score], _seconds = sample_and_score(model, job.schedule, planned, [scorer.lab], seed=1, kid=False)
    return {"recipe": name, "ratio": score.ratio, "ratio_low": score.ratio_low, "ratio_high": score.ratio_high,
            "precision": score.precision, "coverage": score.coverage}


def curve(name: str, images: int, scores: int, scorer: Scorer, emas: list[float]) -> list[dict[str, Any]]:
    """One recipe's points, ``scores`` of them evenly over ``images`` training images, then its extra EMAs at the end."""
    run = run_of(RECIPES[name], images)
    job = build_denoiser_run(run, torch.device("cpu"), load_embedded_mnist("train").images)
    trainer = job.trainer
    extra = {decay: EMA(trainer.model, decay) for decay in emas if decay != run.train.ema_decay}
    points, trained = [], 0.0
    steps = run.train.steps
    every = steps // scores

    def track(_trainer: Any, _progress: Any) -> None:
        for ema in extra.values():
            ema.update(trainer.model)

    for until in [*range(every, steps, every), steps][:scores]:
        start = time.perf_counter()
        # the extra EMAs move once per step: a callback every step keeps the loop the trials run otherwise
        trainer.fit(until=until, every=1 if extra else every, callback=track if extra else None)
        trained += time.perf_counter() - start
        point = score_row(name, trainer.ema.model, job, scorer)
        points.append({**point, "step": until, "ema": run.train.ema_decay,
                       "cpu_minutes": trained * torch.get_num_threads() / 60})
        print_row(points[-1])
    for decay, ema in extra.items():
        points.append({**score_row(name, ema.model, job, scorer), "step": steps, "ema": decay,
                       "cpu_minutes": points[-1]["cpu_minutes"]})
        print_row(points[-1])
    return points


def print_row(point: dict[str, Any]) -> None:
    print(f"| {point['recipe']} | {point['ema']} | {point['step']} | {point['cpu_minutes']:.1f} | {point['ratio']:.2f} "
          f"[{point['ratio_low']:.2f}, {point['ratio_high']:.2f}] | {point['precision']:.2f} | {point['coverage']:.2f} |",
          flush=True)


def main() -> None:
    """A table row per (recipe, scored step, EMA); every number to --out as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", required=True, help="a lab store with a VAE (after make run)")
    parser.add_argument("--recipes", nargs="+", default=["v"], choices=list(RECIPES))
    parser.add_argument("--images", type=int, default=96_000, help="training images of each run (the quick budget)")
    parser.add_argument("--scores", type=int, default=3, help="scored points per run, evenly spaced")
    parser.add_argument("--emas", type=float, nargs="*", default=[], help="further EMA decays scored at the end")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    scorer = Scorer(LabStore(args.lab), args.n, torch.device("cpu"))
    print(f"{args.images:,} training images, {torch.get_num_threads()} threads; FD / floor in the VAE at "
          f"N = {scorer.n}, SDE-20 (eta 1)")
    print("| recipe | EMA | step | training CPU-minutes | FD / floor [95%] | precision | coverage |\n"
          "|---|---|---|---|---|---|---|")
    points = []
    for recipe in args.recipes:
        points += curve(recipe, args.images, args.scores, scorer, args.emas)
        if args.out:  # after every recipe: a long run interrupted keeps what it measured
            args.out.write_text(json.dumps(points, indent=1))


if __name__ == "__main__":
    main()
