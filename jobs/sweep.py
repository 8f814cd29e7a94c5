"""``python -m jobs.sweep``: train the evaluation embeddings if missing, then sweep the denoisers with Ray Tune.

All the models' trials run in ONE Tune experiment (``<lab>/tune/sweep-<models>``), so a cluster
stays full until the last trial ends; each model keeps its own search space from the preset and
its own ASHA brackets (``jobs.scheduling.GroupedScheduler``), stopping poor trials early on the
FD (VAE) they report. At the end the best trial of each model is exported to the lab store:
exactly the EMA weights of its best FD report (carried in every checkpoint), with that FD and
its step on the card; the trials table and the per-report history are written for the dashboard.
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
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from diffusion.core.config import ConfigError, DataConfig
from diffusion.core.models import DENOISERS, build_denoiser
from diffusion.lab.checkpoint import weights_from_bytes
from diffusion.lab.datasets import DatasetUnavailable, ensure_dataset
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore, LabStoreError, default_lab
from diffusion.lab.tables import TRIAL_HISTORY, TRIALS, TableStore
from jobs.embeddings import ensure_embeddings
from jobs.presets import Preset, load_preset, param_space, run_config
from jobs.ray_session import start_ray
from jobs.scheduling import GroupedScheduler
from jobs.trainable import DENOISER_KEY, model_of, read_best, train_denoiser_trial

ASHA_MAX_IMAGES = 10**10  # trials end at their own step count; ASHA only needs rungs above the grace period
# Tune saves the experiment state (which checkpoint each trial is at) every 10+ s by default; a
# driver killed in between restarts those trials from scratch on --resume. Every 2 s is cheap here.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
# Trials report the loss often and the FD every few thousand images; ASHA skips the reports
# without FD, but Tune's strict check would reject them as missing the scheduler's metric.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
CHECKPOINTS_KEPT = 4
SECTIONS = ("model", "diffusion", "train")


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
    print(f"[sweep] data: {ensure_dataset(store, DataConfig(dataset=preset.dataset))}", flush=True)
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


def experiment_name(models: Sequence[str]) -> str:
    """The Tune experiment of a sweep over ``models`` (``--resume`` finds it by the same models)."""
    return "sweep-" + "-".join(models)


def sweep_models(request: SweepRequest) -> tune.ResultGrid:
    """Run (or resume) the one Tune experiment of every requested model: per-model spaces and ASHA brackets."""
    store, preset, settings = request.store, request.preset, request.preset.sweep
    num_samples = request.num_samples or settings.num_samples
    job = {"lab": store.root, "dataset": preset.dataset, "eval_every_images": settings.eval_every_images,
           "report_every_images": settings.report_every_images, "fd_samples": settings.fd_samples, "fd_sampler_steps": settings.fd_sampler_steps}
    resources = {k: v for k, v in settings.resources.items() if v}
    trainable = tune.with_resources(train_denoiser_trial, resources)
    name = experiment_name(request.models)
    path = store.uri("tune", name)
    if request.resume and tune.Tuner.can_restore(path):
        print(f"[sweep] resuming {path}", flush=True)
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True).fit()
    scheduler = GroupedScheduler({model: ASHAScheduler(time_attr="images_seen", metric="fd", mode="min", max_t=ASHA_MAX_IMAGES,
                                                       grace_period=settings.grace_images,
                                                       reduction_factor=settings.reduction_factor)
                                  for model in request.models}, model_of)
    # a grid over the models, each point holding its own search space: num_samples trials per model
    space = {DENOISER_KEY: tune.grid_search([param_space(preset, model) for model in request.models]), "_job": job}
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=request.max_concurrent or settings.max_concurrent),
        run_config=tune.RunConfig(
            name=name, storage_path=store.tune_storage(), verbose=1,
            # keep the newest few by recency: the experiment state that --resume reads may lag a
            # report or two behind, and must still find the checkpoint it names; every checkpoint
            # carries the trial's best-FD weights, so the export never needs an older one
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        ),
    )
    print(f"[sweep] {num_samples} trial(s) each of {', '.join(request.models)} in one experiment -> {path}", flush=True)
    return tuner.fit()


def trial_rows(store: LabStore, results: tune.ResultGrid) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    """One row per trial (model, config, status, final and best metrics, checkpoint) and its report history."""
    rows, histories = [], []
    for result in results:
        point = result.config[DENOISER_KEY]
        model = model_of(result.config)
        config = {f"{section}.{k}": v for section in SECTIONS for k, v in (point.get(section) or {}).items()}
        history = result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
        if not history.empty and "step" in history:
            # a report logged after the last checkpoint is made again on resume: keep the later one
            history = history.drop_duplicates("step", keep="last")
        scored = history.dropna(subset=["fd"]) if "fd" in history else pd.DataFrame()
        best = scored.loc[scored.fd.idxmin()] if not scored.empty else None
        latest = result.checkpoint  # the trial's last checkpoint: it carries the best-FD weights
        trial_id = result.metrics.get("trial_id", result.path.rsplit("/", 1)[-1])
        rows.append({"model": model, "trial_id": trial_id, "status": "ERROR" if result.error else "TERMINATED",
                     "error": str(result.error)[:500] if result.error else "", **config,
                     "final_loss": result.metrics.get("loss"), "final_fd": result.metrics.get("fd"),
                     "best_fd": float(best.fd) if best is not None else None,
                     "best_step": int(best.step) if best is not None else None,
                     "fd_floor": result.metrics.get("fd_floor"),
                     "images_seen": result.metrics.get("images_seen"),
                     "time_total_s": result.metrics.get("time_total_s"), "node_id": result.metrics.get("node_id"),
                     "device": result.metrics.get("device"),
                     "checkpoint": store.uri_of(latest.path) if latest else None,
                     "trial_path": store.uri_of(result.path)})
        if not history.empty:
            keep = [c for c in TRIAL_HISTORY.columns if c.optional and c in history]  # the report's columns
            histories.append(history[keep].assign(model=model, trial_id=trial_id))
    return rows, histories


def export_best(store: LabStore, preset: Preset, model: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Export the EMA weights of ``model``'s best FD report (over all its trials) as ``<model>``; mark its row."""
    scored = [r for r in rows if r["model"] == model and r["checkpoint"] and r["best_fd"] is not None]
    if not scored:
        print(f"[sweep] {model}: no trial produced a scored checkpoint; nothing exported", flush=True)
        return None
    best = min(scored, key=lambda r: r["best_fd"])
    sections = {s: {k.split(".", 1)[1]: v for k, v in best.items() if k.startswith(f"{s}.") and v is not None}
                for s in SECTIONS}
    run = run_config(model, sections, preset.dataset)
    with tune.Checkpoint(best["checkpoint"]).as_directory() as directory:
        found = read_best(directory)
    if found is None:
        raise LabStoreError(f"{best['checkpoint']}: the checkpoint carries no best-FD weights; cannot export {model}")
    weights, info = found
    network = build_denoiser(run.model)
    network.load_state_dict(weights_from_bytes(weights, f"{best['checkpoint']} (best weights)"), strict=True)
    metrics = {"fd_vae_sweep": info["fd"], "fd_floor_sweep": info["fd_floor"], "fd_step_sweep": info["step"],
               "fd_samples_sweep": info.get("fd_samples"), "fd_sampler_sweep": info.get("fd_sampler"),
               "trial_id": best["trial_id"], "steps": info["step"], "images_seen": info["images_seen"],
               "trained_steps": int(best["images_seen"] or 0) // run.train.batch_size, "train_seconds": best["time_total_s"]}
    registry = ModelRegistry(store)
    registry.export_model(model, network.eval(), run, metrics)
    for row in rows:
        if row["model"] == model:
            row["is_best"] = row is best
    print(f"[sweep] {model}: exported trial {best['trial_id']} at step {info['step']} (FD {info['fd']:.4g}) "
          f"-> {store.uri(registry.model_path(model))}", flush=True)
    return metrics


def write_tables(store: LabStore, models: list[str], rows: list[dict[str, Any]], histories: list[pd.DataFrame]) -> None:
    """Replace these models' rows of the ``trials`` and ``trial_history`` tables, keeping other models' (and other writers') rows."""
    tables = TableStore(store)
    tables.update(TRIALS, pd.DataFrame(rows), keys=models)
    tables.update(TRIAL_HISTORY, pd.concat(histories) if histories else pd.DataFrame(), keys=models)


@dataclass(frozen=True)
class SweepOutcome:
    """The trials table of a sweep and the wall time of its stages (embeddings, trials, export)."""

    trials: pd.DataFrame
    seconds: dict[str, float]


def run_sweep(request: SweepRequest) -> SweepOutcome:
    """Embeddings first, then one Tune experiment for all the models; export each model's best, write the tables."""
    start = time.perf_counter()
    start_ray()
    store, preset = request.store, request.preset
    ensure_embeddings(store, preset.dataset, preset.embeddings, "sweep", preset.embedding_resources)
    embedded = time.perf_counter()
    rows, histories = trial_rows(store, sweep_models(request))
    trained = time.perf_counter()
    for model in request.models:
        export_best(store, preset, model, rows)
    write_tables(store, request.models, rows, histories)
    seconds = {"embeddings": embedded - start, "trials": trained - embedded, "export": time.perf_counter() - trained}
    print(f"[sweep] done in {sum(seconds.values()):.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
          + f"): {len(rows)} trials, tables in {store.uri('tables')}", flush=True)
    return SweepOutcome(pd.DataFrame(rows), seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 2 on bad input (before any trial)."""
    args = parse_args(argv)
    try:
        request = check_inputs(args)
    except (ConfigError, LabStoreError, DatasetUnavailable, ValueError) as error:
        print(f"python -m jobs.sweep: error: {error}", file=sys.stderr)
        return 2
    run_sweep(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
