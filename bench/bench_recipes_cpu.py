"""Quality per CPU-minute of the training recipes on this machine: v prediction against EDM's, in one run.

Trains the quick preset's ``unet`` on the quick budget (96,000 images; the preset's learning rate,
warm-up and EMA) under each recipe and batch size through the trials' loop, and scores its EMA
model --scores times along the way: FD / floor in a lab's VAE at N = --n, with the SDE solver at 20 steps (the main job's
best setting), and precision and coverage. The x axis is training CPU time: wall seconds of
training alone (the scoring is not counted) times the threads.

    python bench/bench_recipes_cpu.py --lab lab [--recipes v edm ...] [--images 96000] [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from sampling import Scorer  # bench/sampling.py, beside this script

from diffusion.core.config import DiffusionConfig, RunConfig, TrainConfig
from diffusion.core.models import denoiser_config
from diffusion.core.samplers import sample
from diffusion.lab.datasets import load_embedded_mnist
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.store import LabStore

V_MIN_SNR = {"schedule": "cosine", "prediction": "v", "loss_weighting": "min_snr"}  # the quick preset's
RECIPES: dict[str, tuple[dict[str, Any], int]] = {  # name -> (diffusion settings, batch size)
    "v": (V_MIN_SNR, 64),
    "v, batch 32": (V_MIN_SNR, 32),  # the same images in twice the steps
    "v, batch 128": (V_MIN_SNR, 128),  # in half the steps
    "edm": ({"schedule": "cosine", "prediction": "edm"}, 64),  # EDM's preconditioning and its own loss weighting
    "edm, log-normal levels": ({"schedule": "cosine", "prediction": "edm", "noise_levels": "lognormal"}, 64),
}


def curve(recipe: str, images: int, scores: int, scorer: Scorer) -> list[dict[str, Any]]:
    """One recipe's points, ``scores`` of them evenly over ``images`` training images: step, training CPU-minutes,
    FD / floor with its interval, precision, coverage."""
    diffusion, batch = RECIPES[recipe]
    steps = images // batch
    train = TrainConfig(steps=steps, batch_size=batch, lr=2e-3, warmup_steps=50, ema_decay=0.995)
    run = RunConfig(model=denoiser_config("unet"), diffusion=DiffusionConfig(**diffusion), train=train)
    job = build_denoiser_run(run, torch.device("cpu"), load_embedded_mnist("train").images)
    points, trained = [], 0.0
    every = steps // scores
    for until in range(every, steps + 1, every):
        start = time.perf_counter()
        job.trainer.fit(until=until, every=every)
        trained += time.perf_counter() - start
        images = sample(job.trainer.ema.model, job.schedule, scorer.n, "dpmpp2m_sde", 20, 1.0, seed=1)
        score = scorer.lab.score(images, kid=False)
        points.append({"recipe": recipe, "step": until, "cpu_minutes": trained * torch.get_num_threads() / 60,
                       "ratio": score.ratio, "ratio_low": score.ratio_low, "ratio_high": score.ratio_high,
                       "precision": score.precision, "coverage": score.coverage})
        print(f"| {recipe} | {until} | {points[-1]['cpu_minutes']:.1f} | {score.ratio:.2f} [{score.ratio_low:.2f}, "
              f"{score.ratio_high:.2f}] | {score.precision:.2f} | {score.coverage:.2f} |", flush=True)
    return points


def main() -> None:
    """A table row per (recipe, scored step); every number to --out as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", required=True, help="a lab store with a VAE (after make run)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--images", type=int, default=96_000, help="training images of each run (the quick budget)")
    parser.add_argument("--scores", type=int, default=3, help="scored points per run, evenly spaced")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    scorer = Scorer(LabStore(args.lab), args.n, torch.device("cpu"))
    print(f"unet, {args.images:,} training images, {torch.get_num_threads()} threads; FD / floor in the VAE at "
          f"N = {scorer.n}, SDE-20 (eta 1)")
    print("| recipe | step | training CPU-minutes | FD / floor [95%] | precision | coverage |\n|---|---|---|---|---|---|")
    points = [point for recipe in args.recipes for point in curve(recipe, args.images, args.scores, scorer)]
    if args.out:
        args.out.write_text(json.dumps(points, indent=1))


if __name__ == "__main__":
    main()
