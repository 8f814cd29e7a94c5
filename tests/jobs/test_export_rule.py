"""Which weights a sweep exports: the best report's (a search) or the last one's (one budget for every model)."""

from __future__ import annotations

import pytest
import torch

from diffusion.core.config import ConfigError, DiffusionConfig, RunConfig, TrainConfig, from_dict
from diffusion.core.models import denoiser_config
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.tables import TRIALS
from jobs.experiment import best_trial
from jobs.presets import SweepSettings, load_preset
from jobs.trial import TrialCheckpoints


def _trainer() -> object:
    run = RunConfig(model=denoiser_config("mlp", width=8, depth=1), diffusion=DiffusionConfig(timesteps=10),
                    train=TrainConfig(steps=1, batch_size=4, warmup_steps=0, precision="fp32"))
    return build_denoiser_run(run, torch.device("cpu"), torch.zeros(8, 1, 28, 28)), run


@pytest.mark.parametrize("keep_last,kept", [(False, [1.0, 1.0]), (True, [1.0, 2.0])])
def test_a_trial_keeps_its_best_or_its_last_judged_weights(keep_last: bool, kept: list[float]) -> None:
    job, run = _trainer()
    checkpoints = TrialCheckpoints(job.trainer, "fd", run, keep_last=keep_last)  # outside Tune: no checkpoint to resume
    found = []
    for score in (1.0, 2.0):  # the second report scores worse
        checkpoints.offer(job.ema_model, score, {"step": int(score)})
        found.append(checkpoints.best[1]["fd"])
    assert found == kept


def test_the_export_chooses_the_trial_by_its_best_or_its_last_score() -> None:
    rows = [{TRIALS.model: "unet", TRIALS.checkpoint: "a", "best_fd": 1.0, "final_fd": 3.0},
            {TRIALS.model: "unet", TRIALS.checkpoint: "b", "best_fd": 2.0, "final_fd": 2.5}]
    assert best_trial(rows, "unet", "fd", TRIALS)[TRIALS.checkpoint] == "a"
    assert best_trial(rows, "unet", "fd", TRIALS, by="final_fd")[TRIALS.checkpoint] == "b"
    assert [row[TRIALS.is_best] for row in rows] == [False, True]


def test_the_rule_is_checked_and_the_main_job_exports_each_models_last_weights() -> None:
    assert load_preset("quick").sweep.export == "last" and load_preset("smoke").sweep.export == "best"
    with pytest.raises(ConfigError, match=r"export 'newest' is not one of \['best', 'last'\]"):
        from_dict(SweepSettings, {"export": "newest"})
