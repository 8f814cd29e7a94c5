"""What every Tune trial of the lab checkpoints with each report: its resume state and its best-scored weights.

A checkpoint folder holds the trainer's full resume state (``trainer_state.pt``: torch.save,
read back with weights_only=True) and the EMA weights of the trial's best-scored report so far
(``best.safetensors``, with ``best.json``: the score, the step, and what the trial chose to say
about it). The sweep exports exactly the weights that were scored, whichever checkpoints Tune
keeps. After a failure Tune restarts the trial from ``tune.get_checkpoint()``, on whatever
device the retry was given (the resume state is portable).
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

from diffusion.core.training import Trainer, TrainProgress
from diffusion.lab.checkpoint import weights_to_bytes
from jobs.presets import POINT_NAME

POINT_KEY = "point"
"""The trial config's key holding its group's point: ``{"name": <model or kind>, <section>: {...}, ...}``."""
STATE_FILE = "trainer_state.pt"
BEST_WEIGHTS_FILE = "best.safetensors"
BEST_INFO_FILE = "best.json"


def group_of(config: dict[str, Any]) -> str:
    """The group a trial config belongs to (its model, or its embedding kind): the experiment's grouping key."""
    return config[POINT_KEY][POINT_NAME]


def read_best(directory: str) -> tuple[bytes, dict[str, Any]] | None:
    """The best-scored EMA weights (safetensors bytes) and their report (score, step, ...) in a checkpoint folder."""
    weights, info = os.path.join(directory, BEST_WEIGHTS_FILE), os.path.join(directory, BEST_INFO_FILE)
    if not (os.path.exists(weights) and os.path.exists(info)):
        return None
    with open(weights, "rb") as w, open(info) as i:
        return w.read(), json.load(i)


class TrialCheckpoints:
    """A trial's checkpoints: resume from Tune's last one, keep the best-scored weights, report with a new one.

    ``metric`` names the score in the best report's info (lower is better: FD, validation loss).
    """

    def __init__(self, trainer: Trainer, metric: str) -> None:
        self.metric = metric
        self.best: tuple[bytes, dict[str, Any]] | None = None
        checkpoint = tune.get_checkpoint()
        self.resumed = checkpoint is not None
        if checkpoint is not None:
            with checkpoint.as_directory() as directory, open(os.path.join(directory, STATE_FILE), "rb") as handle:
                trainer.load_state(handle.read())
                self.best = read_best(directory)

    def offer(self, model: nn.Module, score: float, info: dict[str, Any]) -> bool:
        """Keep ``model``'s weights as the best if ``score`` beats the best so far; True if it did."""
        if self.best is not None and not score < self.best[1][self.metric]:
            return False
        self.best = (weights_to_bytes(model), {self.metric: score, **info})
        return True

    def report(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """``tune.report(metrics)`` with a checkpoint of the trainer's state and the best weights."""
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, STATE_FILE), "wb") as handle:
                handle.write(trainer.save_state())
            if self.best is not None:
                with open(os.path.join(directory, BEST_WEIGHTS_FILE), "wb") as handle:
                    handle.write(self.best[0])
                with open(os.path.join(directory, BEST_INFO_FILE), "w") as handle:
                    json.dump(self.best[1], handle)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def enter_trial_folder() -> None:
    """Work in this trial's own folder, as Tune's first trial in a process does: a process that Tune reuses for the
    next trial (``TuneConfig(reuse_actors=True)``) would otherwise stay in the folder of the trial it ran before.
    Every trial of ``jobs.experiment`` calls it first (``in_own_folder``)."""
    if os.environ.get("RAY_CHDIR_TO_TRIAL_DIR", "1") == "0":  # Tune's own switch for the same
        return
    folder = tune.get_context().get_trial_dir()
    os.makedirs(folder, exist_ok=True)
    os.chdir(folder)


def progress_metrics(progress: TrainProgress, resumed: bool, device: torch.device) -> dict[str, Any]:
    """What every report of every trial carries: position, loss, learning rate, speed, and where it ran."""
    return {"step": progress.step, "images_seen": progress.images_seen, "loss": progress.loss, "lr": progress.lr,
            "images_per_s": progress.images_per_s, "resumed": resumed, "device": str(device),
            "node_id": ray.get_runtime_context().get_node_id()}  # hosts can share an IP (several nodes on one machine)


def report_every(report_every_images: int, batch_size: int) -> int:
    """Training steps between two reports."""
    return max(1, report_every_images // batch_size)
