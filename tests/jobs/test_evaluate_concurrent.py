"""Two evaluations on one lab store at once keep every row of both: ``python -m jobs.evaluate`` twice (each its own
local Ray), and the same work (evaluate_model, record_best, merge_scores) in two plain processes."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from diffusion.core.config import ClassifierRun, TrainConfig, VAERun
from diffusion.core.samplers import SamplerSetting
from diffusion.embeddings.training import train_embedder
from diffusion.lab.recipe import build_denoiser_run
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore, StaleMetrics
from diffusion.lab.tables import SCORES, TableStore
from jobs.evaluate import merge_scores, record_best
from jobs.model_tasks import compute_floors, evaluate_model
from jobs.presets import EvaluateSettings
from tests.conftest import tiny_run
from tests.diffusion.metrics.test_scoring import score_row
from tests.servers import ray_tmpdir

pytestmark = pytest.mark.slow  # starts two evaluation jobs on Ray

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
PRESET = """
evaluate:
  num_images: 16
  samplers: [{sampler: ddim, steps: 2}]
  embeddings: [vae]
  pictures: {sampler: ddim, steps: 2}
  robustness: null
  floor_draws: 2
"""
GROUPS = {"first": ["a1", "a2"], "second": ["b1", "b2"]}


def build_lab(root: Path) -> LabStore:
    """Embeddings and four denoisers trained for a few steps."""
    store = LabStore(root)
    fast = {"batch_size": 64, "warmup_steps": 2, "precision": "fp32"}
    train_embedder(store, "vae", VAERun(train=TrainConfig(steps=30, **fast)), CPU)
    train_embedder(store, "classifier", ClassifierRun(train=TrainConfig(steps=10, **fast)), CPU)
    for name in (m for group in GROUPS.values() for m in group):
        job = build_denoiser_run(tiny_run("mlp", steps=10), CPU)
        job.trainer.fit()
        ModelRegistry(store).export_model(name, job.ema_model, job.run)
    return store


def evaluate(store: LabStore, preset: Path, models: list[str], ray_tmp: str) -> subprocess.Popen[str]:
    """``python -m jobs.evaluate`` of ``models`` in its own local Ray, output piped."""
    return subprocess.Popen([sys.executable, "-m", "jobs.evaluate", "--preset", str(preset), "--lab", store.root,
                             "--models", *models], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "TMPDIR": ray_tmp, "RAY_ADDRESS": ""}, text=True)


def wait_for(process: subprocess.Popen[str], marker: str) -> str:
    """The output of ``process`` up to the line holding ``marker``."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never printed:\n" + "".join(seen)[-3000:])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab, built once; each test evaluates its own copy."""
    root = tmp_path_factory.mktemp("template") / "lab"
    build_lab(root)
    return root


@pytest.fixture()
def store(template: Path, tmp_path: Path) -> LabStore:
    shutil.copytree(template, tmp_path / "lab")
    return LabStore(tmp_path / "lab")


def test_two_evaluate_processes_keep_every_row_of_both(store: LabStore, tmp_path: Path) -> None:
    preset = tmp_path / "tiny.yaml"
    preset.write_text(PRESET)
    start = time.monotonic()
    with ray_tmpdir() as first_tmp, ray_tmpdir() as second_tmp:
        first = evaluate(store, preset, GROUPS["first"], first_tmp)
        head = wait_for(first, "[evaluate] 2 model(s)")  # two Ray nodes starting at once time out on 2 busy cores
        second = evaluate(store, preset, GROUPS["second"], second_tmp)
        processes = {"first": first, "second": second}
        outputs = {group: process.communicate(timeout=300)[0] for group, process in processes.items()}
        outputs["first"] = head + outputs["first"]
    for group, process in processes.items():
        assert process.returncode == 0, outputs[group][-3000:]
    print(f"two evaluate processes: {time.monotonic() - start:.0f} s")
    check_every_row_kept(store)


SETTINGS = EvaluateSettings(num_images=16, samplers=(SamplerSetting("ddim", 2),), embeddings=("vae",),
                            pictures=SamplerSetting("ddim", 2), robustness=None, floor_draws=2)


def evaluate_group(root: str, models: list[str], start: Any) -> None:
    """What jobs.evaluate does for ``models``, without Ray: score each, put its best on its card, merge its rows."""
    torch.set_num_threads(1)
    store = LabStore(root)
    floors = compute_floors(store, "mnist-embedded", SETTINGS, CPU)
    start.wait(timeout=120)  # both groups write at once
    for model in models:
        rows = evaluate_model(store, model, SETTINGS, floors, CPU)
        record_best(store, model, rows)
        merge_scores(store, pd.DataFrame(rows))


def test_two_evaluation_processes_keep_every_row_of_both(store: LabStore) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(GROUPS))
    processes = [context.Process(target=evaluate_group, args=(store.root, models, start)) for models in GROUPS.values()]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
        assert process.exitcode == 0
    check_every_row_kept(store)


def check_every_row_kept(store: LabStore) -> None:
    """One score row per model (one sampler setting, one embedding), each measuring the weights its card has."""
    scores = TableStore(store).read(SCORES)
    assert sorted(scores.model) == ["a1", "a2", "b1", "b2"]
    for row in scores.to_dict("records"):
        card = ModelRegistry(store).read_card(row["model"])
        assert row["weights_sha256"] == card.weights_sha256
        assert card.metrics["fd_vae"] == pytest.approx(row["fd"])


def test_a_score_of_replaced_weights_is_not_put_on_the_card(tmp_path: Path) -> None:
    store = LabStore(tmp_path / "lab")
    run = tiny_run("mlp")
    job = build_denoiser_run(run, CPU)
    ModelRegistry(store).export_model("m", job.ema_model, run)
    row = score_row(n=16, fd=2.0, floor_mean=1.0, ratio=2.0, steps=2, weights_sha256="0" * 64)  # measured on other weights
    with pytest.raises(StaleMetrics, match="the weights changed since these metrics were measured"):
        record_best(store, "m", [row])
    assert "fd_vae" not in ModelRegistry(store).read_card("m").metrics
    record_best(store, "m", [dataclasses.replace(row, weights_sha256=ModelRegistry(store).read_card("m").weights_sha256)])
    assert ModelRegistry(store).read_card("m").metrics["fd_vae"] == 2.0
