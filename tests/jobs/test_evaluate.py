"""``python -m jobs.evaluate`` for real: Ray in local mode, models trained in seconds, a corrupt one beside them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from diffusion.core.config import ClassifierRun, ConfigError, TrainConfig, VAERun
from diffusion.core.samplers import DenoisingPaths
from diffusion.embeddings.training import train_embedder
from diffusion.lab.pictures import PATHS_FILE
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore
from diffusion.lab.tables import ROBUSTNESS, ROBUSTNESS_SUMMARY, SCORES, TableStore
from diffusion.metrics.corruptions import CORRUPTIONS
from jobs.evaluate import main
from jobs.presets import load_preset
from tests.conftest import tiny_run

ROOT = Path(__file__).resolve().parents[2]
PRESET = """
evaluate:
  num_images: 48
  samplers:
    - {sampler: ddim, steps: 5}
    - {sampler: ddpm, steps: null, num_images: 24}
  pictures: {sampler: ddim, steps: 5}
  robustness: {n: 100, seeds: 2, severities: [0.0, 0.5, 1.0]}
  floor_draws: 2
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Embeddings and two denoisers trained for a few steps, and a third whose weights are cut short."""
    root = tmp_path_factory.mktemp("evaluate") / "lab"
    store = LabStore(root)
    fast = {"batch_size": 64, "warmup_steps": 2, "precision": "fp32"}
    train_embedder(store, "vae", VAERun(train=TrainConfig(steps=40, **fast)), torch.device("cpu"))
    train_embedder(store, "classifier", ClassifierRun(train=TrainConfig(steps=10, **fast)), torch.device("cpu"))
    for name, arch in (("mlp", "mlp"), ("unet", "unet"), ("broken", "cnn")):
        job = build_denoiser_run(tiny_run(arch, steps=10), torch.device("cpu"))
        job.trainer.fit()
        ModelRegistry(store).export_model(name, job.ema_model, job.run, {"train_seconds": 1.0})
    weights = root / "models" / "broken" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    return root


def evaluate(lab: Path, preset: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    try:
        return subprocess.run([sys.executable, "-m", "jobs.evaluate", "--preset", str(preset), "--lab", str(lab), *extra],
                              cwd=ROOT, env={**os.environ, "TMPDIR": ray_tmp, "RAY_ADDRESS": ""},
                              capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
def test_every_model_is_scored_against_its_floor_and_a_corrupt_one_does_not_stop_the_others(lab: Path, tmp_path: Path) -> None:
    preset = tmp_path / "eval.yaml"
    preset.write_text(PRESET)
    result = evaluate(lab, preset)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "broken" in result.stderr and "checksum" in result.stderr.lower() + result.stdout.lower()
    assert "[leaderboard]" in result.stdout

    store = LabStore(lab)
    scores = TableStore(store).read(SCORES)
    assert sorted(scores.model.unique()) == ["mlp", "unet"]
    assert len(scores) == 2 * 2 * 3  # models x sampler settings x embeddings
    ddpm = scores[scores.sampler == "ddpm"]
    assert (ddpm.steps == 50).all() and (ddpm.n == 24).all()  # all T steps, its own sample size
    assert (scores[scores.sampler == "ddim"].n == 48).all()
    assert ((scores.ratio - scores.fd / scores.floor_mean).abs() < 1e-9).all()
    assert ((scores.ratio_low <= scores.ratio) & (scores.ratio <= scores.ratio_high) & (scores.fd_std > 0)).all()
    assert (scores.floor_std > 0).all() and (scores.seconds_per_image > 0).all() and (scores.parameters > 0).all()
    # one floor per (embedding, N), shared by every model
    assert scores.groupby(["embedding", "n"]).floor_mean.nunique().max() == 1

    for name in ("mlp", "unet"):
        card = ModelRegistry(store).read_card(name)
        at_largest_n = scores[(scores.model == name) & (scores.embedding == "vae") & (scores.n == 48)]
        assert card.metrics["fd_ratio_vae"] == pytest.approx(at_largest_n.ratio.min()) and card.metrics["fd_n"] == 48
        paths = DenoisingPaths.from_bytes(store.read_bytes(ModelRegistry(store).model_path(name, PATHS_FILE)))
        assert paths.x_t.shape[:2] == paths.x0.shape[:2] == (5, 5) and len(paths.levels) == 5
        for picture in ("grid.png", "paths.png", "paths.gif"):
            assert store.read_bytes(ModelRegistry(store).model_path(name, picture))[:3] in (b"\x89PN", b"GIF")

    curve = TableStore(store).read(ROBUSTNESS)
    assert set(curve.corruption) == set(CORRUPTIONS) and set(curve.embedding) == {"vae", "classifier", "pixels"}
    assert len(curve) == len(CORRUPTIONS) * 3 * 3 * 2  # corruptions x severities x embeddings x seeds
    assert len(TableStore(store).read(ROBUSTNESS_SUMMARY)) == len(CORRUPTIONS) * 3


@pytest.mark.parametrize(
    "body,extra,message",
    [
        ("evaluate: {samplers: [{sampler: ddim, steps: 500}]}\n", ["--models", "mlp"],
         "model 'mlp', sampler ddim: steps must be between 1 and 50"),
        ("{}\n", ["--models", "nothing"], "no exported denoiser named ['nothing']"),
    ],
)
def test_bad_requests_fail_before_any_work(lab: Path, tmp_path: Path, body: str, extra: list[str], message: str, capsys) -> None:
    preset = tmp_path / "eval.yaml"
    preset.write_text(body)
    assert main(["--preset", str(preset), "--lab", str(lab), *extra]) == 2
    assert message in capsys.readouterr().err


def test_an_empty_lab_says_to_sweep_first(tmp_path: Path, capsys) -> None:
    assert main(["--preset", "smoke", "--lab", str(tmp_path / "empty")]) == 2
    error = capsys.readouterr().err
    assert "no exported denoisers" in error and "run python -m jobs.sweep first" in error


@pytest.mark.parametrize(
    "body,message",
    [
        ("evaluate: {samplers: [{sampler: euler}]}\n", "evaluate.samplers[0]: unknown sampler 'euler'; accepted: ddpm, ddim"),
        ("evaluate: {samplers: []}\n", "give at least one sampler setting"),
        ("evaluate: {embeddings: [classifier]}\n", "must include 'vae'"),
        ("evaluate: {robustness: {severities: [0.5, 1.0]}}\n", "include 0 (the floor)"),
        ("evaluate: {robustness: {corruptions: [blur]}}\n", "unknown corruption 'blur'"),
        ("evaluate: {num_images: 1}\n", "evaluate.num_images must be at least 2, got 1"),
        ("evaluate: {samplers: [{sampler: ddim, eta: 2}]}\n", "eta must be between 0 and 1"),
        ("evaluate: {samplers: [{sampler: dpmpp2m, eta: 0.5}]}\n", "samplers[0].eta: dpmpp2m is a deterministic solver"),
        ("evaluate: {sampler: ddim}\n", "unknown key(s) ['sampler']"),
    ],
)
def test_bad_evaluate_sections_name_the_bad_value(tmp_path: Path, body: str, message: str) -> None:
    preset = tmp_path / "bad.yaml"
    preset.write_text(body)
    with pytest.raises(ConfigError) as error:
        load_preset(str(preset))
    assert message in str(error.value)
