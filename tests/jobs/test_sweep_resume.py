"""Kill a sweep's driver mid-run, then ``--resume``: every trial ends, nothing is redone or lost."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cluster.local import stop_processes, temp_dir_processes
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import TRIAL_HISTORY, TRIALS, TableStore

pytestmark = pytest.mark.slow  # starts a sweep on Ray, killed and resumed

ROOT = Path(__file__).resolve().parents[2]
LAST = 11  # 120 steps, a report and checkpoint every 10
PRESET = """
embeddings: {vae: {train: {steps: 60}}, classifier: {train: {steps: 20}}}
sweep: {num_samples: 3, max_concurrent: 1, eval_every_images: 320, report_every_images: 320, fd_samples: 64, fd_sampler_steps: 3,
        grace_images: 100000, reduction_factor: 2, max_failures: 1}
models:
  mlp:
    model: {width: 32, depth: 1}
    diffusion: {timesteps: 50}
    train: {steps: 120, batch_size: 32, warmup_steps: 2, lr: {loguniform: [5.0e-4, 3.0e-3]}}
"""


def sweep(lab: Path, preset: Path, ray_tmp: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": ray_tmp, "RAY_ADDRESS": ""}
    return subprocess.Popen([sys.executable, "-m", "jobs.sweep", "--preset", str(preset), "--models", "mlp",
                             "--lab", str(lab), *extra], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def half_way_trial_recorded(experiment: Path) -> bool:
    """Whether Tune's experiment state was saved after some unfinished trial made two checkpoints (the driver's
    record of checkpoints is what --resume restores from; a checkpoint written just before a save may not be in it
    yet, the one before it is)."""
    states = list(experiment.glob("experiment_state-*.json"))
    if not states:
        return False
    saved = max(p.stat().st_mtime for p in states)
    newest = checkpoints(experiment)
    return any(
        newest[trial] < LAST and sum(p.stat().st_mtime < saved for p in (experiment / trial).glob("checkpoint_*")) >= 2
        for trial in newest
    )


def checkpoints(experiment: Path) -> dict[str, int]:
    """Trial folder -> number of the newest checkpoint (one every 10 steps; LAST is the last)."""
    found: dict[str, int] = {}
    for path in experiment.glob("*/checkpoint_*"):
        found[path.parent.name] = max(found.get(path.parent.name, -1), int(path.name.rsplit("_", 1)[1]))
    return found


def check_console(output: str, lab: Path) -> None:
    """The resumed sweep's console: its own lines, a done line per trial it ran, where the log is (first and last);
    Tune's tables, Ray's logging and the workers' output only in that log (the callbacks came back from the
    experiment Tune restored)."""
    lines = output.splitlines()
    assert len(lines) <= 30, output
    for noise in ("Checkpoint successfully created", "Trial status", "== Status ==", "pid=", "INFO", "WARNING"):
        assert noise not in output, (noise, output)
    named = [line for line in lines if "Ray and Tune output: " in line]
    assert len(named) == 2 and named[0] == named[1] == lines[-1], output  # said at the start and last
    log = named[0].split("Ray and Tune output: ", 1)[1]
    assert Path(log).parent == lab / "logs" and len(list(Path(log).parent.glob("sweep-*.log"))) == 2  # killed run's too
    assert "== Status ==" in Path(log).read_text()  # Tune's status table
    assert re.search(r"^\[sweep\] mlp trial [123]/3  done at step 120/120  best fd \S+ \(\S+x floor\) at step \d+",
                     output, re.MULTILINE), output


def test_killed_driver_resumes_without_redoing_or_losing_trials(tmp_path: Path) -> None:
    lab, preset = tmp_path / "lab", tmp_path / "resume.yaml"
    preset.write_text(PRESET)
    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")
    experiment = lab / "tune" / "sweep-mlp"
    first = sweep(lab, preset, ray_tmp)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:  # wait for one finished trial and one half-way through
            state = checkpoints(experiment)
            if LAST in state.values() and half_way_trial_recorded(experiment):
                break
            assert first.poll() is None, first.stdout.read()[-3000:] if first.stdout else ""
            time.sleep(0.2)
        else:
            raise AssertionError(f"the sweep never reached the kill point: {checkpoints(experiment)}")
        at_kill = checkpoints(experiment)
        finished_before = {name for name, newest in at_kill.items() if newest == LAST}
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    stop_processes(temp_dir_processes(ray_tmp))  # what the killed driver's local cluster left; other clusters run on
    reports_before = {name: (experiment / name / "progress.csv").read_text() for name in finished_before}

    second = sweep(lab, preset, ray_tmp, "--resume")
    output, _ = second.communicate(timeout=600)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert second.returncode == 0, output[-4000:]
    assert "resuming" in output
    check_console(output, lab)

    trials = TableStore(LabStore(lab)).read(TRIALS)
    assert len(trials) == 3, trials
    assert (trials.status == "completed").all(), trials.error.tolist()
    assert (trials.images_seen == 120 * 32).all(), trials.images_seen.tolist()
    for name in finished_before:  # finished trials were not run again
        assert (experiment / name / "progress.csv").read_text() == reports_before[name]
    history = TableStore(LabStore(lab)).read(TRIAL_HISTORY)
    for trial_id, reports in history.groupby("trial_id"):
        assert reports.step.tolist() == list(range(10, 121, 10)), (trial_id, reports)
    # the trial cut off half-way continued from its checkpoint instead of starting again
    assert history.resumed.any(), (at_kill, history)
    assert "mlp" in ModelRegistry(LabStore(lab)).list_models(kind="denoiser")
