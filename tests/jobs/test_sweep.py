"""``python -m jobs.sweep`` for real: Ray in local mode, real Tune trials, the real lab store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from diffusion.core.config import DataConfig
from diffusion.core.images import quantize_8bit
from diffusion.core.samplers import SamplerSetting, sample
from diffusion.core.schedules import NoiseSchedule
from diffusion.embeddings.loading import load_embedder
from diffusion.lab.datasets import load_dataset
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import TRIAL_HISTORY, TRIALS, TableStore
from diffusion.metrics.frechet import feature_stats, frechet_distance
from jobs.presets import load_preset, run_config
from jobs.sweep import main
from jobs.trial import FAIL_ONCE_ENV, SPOIL_AFTER_ENV
from tests.mnist_files import write_torchvision_mnist

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--preset", "huge"], "unknown preset 'huge'; accepted: full, gpu, quick, smoke"),
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
        ("sweep:\n  keep_models: 0\n", "keep_models must be a positive integer, got 0"),
        ("models:\n  vit: {}\n", "models: unknown key(s) ['vit']"),
        ("embeddings:\n  vae: {steps: 150}\n",
         "embeddings.vae: training settings go under 'train:' (and the network's under 'model:'), e.g. vae: {train: {steps: 150}}"),
        ("embeddings:\n  vae: {model: {latent_dim: {choice: [8, 0]}}}\n", "latent_dim"),
        ("embeddings:\n  vae: {train: {lr: {uniform: [1, 1]}}}\n", "embeddings.vae.train.lr: uniform [1, 1] cannot be sampled"),
        ("embeddings:\n  num_trials: 2\n", "embeddings: unknown key(s) ['num_trials']"),
        ("sweep:\n  search: bayes\n", "unknown search algorithm 'bayes'; accepted: random, "),
        ("recipe:\n  model: {width: 8}\n", "recipe: unknown key(s) ['model']; accepted: ['diffusion', 'train']"),
        ("recipe:\n  train: {learning_rate: 0.1}\nmodels:\n  mlp: {}\n", "unknown key(s) ['learning_rate']"),
        ("recipe:\n  diffusion: {prediction: score}\nmodels:\n  mlp: {}\n", "prediction"),
        ("embeddings:\n  search: zoopt\n", "'zoopt' needs the 'zoopt' package, which is not installed; run: pip install zoopt"),
    ],
)
def test_bad_presets_name_the_bad_value(body: str, message: str, tmp_path: Path, capsys) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text(body)
    assert main(["--preset", str(preset), "--lab", str(tmp_path / "lab"), "--models", "mlp"]) == 2
    assert message in capsys.readouterr().err


def test_the_recipe_section_gives_every_model_one_recipe_and_a_models_own_key_wins(tmp_path: Path) -> None:
    preset = tmp_path / "shared.yaml"
    preset.write_text("recipe:\n  diffusion: {prediction: v, schedule: cosine}\n  train: {steps: 30, lr: 2.0e-3}\n"
                      "models:\n  mlp: {}\n  unet:\n    model: {width: 8}\n    train: {lr: 1.0e-3}\n")
    loaded = load_preset(str(preset))
    runs = {model: run_config(model, sections, loaded.dataset) for model, sections in loaded.models.items()}
    assert {run.diffusion.prediction for run in runs.values()} == {"v"} and runs["unet"].model.width == 8
    assert (runs["mlp"].train.lr, runs["unet"].train.lr, runs["unet"].train.steps) == (2e-3, 1e-3, 30)


def test_the_quick_preset_trains_every_model_one_budget_with_one_recipe() -> None:
    quick = load_preset("quick")
    runs = [run_config(model, sections, quick.dataset) for model, sections in quick.models.items()]
    assert len(runs) == 5 and len({(run.diffusion, run.train) for run in runs}) == 1  # only the network differs


def test_an_unreachable_lab_fails_before_any_trial(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--preset", "smoke", "--lab", str(blocker / "lab")]) == 2
    assert "cannot write" in capsys.readouterr().err


GPU_SHARE_PRESET = """
dataset: mnist                      # full MNIST: here the embedded set in torchvision's files, copied into the lab
embeddings: {resources: {cpu: 1, gpu: 0.25}, vae: {train: {steps: 60}}, classifier: {train: {steps: 20}}}
sweep: {num_samples: 2, max_concurrent: 4, resources: {cpu: 0.5, gpu: 0.25}, eval_every_images: 640,
        report_every_images: 320, fd_samples: 100, fd_sampler_steps: 5, grace_images: 100000, reduction_factor: 2,
        max_failures: 2, search: optuna}   # one Optuna searcher per model (jobs.searchers.GroupedSearcher)
models:
  mlp:
    model: {width: 32, depth: 1}
    diffusion: {timesteps: 100}
    train: {steps: 20, batch_size: 64, warmup_steps: 2, lr: {loguniform: [5.0e-4, 3.0e-3]}}
  unet:
    model: {width: 8, depth: 1}
    diffusion: {timesteps: 100, schedule: {choice: [linear, cosine]}}
    train: {steps: 20, batch_size: 64, warmup_steps: 2}
