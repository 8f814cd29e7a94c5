"""Quality per compute, the training recipes and the samplers, in one run (fast on a GPU, runs anywhere).

1. Train the evaluation VAE with the lab's default recipe.
2. Train the ``unet`` under each recipe (what the network predicts, loss weighting, schedule),
   scoring FD / floor in the VAE embedding at N = --n (DDIM-20) every --eval-every steps: the
   quality-per-compute curves.
3. The best recipe again, as complete runs of each budget in --budgets (the learning rate
   decays over the run's own length, as in a sweep trial).
4. The best complete run's EMA model sampled with DDPM over all T levels, DDIM and
   DPM-Solver++(2M) at several step counts, and diffusers' DDIMScheduler (the reference
   implementation) at DDIM's step counts: FD / floor at N = --n and images/s on this device.

    python bench/quality_study.py --out study/ [--steps 4000] [--device auto]
    python bench/quality_study.py --replot study/study.json --before-img-per-s A --after-img-per-s B --out curve.png

Writes study.json (every number) and lab.tar (the VAE and the best unet, to score or serve
elsewhere) to --out. ``--replot`` draws FD / floor against training minutes on the 2-core CPU:
images seen / the unet's bf16 training img/s there, before and after the speed work, both
measured in one run by bench/bench_denoisers.py.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib
import torch
from sampling import Scorer, Setting, figures, ours, sampler_rows  # bench/sampling.py, beside this script

from diffusion.core.config import DiffusionConfig, RunConfig, TrainConfig, VAERun
from diffusion.core.device import pick_device
from diffusion.core.models import denoiser_config
from diffusion.core.samplers import SamplerSetting
from diffusion.embeddings.training import train_embedder
from diffusion.lab.datasets import load_real_sets
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.metrics.model_scores import plan_sampling, sample_and_score

RECIPES: dict[str, dict[str, Any]] = {
    "eps, linear": {"schedule": "linear", "prediction": "eps"},
    "eps, cosine": {"schedule": "cosine", "prediction": "eps"},
    "eps, linear, min-SNR": {"schedule": "linear", "prediction": "eps", "loss_weighting": "min_snr"},
    "v, cosine": {"schedule": "cosine", "prediction": "v"},
    "v, cosine, min-SNR": {"schedule": "cosine", "prediction": "v", "loss_weighting": "min_snr"},
}
SAMPLER_GRID = [ours("ddpm"), *[ours("ddim", s) for s in (10, 20, 50, 100)], *[ours("dpmpp2m", s) for s in (10, 20, 50)],
                *[Setting(SamplerSetting("ddim", s), implementation="diffusers") for s in (10, 20, 50, 100)]]
FD_SETTING = SamplerSetting("ddim", 20)
"""How the training curves sample their FD."""


def unet_run(recipe: dict[str, Any], steps: int, lr: float) -> RunConfig:
    """The quick preset's unet with one recipe's diffusion settings and ``steps`` of training."""
    return RunConfig(model=denoiser_config("unet"), diffusion=DiffusionConfig(**recipe),
                     train=TrainConfig(steps=steps, batch_size=128, lr=lr, warmup_steps=50, ema_decay=0.995))


def train_curve(run: RunConfig, data: torch.Tensor, scorer: Scorer, every: int, device: torch.device) -> tuple[list[dict[str, float]], Any]:
    """Train ``run``; FD / floor of the EMA model (DDIM-20) every ``every`` steps and at the end."""
    job = build_denoiser_run(run, device, data)
    points = []

    def score(trainer: Any, progress: Any) -> None:
        planned = plan_sampling(FD_SETTING, job.schedule.timesteps, scorer.n, scorer.n)
        [found], _seconds = sample_and_score(trainer.ema.model, job.schedule, planned, [scorer.lab], kid=False)
        points.append({"step": progress.step, "images": progress.images_seen, **figures(found)})
        print(f"    step {progress.step:5d}: FD/floor {points[-1]['ratio']:.2f}", flush=True)

    job.trainer.fit(callback=score, every=every)  # also called at the last step
    return points, job


def sampler_table(job: Any, scorer: Scorer, device: torch.device, batch: int) -> list[dict[str, Any]]:
    """Every setting of SAMPLER_GRID on ``job``'s EMA model."""
    diffusion = job.run.diffusion
    return sampler_rows(job.ema_model, job.schedule, diffusion.schedule, diffusion.prediction, SAMPLER_GRID, scorer, batch, device)


