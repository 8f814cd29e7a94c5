"""Quality per compute, the training recipes and the samplers, in one run (fast on a GPU, runs anywhere).

1. Train the evaluation VAE with the lab's default recipe.
2. Train the ``unet`` under each recipe (what the network predicts, loss weighting, schedule),
   scoring FD / floor in the VAE embedding at N = --n (DDIM-20) every --eval-every steps: the
   quality-per-compute curves. CPU minutes on the x axis are images seen / --cpu-img-per-s, the
   2-core machine's measured training speed for this network (bench/bench_denoisers.py).
3. The best recipe again, as complete runs of each budget in --budgets (the learning rate
   decays over the run's own length, as in a sweep trial).
4. The best complete run's EMA model sampled with DDPM over all T levels, DDIM and
   DPM-Solver++(2M) at several step counts, and diffusers' DDIMScheduler (the reference
   implementation) at DDIM's step counts: FD / floor at N = --n and images/s on this device.

    python bench/quality_study.py --out study/ [--steps 4000] [--device auto]

Writes study.json (every number), quality_per_compute.png and lab.tar (the VAE and the best
unet, to score or serve elsewhere) to --out.
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

from diffusion.config import DiffusionConfig, RunConfig, TrainConfig, VAERun
from diffusion.data import load_real_sets
from diffusion.device import pick_device
from diffusion.embeddings.loading import load_embedder
from diffusion.embeddings.training import train_embedder
from diffusion.metrics.frechet import frechet_distance
from diffusion.metrics.scoring import real_floor
from diffusion.models import denoiser_config
from diffusion.recipe import build_denoiser_run
from diffusion.samplers import sample
from diffusion.store import LabStore
from reference import DiffusersDDIM  # bench/reference.py, beside this script

RECIPES: dict[str, dict[str, Any]] = {
    "eps, linear": {"schedule": "linear", "prediction": "eps"},
    "eps, cosine": {"schedule": "cosine", "prediction": "eps"},
    "eps, linear, min-SNR": {"schedule": "linear", "prediction": "eps", "loss_weighting": "min_snr"},
    "v, cosine": {"schedule": "cosine", "prediction": "v"},
    "v, cosine, min-SNR": {"schedule": "cosine", "prediction": "v", "loss_weighting": "min_snr"},
}
SAMPLER_GRID = [("ddpm", None), *[("ddim", s) for s in (10, 20, 50, 100)], *[("dpmpp2m", s) for s in (10, 20, 50)]]
DIFFUSERS_STEPS = (10, 20, 50, 100)


def unet_run(recipe: dict[str, Any], steps: int, lr: float) -> RunConfig:
    """The quick preset's unet with one recipe's diffusion settings and ``steps`` of training."""
    return RunConfig(model=denoiser_config("unet"), diffusion=DiffusionConfig(**recipe),
                     train=TrainConfig(steps=steps, batch_size=128, lr=lr, warmup_steps=50, ema_decay=0.995))


class Scorer:
    """FD / floor at N in the VAE embedding against the held-out digits, floor computed once."""

    def __init__(self, store: LabStore, n: int, device: torch.device) -> None:
        real = load_real_sets("mnist-embedded")
        self.embedder = load_embedder("vae", store, device)
        self.n = min(n, len(real.test))
        self.test_stats = self.embedder.stats(real.test[: self.n])
        self.floor = real_floor(real.pool, self.embedder, self.n, draws=5)

    def __call__(self, images: torch.Tensor) -> dict[str, float]:
        fd = frechet_distance(self.embedder.stats(images[: self.n]), self.test_stats).fd
        return {"fd": fd, "ratio": self.floor.ratio(fd)}


def train_curve(run: RunConfig, data: torch.Tensor, scorer: Scorer, every: int, device: torch.device,
                cpu_img_per_s: float) -> tuple[list[dict[str, float]], Any]:
    """Train ``run``; FD / floor of the EMA model (DDIM-20) every ``every`` steps and at the end."""
    job = build_denoiser_run(run, device, data)
    points = []

    def score(trainer: Any, progress: Any) -> None:
        images = sample(trainer.ema.model, job.schedule, scorer.n, "ddim", 20, seed=0)
        points.append({"step": progress.step, "images": progress.images_seen,
                       "cpu_minutes": progress.images_seen / cpu_img_per_s / 60, **scorer(images)})
        print(f"    step {progress.step:5d}: FD/floor {points[-1]['ratio']:.2f}", flush=True)

    job.trainer.fit(callback=score, every=every)  # also called at the last step
    return points, job


def timed(fn: Any, device: torch.device) -> tuple[Any, float]:
    """(fn(), seconds), with the device synchronised around it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return value, time.perf_counter() - start


