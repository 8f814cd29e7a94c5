"""``python -m jobs.sweep`` for real: Ray in local mode, real Tune trials, the real lab store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from diffusion.store import LabStore
from jobs.sweep import main
from jobs.trainable import FAIL_ONCE_ENV

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--preset", "huge"], "unknown preset 'huge'; accepted: full, quick, smoke"),
        (["--preset", "smoke", "--models", "vit"], "--models: unknown ['vit']; accepted: mlp, cnn, unet, resunet, attnunet"),
        (["--preset", "smoke", "--num-samples", "0"], "--num-samples must be a positive integer, got 0"),
    ],
)
def test_bad_flags_fail_before_any_trial(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main([*args, "--lab", str(tmp_path / "lab")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "body,message",
    [
        ("models:\n  mlp:\n    train: {lr: {loguniform: [0, 1]}}\n", "loguniform [0, 1] cannot be sampled"),
        ("models:\n  mlp:\n    train: {learning_rate: 0.1}\n", "unknown key(s) ['learning_rate']"),
        ("models:\n  mlp:\n    diffusion: {schedule: {choice: [linear, sigmoid]}}\n", "schedule 'sigmoid' is not one of"),
        ("sweep:\n  trials: 3\n", "sweep: unknown key(s) ['trials']"),
        ("models:\n  vit: {}\n", "models: unknown key(s) ['vit']"),
    ],
)
def test_bad_presets_name_the_bad_value(body: str, message: str, tmp_path: Path, capsys) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text(body)
    assert main(["--preset", str(preset), "--lab", str(tmp_path / "lab"), "--models", "mlp"]) == 2
    assert message in capsys.readouterr().err


def test_an_unreachable_lab_fails_before_any_trial(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--preset", "smoke", "--lab", str(blocker / "lab")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_smoke_sweep_exports_the_best_trials_and_retries_from_the_last_checkpoint(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env = {**os.environ, FAIL_ONCE_ENV: "15", "TMPDIR": ray_tmp, "RAY_ADDRESS": ""}
    result = subprocess.run([sys.executable, "-m", "jobs.sweep", "--preset", "smoke", "--models", "mlp", "unet",
                             "--lab", str(lab)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    store = LabStore(lab)
    assert set(store.list_models(kind="denoiser")) == {"mlp", "unet"}
    assert set(store.list_models(kind="vae")) == {"vae"} and store.list_models(kind="classifier") == ["classifier"]
    trials = store.read_table("trials")
    assert sorted(trials.model) == ["mlp", "unet"] and trials.is_best.all()
    assert (trials.status == "TERMINATED").all() and (trials.images_seen == 20 * 64).all()
    assert store.load_denoiser("unet").card.metrics["trial_id"] in set(trials.trial_id)

    history = store.read_table("trial_history")
    for trial_id, reports in history.groupby("trial_id"):
        # the loss every 5 steps (320 images), the FD every 10 (640 images); the failure
        # injected at step 15 was retried from the step-10 checkpoint, not from step 0
        assert reports.step.tolist() == [5, 10, 15, 20], reports
        assert reports.resumed.tolist() == [False, False, True, True]
        assert reports.loss.notna().all() and reports.fd.notna().tolist() == [False, True, False, True]
