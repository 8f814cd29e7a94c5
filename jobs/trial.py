"""The one Ray Tune trial of every kind of model: train, judge each report, checkpoint, resume.

A trial reads its kind and point from its config (``jobs.kinds``), builds its run config once
and trains it with the core's loop. Every ``report_every_images`` it reports the mean training
loss since the last report, what its kind's judge adds (a denoiser's FD at its FD reports, an
embedding's validation loss), and a checkpoint. A checkpoint folder holds the trainer's full
resume state (``trainer_state.pt``: torch.save, read back with weights_only=True), the run config
(``run.json``) and the weights of the trial's best-judged report so far (``best.safetensors``,
with ``best.json``: the score, the step and what the kind keeps of it). The export reads exactly
those weights and that run config, whichever checkpoints Tune keeps. After a failure Tune
restarts the trial from ``tune.get_checkpoint()``, on whatever device the retry was given (the
resume state is portable).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import ray
import torch
from ray import tune
from torch import nn

from diffusion.core.config import from_dict, to_dict
from diffusion.core.training import Trainer, TrainProgress
from diffusion.lab.checkpoint import weights_to_bytes
from diffusion.lab.kinds import STORED_KINDS
from diffusion.lab.store import LabStore, LabStoreError
from diffusion.lab.tables import TRIAL_HISTORY as H
from jobs.kinds import MODEL_KINDS, POINT_KEY, POINT_KIND, TrialContext, report_every, trial_run
from jobs.ray_session import task_device

STATE_FILE = "trainer_state.pt"
RUN_FILE = "run.json"
BEST_WEIGHTS_FILE = "best.safetensors"
BEST_INFO_FILE = "best.json"
FAIL_ONCE_ENV = "DIFFUSION_LAB_FAIL_ONCE_AT_STEP"  # test hook: raise once at this step, to prove retries resume
SPOIL_AFTER_ENV = "DIFFUSION_LAB_SPOIL_WEIGHTS_AFTER_STEP"  # test hook: scramble the weights after this step
HOOKED_KINDS = ("denoiser",)
"""The kinds the two test hooks act on: the embeddings are the yardstick such a test measures the denoisers with."""


def train_trial(config: dict[str, Any]) -> None:
    """Tune function trainable of every kind: its group's point under ``point``, the job's settings under ``_job``."""
    job = config["_job"]
    kind = MODEL_KINDS[config[POINT_KEY][POINT_KIND]]
    run = trial_run(config)
    device = task_device()
    torch.set_num_threads(max(1, int(job["cpus"])))
    body = kind.start(run, TrialContext(LabStore(job["lab"]), device, job))
    checkpoints = TrialCheckpoints(body.trainer, kind.metric, run, keep_last=job.get("export") == "last")
    hooked = kind.name in HOOKED_KINDS
    fail_at = int(os.environ.get(FAIL_ONCE_ENV, "0")) if hooked else 0
    spoil_after = int(os.environ.get(SPOIL_AFTER_ENV, "0")) if hooked else 0

    def report(trainer: Trainer, progress: TrainProgress) -> None:
        if fail_at and progress.step >= fail_at and not checkpoints.resumed:
            raise RuntimeError(f"injected failure at step {progress.step} ({FAIL_ONCE_ENV})")
        if spoil_after and progress.step > spoil_after:
            _spoil(trainer)
        metrics = progress_metrics(progress, checkpoints.resumed, device)
        judged = body.judge(trainer, progress)
        if judged is not None:
            metrics |= judged.metrics
            checkpoints.offer(judged.weights, judged.score,
                              {**judged.info, H.step: progress.step, H.images_seen: progress.images_seen})
        checkpoints.report(trainer, metrics)

    body.trainer.fit(callback=report, every=report_every(job["report_every_images"], run.train.batch_size))


def _spoil(trainer: Trainer) -> None:
    """Zero every weight (network and EMA) and set every bias to -10: a denoiser's output is then -10 everywhere,
    so every prediction pushes the clean-image estimate to white, far from any digit in every embedding."""
    with torch.no_grad():
        for model in (trainer.model, trainer.ema.model):
            for name, parameter in model.named_parameters():
                parameter.fill_(-10.0 if name.endswith("bias") else 0.0)


class TrialCheckpoints:
    """A trial's checkpoints: resume from Tune's last one, keep the best-judged weights, report with a new one.

    ``metric`` names the score in the best report's info (lower is better: FD, validation loss);
    ``run`` is the trial's run config, carried in every checkpoint for the export. ``keep_last``: keep the weights of
    the last judged report instead of the best one (the sweep's ``export: last``).
    """

    def __init__(self, trainer: Trainer, metric: str, run: Any, keep_last: bool = False) -> None:
        self.metric, self.keep_last = metric, keep_last
        self.run_json = json.dumps(to_dict(run), sort_keys=True)
        self.best: tuple[bytes, dict[str, Any]] | None = None
        checkpoint = tune.get_checkpoint()
        self.resumed = checkpoint is not None
        if checkpoint is not None:
            with checkpoint.as_directory() as directory, open(os.path.join(directory, STATE_FILE), "rb") as handle:
                trainer.load_state(handle.read())
                self.best = read_best(directory)

    def offer(self, model: nn.Module, score: float, info: dict[str, Any]) -> bool:
        """Keep ``model``'s weights if ``score`` beats the best so far (or, with ``keep_last``, always); True if kept."""
        if self.best is not None and not self.keep_last and not score < self.best[1][self.metric]:
            return False
        self.best = (weights_to_bytes(model), {self.metric: score, **info})
        return True

    def report(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """``tune.report(metrics)`` with a checkpoint of the trainer's state, the run config and the best weights."""
        files: dict[str, bytes] = {STATE_FILE: trainer.save_state(), RUN_FILE: self.run_json.encode()}
        if self.best is not None:
            files |= {BEST_WEIGHTS_FILE: self.best[0], BEST_INFO_FILE: json.dumps(self.best[1]).encode()}
        with tempfile.TemporaryDirectory() as directory:
            for name, data in files.items():
                with open(os.path.join(directory, name), "wb") as handle:
                    handle.write(data)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def read_best(directory: str) -> tuple[bytes, dict[str, Any]] | None:
    """The best-judged weights (safetensors bytes) and their report (score, step, ...) in a checkpoint folder."""
    weights, info = os.path.join(directory, BEST_WEIGHTS_FILE), os.path.join(directory, BEST_INFO_FILE)
    if not (os.path.exists(weights) and os.path.exists(info)):
        return None
    with open(weights, "rb") as w, open(info) as i:
        return w.read(), json.load(i)


def read_export(checkpoint: str, kind: str) -> tuple[Any, bytes, dict[str, Any]]:
    """(run config, best weights, their report) that a trial's checkpoint carries: what the export writes."""
    with tune.Checkpoint(checkpoint).as_directory() as directory:
        found = read_best(directory)
        run_path = os.path.join(directory, RUN_FILE)
        if found is None or not os.path.exists(run_path):
            raise LabStoreError(f"{checkpoint}: the checkpoint carries no best weights or no run config; nothing to export")
        with open(run_path) as handle:
            run = from_dict(STORED_KINDS[kind].config_type, json.load(handle), f"{checkpoint}/{RUN_FILE}")
    return run, *found


def enter_trial_folder() -> None:
    """Work in this trial's own folder, as Tune's first trial in a process does: a process that Tune reuses for the
    next trial (``TuneConfig(reuse_actors=True)``) would otherwise stay in the folder of the trial it ran before."""
    if os.environ.get("RAY_CHDIR_TO_TRIAL_DIR", "1") == "0":  # Tune's own switch for the same
        return
    folder = tune.get_context().get_trial_dir()
    os.makedirs(folder, exist_ok=True)
    os.chdir(folder)


def progress_metrics(progress: TrainProgress, resumed: bool, device: torch.device) -> dict[str, Any]:
    """What every report of every trial carries: position, loss, learning rate, speed, and where it ran."""
    # a report's keys are the history tables' columns (TRIAL_HISTORY and EMBEDDING_HISTORY name them alike)
    return {H.step: progress.step, H.images_seen: progress.images_seen, H.loss: progress.loss, "lr": progress.lr,
            "train_images_per_s": progress.images_per_s, H.resumed: resumed, H.device: str(device),
            H.node_id: ray.get_runtime_context().get_node_id()}  # hosts can share an IP (several nodes on one machine)
