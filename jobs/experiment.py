"""One Tune experiment over several groups (models, or embedding kinds): its run, its trials tables, its export.

Both sweeps of the lab go through ``run_stage``: the embeddings' (VAE and classifier, chosen on
validation loss) and the denoisers' (chosen on FD); what differs between them is their kinds'
(``jobs.kinds``) and their tables'. Each group keeps its own search space and its own ASHA
brackets (``jobs.trial_schedulers.GroupedScheduler``) and its own searcher (random draws, or a
model-based searcher such as Optuna: ``jobs.searchers.GroupedSearcher``). Trials report
``<metric>`` (lower is better) and checkpoint the weights of their best report with their run
config (``jobs.trial``); the export writes exactly those weights, rebuilt from that config.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from diffusion.core.config import to_dict
from diffusion.lab.checkpoint import weights_from_bytes
from diffusion.lab.kinds import STORED_KINDS
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import TRIAL_HISTORY as H  # a report's keys are the history's columns
from diffusion.lab.tables import TableSchema, TableStore
from jobs.console import LogReporter, TrialLines, say, searched_columns
from jobs.kinds import POINT_KEY, POINT_NAME, group_kind, group_of
from jobs.presets import TuneSettings
from jobs.searchers import GroupedSearcher
from jobs.trial import enter_trial_folder, read_export
from jobs.trial_schedulers import GroupedScheduler, MatchedRung, PausingLimiter

ASHA_MAX_IMAGES = 10**10  # trials end at their own step count; ASHA only needs rungs above the grace period
# Tune saves the experiment state (which checkpoint each trial is at) every 10+ s by default; a
# driver killed in between restarts those trials from scratch on --resume. Every 2 s is cheap here.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
# Trials report the loss often and the FD every few thousand images; ASHA skips the reports
# without FD, but Tune's strict check would reject them as missing the scheduler's metric.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
# Tune's status tables go to the job's log (jobs.console.LogReporter), not to stdout: only its older output
# engine takes a progress reporter; the newer one prints its tables and trial results itself.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# With num_to_keep, Tune saves the experiment state again as soon as a trial has made that many checkpoints since
# the last save, so that the state never names a checkpoint it has deleted; fast trials (a report and checkpoint
# every fraction of a second) trigger it often, and Tune warns that such saves "may become a bottleneck". Here they
# are what --resume relies on, and cost a few kB (the saves every 2 s above already write as much): no warning.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
CHECKPOINTS_KEPT = 4


@dataclass(frozen=True)
class Experiment:
    """A Tune experiment: ``spaces`` maps each group to its point's Tune space (``jobs.presets.point_space``)."""

    name: str
    trainable: Callable[[dict[str, Any]], None]
    spaces: dict[str, dict[str, Any]]
    job: dict[str, Any]
    """Settings every trial reads under ``_job`` (lab, data set, report intervals, ...)."""
    settings: TuneSettings
    metric: str
    """What the trials report and ASHA and the searcher minimise: ``fd`` or ``val_loss``."""
    num_samples: int | None = None
    max_concurrent: int | None = None
    run_of: Callable[[dict[str, Any]], Any] | None = None
    """A trial config -> its whole run config (``jobs.kinds.trial_run``, a module-level function): the trials table
    shows the value of a key a trial left at its default, and each trial's planned steps."""
    planned_steps: Callable[[dict[str, Any]], int] | None = None
    """A trial config -> the steps it trains for (the scheduler's and the console's); default: ``run_of``'s."""
    keep_groups: int | None = None
    """With a number, the budget-matched rung at ``grace_images``: every trial waits there until all have reached it,
    then only this many groups (the lowest metric there) go on (``jobs.trial_schedulers.MatchedRung``)."""