def plot(study: dict[str, Any], before_img_per_s: float, after_img_per_s: float, path: Path) -> None:
    """FD / floor against training minutes on the 2-core CPU: every recipe at the old loop's speed,
    the best recipe again at the new loop's speed (the curve after the speed work)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def minutes(points: list[dict[str, float]], rate: float) -> list[float]:
        return [p["images"] / rate / 60 for p in points]

    figure, axes = plt.subplots(figsize=(9.5, 5.5))
    for name, points in study["curves"].items():
        axes.plot(minutes(points, before_img_per_s), [p["ratio"] for p in points], marker="o", markersize=3, linewidth=1,
                  alpha=0.7, label=f"{name} (before: {before_img_per_s:.0f} img/s)")
    best = study["best_recipe"]
    axes.plot(minutes(study["curves"][best], after_img_per_s), [p["ratio"] for p in study["curves"][best]], color="black",
              linewidth=2.5, label=f"{best}, after the speed work ({after_img_per_s:.0f} img/s)")
    axes.scatter(minutes(study["budgets"], after_img_per_s), [b["ratio"] for b in study["budgets"]], marker="D", s=60,
                 color="black", zorder=5, label=f"{best}, complete runs (lr decayed over the run)")
    axes.axhline(3, linestyle="--", color="grey", label="goal: 3x the floor")
    axes.set(xlabel="training minutes on the 2-core CPU (images seen / measured bf16 img/s)", ylabel="FD / real-vs-real floor",
             yscale="log", title=f"unet: FD / floor (VAE embedding, N = {study['floor']['n']}, DDIM-20) per CPU minute")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a folder; with --replot, the PNG to write")
    parser.add_argument("--replot", type=Path, default=None, help="only draw the curves of this study.json")
    parser.add_argument("--before-img-per-s", type=float, default=None, help="--replot: the unet's CPU bf16 img/s before")
    parser.add_argument("--after-img-per-s", type=float, default=None, help="--replot: the same after the speed work")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=4000, help="training steps of each recipe's curve")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--budgets", type=int, nargs="+", default=[700, 1400, 2800], help="complete runs of the best recipe")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--n", type=int, default=1000, help="samples per FD (and N of the floor)")
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=1000, help="sampling batch")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), help=f"a subset of {list(RECIPES)}")
    args = parser.parse_args()
    if args.replot:
        if not (args.before_img_per_s and args.after_img_per_s):
            parser.error("--replot needs --before-img-per-s and --after-img-per-s (bench/bench_denoisers.py measures both)")
        plot(json.loads(args.replot.read_text()), args.before_img_per_s, args.after_img_per_s, args.out)
        return
    device = pick_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lab_dir = Path(tempfile.mkdtemp(prefix="study-lab-"))
    store = LabStore(lab_dir)
    vae = VAERun()
    train_embedder(store, "vae", replace(vae, train=replace(vae.train, steps=args.vae_steps)), device)
    scorer = Scorer(store, args.n, device)
    print(f"[study] {device}; floor at N = {scorer.n}: {scorer.floor.mean:.3f} +- {scorer.floor.std:.3f}", flush=True)
    data = load_real_sets("mnist-embedded").train

    curves = {}
    for name in args.recipes:
        print(f"[study] recipe {name}", flush=True)
        curves[name], _ = train_curve(unet_run(RECIPES[name], args.steps, args.lr), data, scorer, args.eval_every, device)
    best = min(curves, key=lambda n: min(p["ratio"] for p in curves[n]))
    print(f"[study] best recipe: {best}", flush=True)
    budgets, jobs = [], []
    for steps in args.budgets:
        points, job = train_curve(unet_run(RECIPES[best], steps, args.lr), data, scorer, steps, device)
        budgets.append(points[-1])
        jobs.append(job)
    best_index = min(range(len(budgets)), key=lambda i: budgets[i]["ratio"])
    job, best_budget = jobs[best_index], args.budgets[best_index]
    print(f"[study] samplers on the {best_budget}-step run of {best}", flush=True)
    samplers = sampler_table(job, scorer, device, args.batch)

    ModelRegistry(store).export_model("unet", job.ema_model, job.run, {"study_recipe": best, "study_steps": best_budget})
    with tarfile.open(args.out / "lab.tar", "w") as tar:
        tar.add(lab_dir / "models", arcname="models")
    floor = {"n": scorer.floor.n, "mean": scorer.floor.mean, "std": scorer.floor.std}
    result = {"device": str(device), "torch": torch.__version__, "floor": floor, "args": {k: str(v) for k, v in vars(args).items()},
              "curves": curves, "best_recipe": best, "budgets": budgets, "samplers": samplers,
              "seconds": time.perf_counter() - started}
    (args.out / "study.json").write_text(json.dumps(result, indent=1))
    print(f"[study] done in {result['seconds']:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
