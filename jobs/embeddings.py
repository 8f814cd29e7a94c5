"""The evaluation embeddings' sweep: the VAE and the classifier as one Tune experiment, chosen on validation loss.

The embeddings are the yardstick every denoiser is measured with, so they are swept like the
denoisers (the ``embeddings`` section of a preset: search spaces for ``model`` and ``train``,
resources, ASHA, checkpoints, search algorithm) and chosen by a rule that never touches the FD's
reference set: each trial trains on the fit part of the training split and reports its
validation loss (``diffusion.embeddings.training.validation_metrics``: held-out -ELBO for the
VAE, cross-entropy for the classifier); the trial with the lowest is exported, exactly the
EMA weights of that report, with its trial id on the card (the lineage every score names).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from diffusion.embeddings.training import (
    EMBEDDER_RUNS,
    SELECTION_METRIC,
    EmbedderJob,
    EmbedderRun,
    build_embedder_job,
    validation_metrics,
)
from diffusion.lab.datasets import selection_splits
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import EMBEDDING_HISTORY, EMBEDDING_TRIALS, TableStore
from jobs.console import say
from jobs.experiment import (
    Experiment,
    best_report,
    best_trial,
    export_weights,
    row_sections,
    run_experiment,
    trial_records,
)
from jobs.presets import EMBEDDING_SECTIONS, POINT_NAME, Preset, embedding_run_config, embedding_space
from jobs.ray_session import task_device
from jobs.trial_state import POINT_KEY, TrialCheckpoints, progress_metrics, report_every

EXPERIMENT = "embeddings"
"""The embeddings' Tune experiment, ``<lab>/tune/embeddings``."""
HISTORY_COLUMNS = tuple(c for c in EMBEDDING_HISTORY.columns if c.optional)


def task_options(resources: dict[str, float]) -> dict[str, float]:
    """Ray task options from a preset's ``resources`` mapping (cpu, gpu)."""
    return {"num_cpus": float(resources.get("cpu", 1)), "num_gpus": float(resources.get("gpu", 0))}


def embedding_trial_run(config: dict[str, Any]) -> EmbedderRun:
    """The run an embedding trial's config describes: its kind's point under ``point``, the data set under ``_job``."""
    point = config[POINT_KEY]
    return embedding_run_config(point[POINT_NAME], {s: point.get(s, {}) for s in EMBEDDING_SECTIONS},
                                config["_job"]["dataset"])


def train_embedding_trial(config: dict[str, Any]) -> None:
    """Tune function trainable: one embedding kind's point under ``point``, the job's settings under ``_job``."""
    job_settings = config["_job"]
    run = embedding_trial_run(config)
    device = task_device()
    torch.set_num_threads(max(1, int(job_settings["cpus"])))
    splits = selection_splits(run.data, LabStore(job_settings["lab"]))
    job: EmbedderJob = build_embedder_job(run, device, data=(splits.fit.images, splits.fit.labels))
    checkpoints = TrialCheckpoints(job.trainer, SELECTION_METRIC)

    def report(trainer: Any, progress: Any) -> None:
        metrics = progress_metrics(progress, checkpoints.resumed, device) | validation_metrics(job.ema_model, splits.validation)
        checkpoints.offer(job.ema_model, metrics[SELECTION_METRIC], {
            **{k: v for k, v in metrics.items() if k.startswith("val_")}, "step": progress.step,
            "images_seen": progress.images_seen, "validation_images": len(splits.validation)})
        checkpoints.report(trainer, metrics)

    job.trainer.fit(callback=report, every=report_every(job_settings["report_every_images"], run.train.batch_size))


def planned_steps(config: dict[str, Any]) -> int:
    """The steps an embedding trial's config trains for."""
    return embedding_trial_run(config).train.steps


def sweep_embeddings(store: LabStore, preset: Preset, stage: str, retrain: bool = False, resume: bool = False,
                     kinds: Sequence[str] = tuple(EMBEDDER_RUNS)) -> list[str]:
    """Sweep those of ``kinds`` the lab lacks (all of them with ``retrain``), export each kind's best trial, write
    the ``embedding_trials`` and ``embedding_history`` tables; returns the kinds swept."""
    start = time.perf_counter()
    registry = ModelRegistry(store)
    swept = [kind for kind in kinds if retrain or kind not in registry.list_models(kind=kind)]
    for kind in kinds:
        if kind not in swept:
            print(f"[{stage}] embedding {kind}: found in {store.root} (--retrain-embeddings sweeps it again)", flush=True)
    if not swept:
        return []
    settings = preset.embedding_sweep
    job = {"lab": store.root, "dataset": preset.dataset, "report_every_images": settings.report_every_images,
           "cpus": settings.resources.get("cpu", 1)}
    experiment = Experiment(EXPERIMENT if swept == list(EMBEDDER_RUNS) else f"{EXPERIMENT}-{'-'.join(swept)}",
                            train_embedding_trial, {kind: embedding_space(preset, kind) for kind in swept}, job,
                            settings, SELECTION_METRIC, planned_steps=planned_steps, run_of=embedding_trial_run)
    records = trial_records(store, run_experiment(store, experiment, resume), SELECTION_METRIC, EMBEDDING_TRIALS.kind,
                            HISTORY_COLUMNS, ("val_neg_elbo", "val_accuracy"))
    for kind in swept:
        export_embedding(store, preset, kind, records.rows)
    tables = TableStore(store)
    tables.update(EMBEDDING_TRIALS, pd.DataFrame(records.rows), keys=swept)
    tables.update(EMBEDDING_HISTORY, records.history, keys=swept)
    say(f"[embeddings] done in {time.perf_counter() - start:.0f} s: {', '.join(swept)} exported")
    return swept


def export_embedding(store: LabStore, preset: Preset, kind: str, rows: list[dict[str, Any]]) -> None:
    """Export the EMA weights of ``kind``'s best validation report (over all its trials) as ``<kind>``."""
    best = best_trial(rows, kind, SELECTION_METRIC, EMBEDDING_TRIALS.kind)
    if best is None:
        raise RuntimeError(f"embedding {kind}: no trial reported a validation loss; see the trials in "
                           f"{store.uri('tune', EXPERIMENT)}")
    run = embedding_run_config(kind, row_sections(best, EMBEDDING_SECTIONS), preset.dataset)
    weights, info = best_report(best["checkpoint"])
    metrics = {**{k: v for k, v in info.items() if k.startswith("val_")}, "steps": info["step"],
               "images_seen": info["images_seen"], "validation_images": info["validation_images"],
               "trial_id": best["trial_id"], "selection": f"lowest {SELECTION_METRIC} on the validation split",
               "train_seconds": best["time_total_s"]}
    export_weights(store, kind, run, weights, best["checkpoint"], metrics)
    print(f"[embeddings] {kind}: exported trial {best['trial_id']} at step {info['step']} "
          f"({SELECTION_METRIC} {info[SELECTION_METRIC]:.4g}) -> {store.uri(ModelRegistry(store).model_path(kind))}",
          flush=True)