def in_own_folder(trainable: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """``trainable``, entering its trial's folder first: with ``reuse_actors`` a process runs one trial after another,
    and Tune moves only a new process into its trial's folder. Keeps the name, which names the trial folders."""

    @functools.wraps(trainable)
    def trial(config: dict[str, Any]) -> None:
        enter_trial_folder()
        trainable(config)

    return trial


@dataclass(frozen=True)
class PlannedSteps:
    """A trial config -> the steps its run config trains for (picklable where ``run_of`` is a module-level function)."""

    run_of: Callable[[dict[str, Any]], Any]

    def __call__(self, config: dict[str, Any]) -> int:
        return int(self.run_of(config).train.steps)


@dataclass(frozen=True)
class ExperimentResults:
    """What a run of an experiment gives: Tune's results, who stopped which trial early, and each trial's plan."""

    results: tune.ResultGrid
    stops: dict[str, str]
    """Trial id -> who stopped it early (``jobs.trial_schedulers.STOPPED_BY_ASHA`` or ``STOPPED_AT_RUNG``); trials stopped
    before a ``--resume`` are not in it (their status then reads 'stopped early')."""
    run_of: Callable[[dict[str, Any]], Any] | None = None
    """As ``Experiment.run_of``."""


def trial_status(error: bool, steps_reached: int | None, planned: int | None, stopped_by: str | None) -> str:
    """How a trial ended, in words: ``completed``, ``stopped by ASHA``, ``stopped by the budget-matched rung``,
    ``stopped early`` (by whom is not known: a resumed sweep) or ``error``."""
    if error:
        return "error"
    if planned is None or (steps_reached is not None and steps_reached >= planned):
        return "completed"
    return f"stopped by {stopped_by}" if stopped_by else "stopped early"


def run_experiment(store: LabStore, experiment: Experiment, resume: bool = False) -> ExperimentResults:
    """Run (or, with ``resume``, continue) ``experiment``: its trials in ``<lab>/tune/<name>``."""
    settings = experiment.settings
    trainable = tune.with_resources(in_own_folder(experiment.trainable), {k: v for k, v in settings.resources.items() if v})
    path = store.experiment_uri(experiment.name)
    if resume and tune.Tuner.can_restore(path):
        say(f"[{experiment.name}] resuming {path}")  # with the callbacks and reporter it was started with
        return ExperimentResults(tune.Tuner.restore(path, trainable=trainable, resume_errored=True).fit(), {},
                                 experiment.run_of)
    groups = list(experiment.spaces)
    planned = experiment.planned_steps or (PlannedSteps(experiment.run_of) if experiment.run_of else None)
    num_samples = experiment.num_samples or settings.num_samples
    searcher = GroupedSearcher(settings.search, experiment.spaces, num_samples, experiment.metric, "min",
                               wrap=lambda group, point: {POINT_KEY: point})
    rung = (MatchedRung(settings.grace_images, experiment.keep_groups, searcher.trials, settings.reduction_factor)
            if experiment.keep_groups else None)
    scheduler = GroupedScheduler({group: ASHAScheduler(time_attr="images_seen", metric=experiment.metric, mode="min",
                                                       max_t=ASHA_MAX_IMAGES, grace_period=settings.grace_images,
                                                       reduction_factor=settings.reduction_factor)
                                  for group in groups}, group_of, rung, planned_steps=planned)
    tuner = tune.Tuner(
        trainable,
        param_space={"_job": experiment.job},
        # our own limiter, not max_concurrent_trials: a trial paused at the matched rung must free its place
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=searcher.trials,
                                    search_alg=PausingLimiter(searcher, experiment.max_concurrent or settings.max_concurrent),
                                    # a finished trial's process runs the next trial: no new process, no imports
                                    # again (smoke sweep's trials 33 s -> 17 s); each trial enters its own folder
                                    # (in_own_folder)
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=experiment.name, storage_path=store.tune_storage(),
            # the console gets a line per trial now and then (TrialLines); Tune's status tables go to the log
            verbose=1, progress_reporter=LogReporter(experiment.metric, [f"{POINT_KEY}/{POINT_NAME}",
                                                                         *searched_columns(experiment.spaces, POINT_KEY)]),
            callbacks=[TrialLines(experiment.name.split("-")[0], experiment.metric, group_of, dict(searcher.trials_of),
                                  planned)],
            # keep the newest few by recency: the experiment state that --resume reads may lag a
            # report or two behind, and must still find the checkpoint it names; every checkpoint
            # carries the trial's best weights, so the export never needs an older one
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        ),
    )
    counts = ", ".join(f"{searcher.trials_of[g]} of {g}" for g in groups)
    matched = (f"; all wait at {settings.grace_images:,} images, then the best {experiment.keep_groups} model(s) go on"
               if rung else "")
    say(f"[{experiment.name}] {searcher.trials} trial(s): {counts} ({settings.search} search{matched}) -> {path}")
    return ExperimentResults(tuner.fit(), scheduler.stops, experiment.run_of)


