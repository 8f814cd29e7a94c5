"""``python -m jobs.sweep``: sweep the evaluation embeddings (unless the lab has them), then the denoisers, with Ray Tune.

Two stages, one after the other, each one Tune experiment through the same path
(``jobs.experiment.run_stage``): the embeddings' (the VAE and the classifier, chosen on
validation loss, ``<lab>/tune/embeddings``), then all the models' trials in ONE experiment
(``<lab>/tune/sweep-<models>``), so a cluster stays full until the last trial ends; each group
keeps its own search space from the preset and its own ASHA brackets, stopping poor trials early
on the figure its kind reports (``jobs.kinds``). The embeddings are the yardstick every denoiser
is measured with, so they are chosen by a rule that never touches the FD's reference set: each
trains on the fit part of the training split and reports its validation loss. At the end of a
stage the best trial of each group is exported to the lab store: exactly the EMA weights of its
best report, rebuilt from the run config its checkpoint carries, and the stage's trials table
and per-report history are written for the dashboard.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diffusion.core.config import ConfigError, DataConfig
from diffusion.core.models import DENOISERS
from diffusion.lab.datasets import DatasetUnavailable, ensure_dataset
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore, LabStoreError, default_lab
from diffusion.lab.tables import EMBEDDING_HISTORY, EMBEDDING_TRIALS, TRIAL_HISTORY, TRIALS, TableStore
from jobs.console import job_log, say
from jobs.experiment import Experiment, Stage, run_stage
from jobs.kinds import EMBEDDING_KINDS, MODEL_KINDS, trial_run
from jobs.presets import Preset, TuneSettings, load_preset, point_space
from jobs.ray_session import start_ray
from jobs.trial import train_trial

DENOISER_STAGE = Stage("sweep", TRIALS, TRIAL_HISTORY, (TRIALS.floor_mean, TRIALS.fd_embedding))
EMBEDDING_STAGE = Stage("embeddings", EMBEDDING_TRIALS, EMBEDDING_HISTORY,
                        (EMBEDDING_TRIALS.val_neg_elbo, EMBEDDING_TRIALS.val_accuracy))
EMBEDDINGS_EXPERIMENT = "embeddings"
"""The embeddings' Tune experiment, ``<lab>/tune/embeddings`` (``embeddings-<kinds>`` when only some are swept)."""


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
    store.check_writable()
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


def job_settings(store: LabStore, preset: Preset, settings: TuneSettings) -> dict[str, Any]:
    """What every trial of a stage reads under ``_job``: the lab, the data set, the threads, its report settings."""
    reports = {k: getattr(settings, k) for k in ("report_every_images", "eval_every_images", "fd_samples",
                                                 "fd_sampler_steps") if hasattr(settings, k)}
    return {"lab": store.root, "dataset": preset.dataset, "cpus": settings.resources.get("cpu", 1),
            "export": settings.export, **reports}


def sweep_models(request: SweepRequest) -> None:
    """Run (or resume) the one Tune experiment of every requested model, export each model's best, write the tables."""
    store, preset, settings = request.store, request.preset, request.preset.sweep
    experiment = Experiment(experiment_name(request.models), train_trial,
                            {model: point_space(preset, model) for model in request.models},
                            job_settings(store, preset, settings), settings, MODEL_KINDS["denoiser"].metric,
                            request.num_samples, request.max_concurrent, trial_run, keep_groups=settings.keep_models)
    records = run_stage(store, DENOISER_STAGE, experiment, request.resume, settings)
    say(f"[sweep] {len(records.rows)} trials, tables in {TableStore(store).location}")


def sweep_embeddings(store: LabStore, preset: Preset, label: str, retrain: bool = False, resume: bool = False,
                     kinds: Sequence[str] = EMBEDDING_KINDS) -> list[str]:
    """Sweep those of ``kinds`` the lab lacks (all of them with ``retrain``), export each kind's best trial, write
    the ``embedding_trials`` and ``embedding_history`` tables; returns the kinds swept."""
    start = time.perf_counter()
    registry = ModelRegistry(store)
    swept = [kind for kind in kinds if retrain or kind not in registry.list_models(kind=kind)]
    for kind in kinds:
        if kind not in swept:
            print(f"[{label}] embedding {kind}: found in {store.root} (--retrain-embeddings sweeps it again)", flush=True)
    if not swept:
        return []
    settings = preset.embedding_sweep
    name = EMBEDDINGS_EXPERIMENT if swept == list(EMBEDDING_KINDS) else f"{EMBEDDINGS_EXPERIMENT}-{'-'.join(swept)}"
    experiment = Experiment(name, train_trial, {kind: point_space(preset, kind) for kind in swept},
                            job_settings(store, preset, settings), settings, MODEL_KINDS[swept[0]].metric,
                            run_of=trial_run)
    run_stage(store, EMBEDDING_STAGE, experiment, resume, settings)
    missing = [kind for kind in swept if kind not in registry.list_models(kind=kind)]
    if missing:
        raise RuntimeError(f"embedding {', '.join(missing)}: no trial reported a validation loss; see the trials in "
                           f"{store.experiment_uri(name)}")
    say(f"[embeddings] done in {time.perf_counter() - start:.0f} s: {', '.join(swept)} exported")
    return swept


@dataclass(frozen=True)
class SweepOutcome:
    """The wall time of a sweep's stages: the embeddings', the models' trials (with their export)."""

    seconds: dict[str, float]


def run_sweep(request: SweepRequest) -> SweepOutcome:
    """Embeddings first, then one Tune experiment for all the models; export each model's best, write the tables."""
    start = time.perf_counter()
    start_ray()
    store, preset = request.store, request.preset
    sweep_embeddings(store, preset, "sweep", retrain=request.retrain_embeddings, resume=request.resume)
    embedded = time.perf_counter()
    sweep_models(request)
    seconds = {"embeddings": embedded - start, "trials": time.perf_counter() - embedded}  # the trials and their export
    say(f"[sweep] done in {sum(seconds.values()):.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")")
    return SweepOutcome(seconds)


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