def sampler_table(job: Any, scorer: Scorer, device: torch.device, batch: int) -> list[dict[str, Any]]:
    """FD / floor and images/s of every sampler setting (and diffusers' DDIM) on ``job``'s EMA model."""
    model, schedule, run = job.ema_model, job.schedule, job.run
    rows = []
    sample(model, schedule, 8, "ddim", 2)  # warm-up
    for name, steps in SAMPLER_GRID:
        images, seconds = timed(lambda: sample(model, schedule, scorer.n, name, steps, seed=1, batch_size=batch), device)
        rows.append({"implementation": "ours", "sampler": name, "steps": steps or schedule.timesteps,
                     "images_per_s": scorer.n / seconds, **scorer(images)})
        print(f"  {name}-{steps or 'T'}: FD/floor {rows[-1]['ratio']:.2f}, {rows[-1]['images_per_s']:.0f} img/s", flush=True)
    reference = DiffusersDDIM(run.diffusion.schedule, run.diffusion.prediction, schedule.timesteps)
    for steps in DIFFUSERS_STEPS:
        images, seconds = timed(lambda: reference.sample(model, scorer.n, steps, seed=1, batch_size=batch), device)
        rows.append({"implementation": "diffusers DDIMScheduler", "sampler": "ddim", "steps": steps,
                     "images_per_s": scorer.n / seconds, **scorer(images)})
        print(f"  diffusers ddim-{steps}: FD/floor {rows[-1]['ratio']:.2f}, {rows[-1]['images_per_s']:.0f} img/s", flush=True)
    return rows


def plot(curves: dict[str, list[dict[str, float]]], budgets: list[dict[str, float]], floor_n: int, path: Path) -> None:
    """FD / floor against CPU minutes: one line per recipe, the complete runs as markers."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5.5))
    for name, points in curves.items():
        axes.plot([p["cpu_minutes"] for p in points], [p["ratio"] for p in points], marker="o", markersize=3, label=name)
    axes.scatter([b["cpu_minutes"] for b in budgets], [b["ratio"] for b in budgets], marker="D", s=60, color="black",
                 zorder=5, label="best recipe, complete runs")
    axes.axhline(3, linestyle="--", color="grey", label="goal: 3x the floor")
    axes.set(xlabel="training minutes on the 2-core CPU (images seen / measured img/s)", ylabel="FD / real-vs-real floor",
             yscale="log", title=f"unet: FD / floor (VAE embedding, N = {floor_n}, DDIM-20) per CPU minute of training")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=4000, help="training steps of each recipe's curve")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--budgets", type=int, nargs="+", default=[700, 1400, 2800], help="complete runs of the best recipe")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--n", type=int, default=1000, help="samples per FD (and N of the floor)")
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=1000, help="sampling batch")
    parser.add_argument("--cpu-img-per-s", type=float, default=278.0, help="unet training img/s on the 2-core CPU (bf16)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), help=f"a subset of {list(RECIPES)}")
    args = parser.parse_args()
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
        curves[name], _ = train_curve(unet_run(RECIPES[name], args.steps, args.lr), data, scorer, args.eval_every, device,
                                      args.cpu_img_per_s)
    best = min(curves, key=lambda n: min(p["ratio"] for p in curves[n]))
    print(f"[study] best recipe: {best}", flush=True)
    budgets, jobs = [], {}
    for steps in args.budgets:
        points, jobs[steps] = train_curve(unet_run(RECIPES[best], steps, args.lr), data, scorer, steps, device, args.cpu_img_per_s)
        budgets.append(points[-1])
    best_budget = min(args.budgets, key=lambda s: next(b["ratio"] for b in budgets if b["step"] == s))
    job = jobs[best_budget]
    print(f"[study] samplers on the {best_budget}-step run of {best}", flush=True)
    samplers = sampler_table(job, scorer, device, args.batch)

    store.export_model("unet", job.ema_model, job.run, {"study_recipe": best, "study_steps": best_budget})
    with tarfile.open(args.out / "lab.tar", "w") as tar:
        tar.add(lab_dir / "models", arcname="models")
    floor = {"n": scorer.floor.n, "mean": scorer.floor.mean, "std": scorer.floor.std}
    result = {"device": str(device), "torch": torch.__version__, "floor": floor, "args": {k: str(v) for k, v in vars(args).items()},
              "curves": curves, "best_recipe": best, "budgets": budgets, "samplers": samplers,
              "seconds": time.perf_counter() - started}
    (args.out / "study.json").write_text(json.dumps(result, indent=1))
    plot(curves, budgets, scorer.n, args.out / "quality_per_compute.png")
    print(f"[study] done in {result['seconds']:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