@dataclass(frozen=True)
class TrialRecords:
    """One row per trial (its group, config, status, final and best metric, checkpoint) and every trial's reports."""

    rows: list[dict[str, Any]]
    history: pd.DataFrame


def trial_records(store: LabStore, run: ExperimentResults, metric: str, stage: Stage) -> TrialRecords:
    """The trials of ``run`` as ``stage``'s two tables name them: per trial its group, ``trial_id``, status
    (``trial_status``) with the steps it reached and the steps it planned, config as ``<section>.<key>``,
    ``final_loss``, ``final_<metric>``, ``best_<metric>`` with its ``best_step``, the last value of each of the stage's
    final columns, where and how long it ran, its last checkpoint (which carries the best weights); the history keeps
    the stage's history columns of every report (a report's keys are the history's column names)."""
    trials, history_table = stage.trials, stage.history
    assert trials.key is not None
    rows, histories, resolved = [], [], []
    for result in run.results:
        point = result.config[POINT_KEY]
        group = group_of(result.config)
        config = {f"{section}.{k}": v for section, values in point.items() if isinstance(values, dict)
                  for k, v in values.items()}
        whole = to_dict(run.run_of(result.config)) if run.run_of else None
        history = result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
        if not history.empty and history_table.step in history:
            # a report logged after the last checkpoint is made again on resume: keep the later one
            history = history.drop_duplicates(history_table.step, keep="last")
        scored = history.dropna(subset=[metric]) if metric in history else pd.DataFrame()
        best = scored.loc[scored[metric].idxmin()] if not scored.empty else None
        latest, last = result.checkpoint, result.metrics
        trial_id = last.get(history_table.trial_id, result.path.rsplit("/", 1)[-1])
        reached = last.get(history_table.step)
        planned = whole["train"]["steps"] if whole else None
        rows.append({trials.key: group, trials.trial_id: trial_id,
                     trials.status: trial_status(bool(result.error), reached, planned, run.stops.get(trial_id)),
                     trials.steps_reached: None if reached is None else int(reached), trials.planned_steps: planned,
                     trials.error: str(result.error)[:500] if result.error else "", **config,
                     trials.final_loss: last.get(history_table.loss), f"final_{metric}": last.get(metric),
                     f"best_{metric}": float(best[metric]) if best is not None else None,
                     trials.best_step: int(best[history_table.step]) if best is not None else None,
                     **{column: last.get(column) for column in stage.final_columns},
                     **{column: last.get(column) for column in (trials.images_seen, trials.time_total_s, trials.node_id,
                                                                 trials.device)},
                     trials.checkpoint: store.uri_of(latest.path) if latest else None,
                     trials.trial_path: store.uri_of(result.path)})
        if whole:
            resolved.append((rows[-1], whole))
        if not history.empty:
            keep = [c for c in stage.history_columns if c in history]
            histories.append(history[keep].assign(**{history_table.key: group, history_table.trial_id: trial_id}))
    _fill_defaults(resolved)
    return TrialRecords(rows, pd.concat(histories, ignore_index=True) if histories else pd.DataFrame())


