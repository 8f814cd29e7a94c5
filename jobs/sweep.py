"""``python -m jobs.sweep``: train the evaluation embeddings if missing, then sweep the denoisers with Ray Tune.

Each model gets its own Tune experiment (``<lab>/tune/sweep-<model>``) over its search space
from the preset, with ASHA stopping poor trials early on the FD (VAE) they report. At the end
the best trial of each model is exported to the lab store (EMA weights, config, metrics), and
the trials table and the per-report history are written for the dashboard.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from diffusion.config import ConfigError
from diffusion.device import pick_device
from diffusion.models import DENOISERS
from diffusion.recipe import build_denoiser_run
from diffusion.store import LabStore, LabStoreError, default_lab
from jobs.embeddings import ensure_embeddings
from jobs.presets import Preset, load_preset, param_space, run_config
from jobs.ray_session import start_ray
from jobs.trainable import STATE_FILE, train_denoiser_trial

ASHA_MAX_IMAGES = 10**10  # trials end at their own step count; ASHA only needs rungs above the grace period
# Tune saves the experiment state (which checkpoint each trial is at) every 10+ s by default; a
# driver killed in between restarts those trials from scratch on --resume. Every 2 s is cheap here.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
# Trials report the loss often and the FD every few thousand images; ASHA skips the reports
# without FD, but Tune's strict check would reject them as missing the scheduler's metric.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
CHECKPOINTS_KEPT = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sweep's flags (``jobs.pipeline`` takes the same)."""
    parser.add_argument("--preset", default="quick", help="smoke, quick, full, or a path to a preset .yaml")
    parser.add_argument("--models", nargs="+", default=None, help=f"a subset of: {', '.join(DENOISERS)}")
    parser.add_argument("--lab", default=default_lab(), help="lab store root: a path or a URI (default $DIFFUSION_LAB, else ./lab)")
    parser.add_argument("--num-samples", type=int, default=None, help="trials per model (default: the preset's)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: the preset's)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep (Tuner.restore)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The sweep's flags."""
    parser = argparse.ArgumentParser(prog="python -m jobs.sweep", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return parser.parse_args(argv)


def check_inputs(args: argparse.Namespace) -> SweepRequest:
    """Everything a sweep needs, checked before any trial starts."""
    preset = load_preset(args.preset)
    models = args.models or list(preset.models)
    unknown = [m for m in models if m not in DENOISERS]
    if unknown:
        raise ConfigError(f"--models: unknown {unknown}; accepted: {', '.join(DENOISERS)}")
    missing = [m for m in models if m not in preset.models]
    if missing:
        raise ConfigError(f"--models: preset {preset.name!r} has no section for {missing}; it has {list(preset.models)}")
    for flag, value in (("--num-samples", args.num_samples), ("--max-concurrent", args.max_concurrent)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {value}")
    store = LabStore(args.lab)
    store.write_json("tune/.reachable", {"checked": time.time()})  # fails now, not after training
    return SweepRequest(preset, models, store, args.num_samples, args.max_concurrent, args.resume)


@dataclass(frozen=True)
class SweepRequest:
    """What to sweep: the checked preset and models, the lab store and the flags' overrides."""

    preset: Preset
    models: list[str]
    store: LabStore
    num_samples: int | None = None
    max_concurrent: int | None = None
    resume: bool = False


def sweep_model(request: SweepRequest, model: str) -> tune.ResultGrid:
    """Run (or resume) the Tune experiment of one model."""
    store, preset, settings = request.store, request.preset, request.preset.sweep
    num_samples = request.num_samples or settings.num_samples
    job = {"lab": store.root, "dataset": preset.dataset, "eval_every_images": settings.eval_every_images,
           "report_every_images": settings.report_every_images, "fd_samples": settings.fd_samples, "fd_sampler_steps": settings.fd_sampler_steps}
    resources = {k: v for k, v in settings.resources.items() if v}
    trainable = tune.with_resources(train_denoiser_trial, resources)
    name = f"sweep-{model}"
    path = store.uri("tune", name)
    if request.resume and tune.Tuner.can_restore(path):
        print(f"[sweep] {model}: resuming {path}", flush=True)
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True).fit()
    scheduler = ASHAScheduler(time_attr="images_seen", metric="fd", mode="min",
                              max_t=ASHA_MAX_IMAGES, grace_period=settings.grace_images,
                              reduction_factor=settings.reduction_factor)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(preset, model) | {"_job": job},
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=request.max_concurrent or settings.max_concurrent),
        run_config=tune.RunConfig(
            name=name, storage_path=store.tune_storage(), verbose=1,
            # keep the newest few by recency: the experiment state that --resume reads may lag a
            # report or two behind, and must still find the checkpoint it names
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        ),
    )
    print(f"[sweep] {model}: {num_samples} trial(s) -> {path}", flush=True)
    return tuner.fit()


