"""What a lab job prints where (``jobs.console``): its own lines on the console; Ray's logging, warnings and Tune's
tables in ``<lab>/logs``; a line per trial now and then and when it ends."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from diffusion.lab.store import LabStore
from jobs.console import TrialLines, job_log, say
from jobs.kinds import group_of


def test_the_job_log_takes_rays_logging_and_warnings_and_the_console_names_it(tmp_path: Path,
                                                                              capfd: pytest.CaptureFixture[str]) -> None:
    ray_handlers = list(logging.getLogger("ray").handlers)
    with job_log(LabStore(tmp_path / "lab"), "sweep") as uri:
        logging.getLogger("ray.train._internal.storage").info("Checkpoint successfully created at: here")
        logging.getLogger("ray.tune.execution.experiment_state").warning("Experiment state snapshotting ...")
        warnings.warn("something Ray deprecates", UserWarning, stacklevel=1)
        say("[sweep] mlp trial 1/1  done at step 20/20")
    out, err = capfd.readouterr()
    [log] = (tmp_path / "lab" / "logs").glob("sweep-*.log")
    assert uri == str(log)
    assert out.splitlines() == [f"[sweep] Ray and Tune output: {log}", "[sweep] mlp trial 1/1  done at step 20/20",
                                f"[sweep] Ray and Tune output: {log}"]
    assert err == ""
    text = log.read_text()
    for line in ("Checkpoint successfully created at: here", "Experiment state snapshotting", "something Ray deprecates",
                 "[sweep] mlp trial 1/1  done at step 20/20"):
        assert line in text
    assert logging.getLogger("ray").handlers == ray_handlers  # Ray's console handler is back after the job


def trial(trial_id: str, model: str, **last_result: Any) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"point": {"name": model}}, last_result=last_result, path="/t")


def test_trial_lines_say_where_each_trial_is_now_and_then_and_how_it_ended(capsys: pytest.CaptureFixture[str]) -> None:
    lines = TrialLines("sweep", "fd", group_of, {"mlp": 1, "unet": 2}, planned_steps=lambda config: 1700, every_s=0)
    mlp, first, second = trial("a", "mlp"), trial("b", "unet"), trial("c", "unet")
    trials = [mlp, first, second]
    for each in trials:
        lines.on_trial_start(0, trials, each)
    lines.on_trial_result(1, trials, second, {"step": 700, "loss": 0.2})  # no FD: no line
    first.last_result = {"step": 400}
    lines.on_trial_recover(1, [mlp, second, first], first)  # Tune moves a retried trial to the end: it keeps its number
    lines.on_trial_result(2, trials, second, {"step": 800, "fd": 41.27, "ratio": 3.14, "time_this_iter_s": 12.3})
    lines.on_trial_result(3, trials, second, {"step": 900, "fd": 45.0, "ratio": 3.4, "time_this_iter_s": 0.52})
    second.last_result = {"step": 900, "time_total_s": 140.2}
    lines.on_trial_complete(4, trials, second)
    lines.on_trial_result(5, trials, first, {"step": 1700, "fd": 30.0, "time_this_iter_s": 9.0})  # its done line says it
    first.last_result = {"step": 1700, "time_total_s": 300.0}
    lines.on_trial_complete(6, trials, first)
    lines.on_trial_complete(7, trials, mlp)
    assert capsys.readouterr().out.splitlines() == [
        "[sweep] unet trial 1/2  failed at step 400/1700; retrying from its last checkpoint",
        "[sweep] unet trial 2/2  step 800/1700  fd 41.27 (3.14x floor)  12 s/report",
        "[sweep] unet trial 2/2  step 900/1700  fd 45 (3.4x floor)  0.52 s/report",
        "[sweep] unet trial 2/2  stopped early at step 900/1700  best fd 41.27 (3.14x floor) at step 800  140 s",
        "[sweep] unet trial 1/2  done at step 1700/1700  best fd 30 at step 1700  300 s",
        "[sweep] mlp trial 1/1  done at step ?/1700  no fd reported",
    ]
