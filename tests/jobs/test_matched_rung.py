"""The budget-matched rung (``jobs.scheduling``): every trial of every model waits at the same budget until all have
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

from diffusion.lab.store import LabStore
from jobs.experiment import Experiment, run_experiment
from jobs.presets import POINT_NAME, SweepSettings
from jobs.scheduling import matched_rung_survivors
from jobs.trial_state import POINT_KEY

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
    results = run_experiment(LabStore(tmp_path / "lab"), experiment)

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