def _fill_defaults(resolved: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Each row's config column (``<section>.<key>``) that some trial set and this one left at its default gets the
    default's value from the row's whole run config, so a table never shows None for a value the trial used."""
    columns = {c for row, _ in resolved for c in row if "." in c and c.split(".", 1)[0] in ("model", "diffusion", "train")}
    for row, whole in resolved:
        for column in columns - row.keys():
            section, key = column.split(".", 1)
            value = whole.get(section, {}).get(key)
            row[column] = list(value) if isinstance(value, tuple) else value


def best_trial(rows: list[dict[str, Any]], group: str, metric: str, trials: TableSchema,
               by: str | None = None) -> dict[str, Any] | None:
    """The row of ``group``'s trial with the lowest best ``metric`` (or the lowest column ``by``) among those with a
    checkpoint; marks ``is_best``."""
    key, score = trials.key, by or f"best_{metric}"
    scored = [r for r in rows if r[key] == group and r[trials.checkpoint] and r[score] is not None]
    best = min(scored, key=lambda r: r[score]) if scored else None
    for row in rows:
        if row[key] == group:
            row[trials.is_best] = row is best
    return best


@dataclass(frozen=True)
class Stage:
    """One of the sweep's Tune experiments as the lab records it: its console label, its two tables and the last
    reported figures its trials table keeps."""

    label: str
    trials: TableSchema
    history: TableSchema
    final_columns: tuple[str, ...]

    @property
    def history_columns(self) -> tuple[str, ...]:
        """What the history keeps of each report: its optional columns (the key and trial id come from the trial)."""
        return tuple(c for c in self.history.columns if c.optional)


def run_stage(store: LabStore, stage: Stage, experiment: Experiment, resume: bool, settings: TuneSettings) -> TrialRecords:
    """Run (or resume) ``experiment``, export each group's chosen weights (``settings.export``), update ``stage``'s two
    tables."""
    records = trial_records(store, run_experiment(store, experiment, resume), experiment.metric, stage)
    groups = list(experiment.spaces)
    for group in groups:
        export_best(store, stage, group, records.rows, experiment.metric, settings)
    tables = TableStore(store)
    tables.update(stage.trials, pd.DataFrame(records.rows), keys=groups)
    tables.update(stage.history, records.history, keys=groups)
    return records


def export_best(store: LabStore, stage: Stage, group: str, rows: list[dict[str, Any]], metric: str,
                settings: TuneSettings) -> dict[str, Any] | None:
    """Export ``group``'s chosen weights as model ``group``: those its best trial's checkpoint carries (the best report,
    or with ``export: last`` the last one, the trial chosen by that report's score), rebuilt from the run config the
    checkpoint carries, with what its kind's card records; marks its row. None if no trial scored."""
    trials = stage.trials
    best = best_trial(rows, group, metric, trials, by=f"final_{metric}" if settings.export == "last" else None)
    if best is None:
        print(f"[{stage.label}] {group}: no trial produced a scored checkpoint; nothing exported", flush=True)
        return None
    kind = group_kind(group)
    run, weights, info = read_export(best[trials.checkpoint], kind.name)
    # the card's own keys: how far the exported weights trained, in which trial, and how that trial ended
    metrics = {**kind.card(info), "trial_id": best[trials.trial_id], "steps": info[H.step],
               "images_seen": info[H.images_seen],
               "trained_steps": int(best[trials.images_seen] or 0) // run.train.batch_size,
               "train_seconds": best[trials.time_total_s], "planned_steps": run.train.steps,
               "train_cpus": settings.resources.get("cpu", 1), "export_rule": settings.export,
               "trial_status": best[trials.status]}
    network = STORED_KINDS[kind.name].build(run)
    network.load_state_dict(weights_from_bytes(weights, f"{best[trials.checkpoint]} (best weights)"), strict=True)
    ModelRegistry(store).export_model(group, network.eval(), run, metrics)
    print(f"[{stage.label}] {group}: exported trial {best[trials.trial_id]} at step {info[H.step]} ({metric} "
          f"{info[metric]:.4g}) -> {store.uri(ModelRegistry(store).model_path(group))}", flush=True)
    return metrics
