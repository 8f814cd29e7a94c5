"""``python -m jobs.sweep``: sweep the evaluation embeddings (unless the lab has them), then the denoisers, with Ray Tune.

Two Tune experiments, one after the other (``jobs.experiment``): the embeddings' (the VAE and
the classifier, chosen on validation loss: ``jobs.embeddings``), then all the models' trials in
ONE experiment (``<lab>/tune/sweep-<models>``), so a cluster stays full until the last trial
ends; each model keeps its own search space from the preset and its own ASHA brackets, stopping
poor trials early on the FD (VAE) they report. At the end the best trial of each model is
exported to the lab store: exactly the EMA weights of its best FD report (carried in every
checkpoint), with that FD and its step on the card; the trials table and the per-report history
are written for the dashboard.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from diffusion.core.config import ConfigError, DataConfig
from diffusion.core.models import DENOISERS
from diffusion.lab.datasets import DatasetUnavailable, ensure_dataset
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore, LabStoreError, default_lab
from diffusion.lab.tables import TRIAL_HISTORY, TRIALS, TableStore
from jobs.console import job_log, say
from jobs.embeddings import sweep_embeddings
from jobs.experiment import (
    Experiment,
    ExperimentResults,
    best_report,
    best_trial,
    export_weights,
    row_sections,
    run_experiment,
    trial_records,
)
from jobs.presets import SECTIONS, Preset, load_preset, param_space, run_config
from jobs.ray_session import start_ray
from jobs.trainable import train_denoiser_trial, trial_run_config

HISTORY_COLUMNS = tuple(c for c in TRIAL_HISTORY.columns if c.optional)
"""What the history keeps of each report."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sweep's flags (``jobs.pipeline`` takes the same)."""
    parser.add_argument("--preset", default="quick", help="smoke, quick, full, or a path to a preset .yaml")
    parser.add_argument("--models", nargs="+", default=None, help=f"a subset of: {', '.join(DENOISERS)}")
    parser.add_argument("--lab", default=default_lab(), help="lab store root: a path or a URI (default $DIFFUSION_LAB, else ./lab)")
    parser.add_argument("--num-samples", type=int, default=None, help="trials per model (default: the preset's)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: the preset's)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep (Tuner.restore)")
    parser.add_argument("--retrain-embeddings", action="store_true",
                        help="sweep the VAE and the classifier again although the lab has them (their old scores turn stale)")


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
    return SweepRequest(preset, models, store, args.num_samples, args.max_concurrent, args.resume,
                        args.retrain_embeddings)


@dataclass(frozen=True)
class SweepRequest:
    """What to sweep: the checked preset and models, the lab store and the flags' overrides."""

    preset: Preset
    models: list[str]
    store: LabStore
    num_samples: int | None = None
    max_concurrent: int | None = None
    resume: bool = False
    retrain_embeddings: bool = False


def experiment_name(models: Sequence[str]) -> str:
    """The Tune experiment of a sweep over ``models`` (``--resume`` finds it by the same models)."""
    return "sweep-" + "-".join(models)


def planned_steps(config: dict[str, Any]) -> int:
    """The steps a denoiser trial's config trains for."""
    return trial_run_config(config).train.steps


def sweep_models(request: SweepRequest) -> ExperimentResults:
    """Run (or resume) the one Tune experiment of every requested model: per-model spaces and ASHA brackets."""
    store, preset, settings = request.store, request.preset, request.preset.sweep
    job = {"lab": store.root, "dataset": preset.dataset, "eval_every_images": settings.eval_every_images,
           "report_every_images": settings.report_every_images, "fd_samples": settings.fd_samples,
           "fd_sampler_steps": settings.fd_sampler_steps}
    experiment = Experiment(experiment_name(request.models), train_denoiser_trial,
                            {model: param_space(preset, model) for model in request.models}, job, settings, "fd",
                            request.num_samples, request.max_concurrent, planned_steps, trial_run_config,
                            settings.keep_models)
    return run_experiment(store, experiment, request.resume)


def export_best(store: LabStore, preset: Preset, model: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Export the EMA weights of ``model``'s best FD report (over all its trials) as ``<model>``; mark its row."""
    best = best_trial(rows, model, "fd", TRIALS.model)
    if best is None:
        print(f"[sweep] {model}: no trial produced a scored checkpoint; nothing exported", flush=True)
        return None
    run = run_config(model, row_sections(best, SECTIONS), preset.dataset)
    weights, info = best_report(best["checkpoint"])
    metrics = {"fd_vae_sweep": info["fd"], "fd_floor_sweep": info["fd_floor"], "fd_step_sweep": info["step"],
               "fd_samples_sweep": info.get("fd_samples"), "fd_sampler_sweep": info.get("fd_sampler"),
               "fd_embedding_sweep": info.get("fd_embedding", ""), "fd_embedding_trial_sweep": info.get("fd_embedding_trial", ""),
               "trial_id": best["trial_id"], "steps": info["step"], "images_seen": info["images_seen"],
               "trained_steps": int(best["images_seen"] or 0) // run.train.batch_size, "train_seconds": best["time_total_s"],
               "planned_steps": run.train.steps, "train_cpus": preset.sweep.resources.get("cpu", 1),
               "trial_status": best["status"]}
    export_weights(store, model, run, weights, best["checkpoint"], metrics)
    print(f"[sweep] {model}: exported trial {best['trial_id']} at step {info['step']} (FD {info['fd']:.4g}) "
          f"-> {store.uri(ModelRegistry(store).model_path(model))}", flush=True)
    return metrics


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
    sweep_embeddings(store, preset, "sweep", retrain=request.retrain_embeddings, resume=request.resume)
    embedded = time.perf_counter()
    records = trial_records(store, sweep_models(request), "fd", TRIALS.model, HISTORY_COLUMNS,
                            (TRIALS.fd_floor, TRIALS.fd_embedding))
    trained = time.perf_counter()
    for model in request.models:
        export_best(store, preset, model, records.rows)
    tables = TableStore(store)
    tables.update(TRIALS, pd.DataFrame(records.rows), keys=request.models)
    tables.update(TRIAL_HISTORY, records.history, keys=request.models)
    seconds = {"embeddings": embedded - start, "trials": trained - embedded, "export": time.perf_counter() - trained}
    say(f"[sweep] done in {sum(seconds.values()):.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        + f"): {len(records.rows)} trials, tables in {store.uri('tables')}")
    return SweepOutcome(pd.DataFrame(records.rows), seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 2 on bad input (before any trial)."""
    args = parse_args(argv)
    try:
        request = check_inputs(args)
    except (ConfigError, LabStoreError, DatasetUnavailable, ValueError) as error:
        print(f"python -m jobs.sweep: error: {error}", file=sys.stderr)
        return 2
    with job_log(request.store, "sweep"):
        run_sweep(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