"""
# a sweep on logical GPUs: Ray schedules the GPU shares, the work runs on the CPU (no CUDA here)
WITH_LOGICAL_GPU = ("import sys, ray; ray.init(address='local', num_cpus=2, num_gpus=1, include_dashboard=False); "
                    "from jobs.sweep import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.slow
def test_one_experiment_on_gpu_shares_exports_the_scored_weights_and_retries_from_the_last_checkpoint(tmp_path: Path) -> None:
    """Two models x two trials in one Tune experiment on fractional (logical) GPUs, drawn by one Optuna searcher per
    model, full MNIST read from the lab store.

    Every trial fails once at step 15 (retried from its step-10 checkpoint) and has its weights
    spoiled after step 10, so its FD gets worse late: the export must be the step-10 weights.
    """
    lab, preset = tmp_path / "lab", tmp_path / "gpu-share.yaml"
    preset.write_text(GPU_SHARE_PRESET)
    home = tmp_path / "home"  # no ~/.cache/diffusion-lab/mnist: a node can only read the lab store's copy
    env = {**os.environ, "HOME": str(home), "RAY_ADDRESS": ""}
    mnist = write_torchvision_mnist(tmp_path / "mnist")
    stored = subprocess.run([sys.executable, "-m", "diffusion", "data", "--dataset", "mnist", "--data-root", str(mnist),
                             "--no-download", "--lab", str(lab)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert stored.returncode == 0 and "4000 train and 1000 test images" in stored.stdout, stored.stderr
    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env |= {FAIL_ONCE_ENV: "15", SPOIL_AFTER_ENV: "10", "TMPDIR": ray_tmp}
    result = subprocess.run([sys.executable, "-c", WITH_LOGICAL_GPU, "--preset", str(preset), "--lab", str(lab)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 trial(s): 2 of mlp, 2 of unet (optuna search)" in result.stdout
    assert "1 of vae, 1 of classifier" in result.stdout  # embeddings fixed at every value: one trial each
    store = LabStore(lab)
    models, tables = ModelRegistry(store), TableStore(store)
    assert set(models.list_models(kind="denoiser")) == {"mlp", "unet"}
    assert set(models.list_models(kind="vae")) == {"vae"} and models.list_models(kind="classifier") == ["classifier"]
    assert len([p for p in (lab / "tune" / "sweep-mlp-unet").iterdir() if p.is_dir()]) == 4  # one experiment, 4 trials
    trials = tables.read(TRIALS)
    assert sorted(trials.model) == ["mlp", "mlp", "unet", "unet"]
    assert (trials.status == "completed").all() and (trials.images_seen == 20 * 64).all()
    assert (trials.steps_reached == 20).all() and (trials.planned_steps == 20).all()
    by_model = trials.set_index("model")  # a key left at its default shows the default, not None
    assert (by_model.loc["mlp", "diffusion.schedule"] == "linear").all() and (by_model.loc["unet", "train.lr"] == 1e-3).all()
    assert (trials.device == "cpu").all()  # a logical GPU on a machine without CUDA: the work runs on the CPU
    assert trials.groupby("model").is_best.sum().tolist() == [1, 1]

    history = tables.read(TRIAL_HISTORY)
    for trial_id, reports in history.groupby("trial_id"):
        # the loss every 5 steps (320 images), the FD every 10 (640 images); the failure
        # injected at step 15 was retried from the step-10 checkpoint, not from step 0
        assert reports.step.tolist() == [5, 10, 15, 20], reports
        assert reports.resumed.tolist() == [False, False, True, True]
        assert reports.loss.notna().all() and reports.fd.notna().tolist() == [False, True, False, True]
        assert reports.fd.iloc[3] > reports.fd.iloc[1], reports  # spoiled after step 10: the FD got worse
        scored = reports.dropna(subset=["fd"])  # each FD report carries its ratio's 95% interval
        assert ((scored.ratio_low < scored.ratio) & (scored.ratio < scored.ratio_high)).all(), scored

    torch.set_num_threads(1)  # as in the trial (0.5 CPU): the same kernels, the same sums
    test = load_dataset(DataConfig(dataset="mnist", data_root=str(home)), "test", store).images[:100]
    for model in ("mlp", "unet"):
        exported = models.load_denoiser(model)
        card = exported.card.metrics
        best = history[history.model == model].dropna(subset=["fd"]).sort_values("fd").iloc[0]
        assert card["trial_id"] == best.trial_id and trials.set_index("trial_id").is_best[best.trial_id]
        assert card["fd_step_sweep"] == card["steps"] == 10 and card["fd_vae_sweep"] == pytest.approx(best.fd, rel=1e-9)
        assert card["fd_embedding_sweep"] == models.read_card("vae").weights_sha256  # measured in the lab's VAE
        # the exported weights are the scored ones: the same sample gives the recorded FD
        schedule = NoiseSchedule.from_config(exported.run.diffusion)
        images = sample(exported.model, schedule, 100, SamplerSetting("ddim", 5), seed=0)
        embedder = load_embedder("vae", store)
        fd = frechet_distance(feature_stats(embedder, quantize_8bit(images)), feature_stats(embedder, test)).fd  # scored as 8-bit images
        assert fd == pytest.approx(card["fd_vae_sweep"], rel=1e-4), (model, fd, card)


def test_a_full_mnist_sweep_without_a_copy_names_the_command_that_brings_it(tmp_path: Path, capsys,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    preset = tmp_path / "full-mnist.yaml"
    preset.write_text("dataset: mnist\nmodels:\n  mlp: {}\n")
    assert main(["--preset", str(preset), "--lab", str(tmp_path / "lab")]) == 2
    assert "python -m diffusion data --dataset mnist --lab" in capsys.readouterr().err
