"""The budget-matched rung (``jobs.trial_schedulers``): every trial of every model waits at the same budget until all have
reached it, then only the leading model's best trials go on. Real Tune in local Ray; the trainable is a stand-in
whose score is known in advance (a denoiser trial takes minutes), with the sweep's own checkpoint-and-resume."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler

from diffusion.lab.store import LabStore
from jobs.experiment import Experiment, run_experiment
from jobs.kinds import POINT_KEY, POINT_NAME, group_of
from jobs.presets import SweepSettings
from jobs.trial_schedulers import (
    STOPPED_AT_RUNG,
    STOPPED_BY_ASHA,
    GroupedScheduler,
    MatchedRung,
    matched_rung_survivors,
)

STEPS, IMAGES_PER_STEP, RUNG_STEP = 6, 10, 2


def planned_steps(config: dict[str, Any]) -> int:
    return STEPS


def known_curve(config: dict[str, Any]) -> None:
    """Reports ``fd = quality / step`` each step with a checkpoint of its step, and resumes from one as a trial does."""
    quality = config[POINT_KEY]["train"]["quality"]
    checkpoint, start = tune.get_checkpoint(), 0
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start = json.loads(Path(directory, "step.json").read_text())
    for step in range(start + 1, STEPS + 1):
        with tempfile.TemporaryDirectory() as directory:
            Path(directory, "step.json").write_text(json.dumps(step))
            tune.report({"step": step, "images_seen": step * IMAGES_PER_STEP, "fd": quality / step,
                         "resumed": checkpoint is not None, "wall": time.time()},
                        checkpoint=tune.Checkpoint.from_directory(directory))


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    temp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_survivors_are_the_leading_groups_best_trials_and_a_nan_ranks_last() -> None:
    at_rung = {"a1": ("a", 2.0), "a2": ("a", 1.0), "b1": ("b", 0.5), "b2": ("b", float("nan")), "c1": ("c", 3.0)}
    assert matched_rung_survivors(at_rung, keep=1, reduction_factor=2) == {"b1"}
    assert matched_rung_survivors(at_rung, keep=2, reduction_factor=2) == {"b1", "a2"}
    assert matched_rung_survivors(at_rung, keep=3, reduction_factor=3) == {"b1", "a2", "c1"}  # at least one each


class RestoredTrial:
    """What the scheduler reads of a Tune trial that ``--resume`` brought back (Tune makes unfinished ones PENDING)."""

    def __init__(self, trial_id: str, model: str, status: str, images: int, fd: float) -> None:
        self.trial_id, self.status, self.config = trial_id, status, {POINT_KEY: {POINT_NAME: model}}
        self.last_result = {"images_seen": images, "step": images // IMAGES_PER_STEP, "fd": fd}


class RestoredController:
    """The two calls the scheduler makes on Tune's controller when it decides the rung."""

    def __init__(self, trials: list[RestoredTrial]) -> None:
        self.trials, self.stopped = trials, []

    def get_trials(self) -> list[RestoredTrial]:
        return self.trials

    def stop_trial(self, trial: RestoredTrial) -> None:
        self.stopped.append(trial.trial_id)
        trial.status = Trial.TERMINATED


def resumed(trials: list[RestoredTrial]) -> tuple[GroupedScheduler, RestoredController]:
    rung = RUNG_STEP * IMAGES_PER_STEP
    scheduler = GroupedScheduler({model: ASHAScheduler(time_attr="images_seen", metric="fd", mode="min", max_t=10**6,
                                                       grace_period=rung) for model in ("unet", "cnn")},
                                 group_of, MatchedRung(rung, keep=1, trials=len(trials)), planned_steps=planned_steps)
    controller = RestoredController(trials)
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    return scheduler, controller


