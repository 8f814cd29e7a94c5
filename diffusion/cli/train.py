"""What ``python -m diffusion train`` and ``sample`` do once their arguments are checked."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch
from tqdm import tqdm

from diffusion.core.config import ConfigError, RunConfig, to_dict
from diffusion.core.images import grid_png
from diffusion.core.models import parameter_count
from diffusion.core.samplers import sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.core.training import Trainer, TrainProgress
from diffusion.lab.checkpoint import config_differences, run_state_from_bytes, run_state_to_bytes
from diffusion.lab.pictures import render_pictures
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore


def train_command(run: RunConfig, store: LabStore, name: str, device: torch.device, args: argparse.Namespace) -> int:
    """Train (or resume) one denoiser, export its EMA weights and write its pictures."""
    job = build_denoiser_run(run, device, store=store)
    state_path = store.run_state_path(name)
    config = json.loads(json.dumps(to_dict(run)))  # as the saved state gives it back
    if args.resume:
        job.trainer.load_state(saved_trainer_state(store, name, config))
    elif store.exists(state_path):
        print(f"starting {name} afresh: its earlier resume state ({store.uri(state_path)}) will be replaced",
              file=sys.stderr)
    model = job.trainer.model
    print(
        f"training {run.model.arch} ({parameter_count(model):,} parameters) on {run.data.dataset} "
        f"({job.trainer.num_examples:,} images), {run.train.steps:,} steps of {run.train.batch_size}, "
        f"{device} {job.trainer.precision}, lab {store.root}"
    )
    bar = tqdm(total=run.train.steps, initial=job.trainer.step, unit="step", dynamic_ncols=True)

    def on_progress(trainer: Trainer, progress: TrainProgress) -> None:
        bar.update(progress.step - bar.n)
        bar.set_postfix(loss=f"{progress.loss:.4f}", img_s=f"{progress.images_per_s:.0f}", lr=f"{progress.lr:.1e}")
        if progress.step % args.checkpoint_every == 0 or progress.step == run.train.steps:
            store.write_bytes(state_path, run_state_to_bytes(config, trainer.save_state()))

    every = min(50, args.checkpoint_every)
    final = job.trainer.fit(callback=on_progress, every=every)
    bar.close()
    metrics = {"steps": job.trainer.step, "images_seen": job.trainer.images_seen, "final_loss": final.loss,
               "train_seconds": round(final.elapsed_s, 1), "images_per_s": round(final.images_per_s, 1)}
    models = ModelRegistry(store)
    models.export_model(name, job.ema_model, run, metrics)
    files = render_pictures(store, name, job.ema_model, job.schedule, args.setting, run.train.seed)
    print(f"exported {store.uri(models.model_path(name))}: grid {store.uri(files['grid'])}")
    return 0


def saved_trainer_state(store: LabStore, name: str, config: dict[str, Any]) -> bytes:
    """The trainer state saved under ``name``, if the run that saved it had ``config``; ConfigError naming the differences."""
    state_path = store.run_state_path(name)
    if not store.exists(state_path):
        raise ConfigError(f"--resume: no saved run named {name!r} in {store.root}")
    saved, trainer_state = run_state_from_bytes(store.read_bytes(state_path), store.uri(state_path))
    differences = config_differences(saved, config)
    if differences:
        raise ConfigError(f"--resume: the flags differ from the saved run's config ({store.uri(state_path)}): "
                          f"{'; '.join(differences)}; give the saved run's flags, or start afresh without --resume")
    return trainer_state


def sample_command(store: LabStore, args: argparse.Namespace, device: torch.device) -> int:
    """Load an exported model and write a grid of fresh samples."""
    stored = ModelRegistry(store).load_denoiser(args.name, device)
    schedule = NoiseSchedule.from_config(stored.run.diffusion).to(device)
    with tqdm(unit="img-step", dynamic_ncols=True) as bar:
        images = sample(stored.model, schedule, args.num_images, args.setting.resolve(schedule.timesteps), args.seed,
                        progress=bar.update)
    with open(args.out, "wb") as handle:
        handle.write(grid_png(images))
    print(f"wrote {args.num_images} samples of {args.name} to {args.out}")
    return 0