def trial_rows(store: LabStore, model: str, results: tune.ResultGrid) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    """One row per trial (config, status, final and best metrics, checkpoint) and its report history."""
    rows, histories = [], []
    for result in results:
        config = {f"{section}.{k}": v for section in ("model", "diffusion", "train")
                  for k, v in (result.config.get(section) or {}).items()}
        history = result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
        latest = result.checkpoint  # the trial's final state: its EMA weights are what gets exported
        trial_id = result.metrics.get("trial_id", result.path.rsplit("/", 1)[-1])
        rows.append({"model": model, "trial_id": trial_id, "status": "ERROR" if result.error else "TERMINATED",
                     "error": str(result.error)[:500] if result.error else "", **config,
                     "final_loss": result.metrics.get("loss"), "final_fd": result.metrics.get("fd"),
                     "best_fd": float(history.fd.min()) if "fd" in history else None,
                     "fd_floor": result.metrics.get("fd_floor"),
                     "images_seen": result.metrics.get("images_seen"),
                     "time_total_s": result.metrics.get("time_total_s"), "node_id": result.metrics.get("node_id"),
                     "checkpoint": store.uri_of(latest.path) if latest else None,
                     "trial_path": store.uri_of(result.path)})
        if not history.empty:
            keep = [c for c in ("step", "images_seen", "loss", "fd", "fd_ratio", "resumed", "time_total_s", "timestamp", "node_id") if c in history]
            # a report logged after the last checkpoint is made again on resume: keep the later one
            history = history[keep].drop_duplicates("step", keep="last") if "step" in history else history[keep]
            histories.append(history.assign(model=model, trial_id=trial_id))
    return rows, histories


def export_best(store: LabStore, preset: Preset, model: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Export the best trial's EMA weights as ``<model>`` in the lab store; mark its row."""
    scored = [r for r in rows if r["checkpoint"] and r["best_fd"] is not None]
    if not scored:
        print(f"[sweep] {model}: no trial produced a checkpoint; nothing exported", flush=True)
        return None
    best = min(scored, key=lambda r: r["best_fd"])
    sections = {s: {k.split(".", 1)[1]: v for k, v in best.items() if k.startswith(f"{s}.")} for s in ("model", "diffusion", "train")}
    run = run_config(model, sections, preset.dataset)
    job = build_denoiser_run(run, pick_device("cpu"), data=torch.zeros(1, 1, 28, 28))  # weights only, no data
    checkpoint = tune.Checkpoint(best["checkpoint"])
    with checkpoint.as_directory() as directory, open(os.path.join(directory, STATE_FILE), "rb") as handle:
        job.trainer.load_state(handle.read())
    metrics = {"fd_vae_sweep": best["best_fd"], "fd_floor_sweep": best["fd_floor"], "trial_id": best["trial_id"],
               "steps": job.trainer.step, "images_seen": job.trainer.images_seen, "train_seconds": best["time_total_s"]}
    store.export_model(model, job.ema_model, run, metrics)
    for row in rows:
        row["is_best"] = row is best
    print(f"[sweep] {model}: exported trial {best['trial_id']} (FD {best['best_fd']:.4g}) -> {store.uri(store.model_path(model))}", flush=True)
    return metrics


def write_tables(store: LabStore, models: list[str], rows: list[dict[str, Any]], histories: list[pd.DataFrame]) -> None:
    """Merge this sweep's rows into the ``trials`` and ``trial_history`` tables (other models' rows kept)."""
    for name, fresh in (("trials", pd.DataFrame(rows)), ("trial_history", pd.concat(histories) if histories else pd.DataFrame())):
        if name in store.list_tables():
            old = store.read_table(name)
            if "model" in old.columns:
                fresh = pd.concat([old[~old.model.isin(models)], fresh], ignore_index=True)
        store.write_table(name, fresh)


def run_sweep(request: SweepRequest) -> pd.DataFrame:
    """Embeddings first, then each model's Tune experiment; export the best trials, write the tables."""
    start = time.perf_counter()
    start_ray()
    store = request.store
    ensure_embeddings(store, request.preset.dataset, request.preset.embeddings, "sweep")
    rows: list[dict[str, Any]] = []
    histories: list[pd.DataFrame] = []
    for model in request.models:
        results = sweep_model(request, model)
        model_rows, model_histories = trial_rows(store, model, results)
        export_best(store, request.preset, model, model_rows)
        rows += model_rows
        histories += model_histories
    write_tables(store, request.models, rows, histories)
    print(f"[sweep] done in {time.perf_counter() - start:.0f} s: {len(rows)} trials, tables in {store.uri('tables')}", flush=True)
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 2 on bad input (before any trial)."""
    args = parse_args(argv)
    try:
        request = check_inputs(args)
    except (ConfigError, LabStoreError, ValueError) as error:
        print(f"python -m jobs.sweep: error: {error}", file=sys.stderr)
        return 2
    run_sweep(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