def test_a_sweep_resumed_while_trials_wait_at_the_rung_decides_it_before_any_trains_on() -> None:
    at = RUNG_STEP * IMAGES_PER_STEP
    scheduler, controller = resumed([RestoredTrial("u1", "unet", Trial.PENDING, at, 1.0),
                                     RestoredTrial("u2", "unet", Trial.PENDING, at, 2.0),
                                     RestoredTrial("c1", "cnn", Trial.PENDING, at, 3.0),
                                     RestoredTrial("c2", "cnn", Trial.PENDING, at - IMAGES_PER_STEP, 4.0)])
    assert scheduler.choose_trial_to_run(controller).trial_id == "c2"  # not at the rung yet: it trains to it
    controller.trials[3].status = Trial.RUNNING
    decision = scheduler.on_trial_result(controller, controller.trials[3], {"images_seen": at, "step": RUNG_STEP,
                                                                           "fd": 4.0})
    assert decision == "STOP" and scheduler.kept == {"u1"} and sorted(controller.stopped) == ["c1", "u2"]
    assert scheduler.choose_trial_to_run(controller).trial_id == "u1"


def test_a_sweep_resumed_after_the_rung_was_decided_keeps_the_trial_that_went_on() -> None:
    at = RUNG_STEP * IMAGES_PER_STEP
    # the cnn's last report (3.0 at the rung) is better than the unet's at the rung was; the unet went on to 0.5
    scheduler, controller = resumed([RestoredTrial("u1", "unet", Trial.PENDING, at + 2 * IMAGES_PER_STEP, 0.5),
                                     RestoredTrial("u2", "unet", Trial.TERMINATED, at, 4.0),
                                     RestoredTrial("c1", "cnn", Trial.TERMINATED, at, 3.0),
                                     RestoredTrial("c2", "cnn", Trial.TERMINATED, at, 3.5)])
    assert scheduler.choose_trial_to_run(controller) is None  # this call decides; none was stopped
    assert scheduler.kept == {"u1"} and controller.stopped == []
    assert scheduler.choose_trial_to_run(controller).trial_id == "u1"


@pytest.mark.slow
def test_every_trial_waits_at_the_rung_then_only_the_leading_models_best_trial_goes_on(local_ray: None,
                                                                                        tmp_path: Path) -> None:
    """Two trials at once: were a paused trial to hold its place (Tune's own limiter), the first two to reach the
    rung would wait for each other forever."""
    # the unet leads; its best trial starts first, so it must wait at the rung for the three others and resume
    qualities = {"unet": [1.0, 2.0], "cnn": [3.0, 4.0]}
    spaces = {model: {POINT_NAME: model, "train": {"quality": tune.grid_search(values)}}
              for model, values in qualities.items()}
    settings = SweepSettings(num_samples=1, max_concurrent=2, resources={"cpu": 1},
                             report_every_images=IMAGES_PER_STEP, grace_images=RUNG_STEP * IMAGES_PER_STEP,
                             reduction_factor=2, max_failures=0, keep_models=1)
    experiment = Experiment("rung", known_curve, spaces, {}, settings, "fd",
                            planned_steps=planned_steps, keep_groups=settings.keep_models)
    run = run_experiment(LabStore(tmp_path / "lab"), experiment)
    results = run.results

    reports = {result.config[POINT_KEY]["train"]["quality"]: result.metrics_dataframe for result in results}
    assert len(reports) == 4 and not any(result.error for result in results)
    for quality, frame in reports.items():
        assert frame.step.iloc[0] == 1 and RUNG_STEP in frame.step.tolist(), (quality, frame)  # all reached the rung
    survivor = reports[1.0]
    assert survivor.step.tolist() == list(range(1, STEPS + 1))  # the unet's best trial trained its whole budget,
    assert survivor.resumed.tolist() == [False] * RUNG_STEP + [True] * (STEPS - RUNG_STEP)  # resumed after the wait
    for quality in (2.0, 3.0, 4.0):
        assert reports[quality].step.max() == RUNG_STEP, reports[quality]  # the others stopped there
    last_at_rung = max(frame.wall[frame.step == RUNG_STEP].max() for frame in reports.values())
    assert survivor.wall[survivor.step > RUNG_STEP].min() > last_at_rung  # nobody went past before all got there
    stopped = {result.config[POINT_KEY]["train"]["quality"]: run.stops.get(result.metrics["trial_id"]) for result in results}
    # who stopped each (the trials table's status): the rung, or ASHA within the model where it acted first
    assert stopped[1.0] is None and {stopped[q] for q in (2.0, 3.0, 4.0)} <= {STOPPED_AT_RUNG, STOPPED_BY_ASHA}, stopped
    assert stopped[3.0] == STOPPED_AT_RUNG or stopped[4.0] == STOPPED_AT_RUNG, stopped  # the cnn lost at the rung
