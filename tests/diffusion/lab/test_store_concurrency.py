"""Concurrent writers on one lab store, local and on S3 (moto): real processes, no row lost, metrics tied to weights."""

from __future__ import annotations

import multiprocessing
import uuid
from typing import Any

import pandas as pd
import pytest
import torch

import diffusion.lab.tables as tables_module
from diffusion.core.models import build_denoiser
from diffusion.lab.registry import ModelRegistry
from diffusion.lab.store import LabStore, StaleMetrics
from diffusion.lab.tables import TableStore
from tests.conftest import tiny_run
from tests.diffusion.lab.small_tables import SCORES_FD, TRIALS_LOSS

pytestmark = pytest.mark.slow  # starts writer subprocesses and moto S3

WRITERS = 3


def write_rows(root: str, writer: int, updates: int, start: Any) -> None:
    """One writer: ``updates`` table updates, each adding its own model's rows (and redoing one shared model's)."""
    tables = TableStore(LabStore(root))
    start.wait(timeout=120)  # every writer at once
    for i in range(updates):
        rows = pd.DataFrame({"model": [f"w{writer}-{i}", f"w{writer}-{i}", "shared"], "fd": [float(i), i + 0.5, float(writer)]})
        tables.update(SCORES_FD, rows)


def run_writers(root: str, updates: int) -> None:
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as separate jobs would be
    start = context.Barrier(WRITERS)
    processes = [context.Process(target=write_rows, args=(root, w, updates, start)) for w in range(WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
        assert process.exitcode == 0


def check_every_row_kept(store: LabStore, updates: int) -> None:
    table = TableStore(store).read(SCORES_FD)
    mine = table[table.model != "shared"]
    assert sorted(mine.model.unique()) == sorted(f"w{w}-{i}" for w in range(WRITERS) for i in range(updates))
    assert len(mine) == 2 * WRITERS * updates and not mine.duplicated().any()
    assert len(table[table.model == "shared"]) == 1  # replaced, never duplicated


@pytest.fixture()
def s3_lab(s3_bucket: str) -> str:
    return f"{s3_bucket}/concurrency-{uuid.uuid4().hex[:8]}"


def test_concurrent_local_writers_lose_no_rows(tmp_path) -> None:
    run_writers(str(tmp_path / "lab"), updates=25)
    check_every_row_kept(LabStore(tmp_path / "lab"), updates=25)
    assert [p.name for p in (tmp_path / "lab" / "tables").iterdir()] == ["scores.parquet"]


def test_concurrent_s3_writers_lose_no_rows(s3_lab: str) -> None:
    run_writers(s3_lab, updates=6)
    store = LabStore(s3_lab)
    tables = TableStore(store)
    check_every_row_kept(store, updates=6)
    assert tables.names() == ["scores"]
    # the base file is a merged view plain readers can use; a last update folds in everything
    tables.update(SCORES_FD, pd.DataFrame({"model": ["late"], "fd": [0.0]}))
    base = pd.read_parquet(store.path("tables/scores.parquet"), filesystem=store.fs)
    assert len(base) == len(tables.read(SCORES_FD)) == 2 * WRITERS * 6 + 2


def test_s3_parts_are_compacted_and_the_table_stays_whole(s3_lab: str, monkeypatch) -> None:
    monkeypatch.setattr(tables_module, "COMPACT_AFTER_S", 0.0)
    monkeypatch.setattr(tables_module, "COMPACT_MIN_PARTS", 4)
    store = LabStore(s3_lab)
    tables = TableStore(store)
    tables.write(TRIALS_LOSS, pd.DataFrame({"model": ["old"], "loss": [9.0]}))
    for i in range(10):
        tables.update(TRIALS_LOSS, pd.DataFrame({"model": [f"m{i % 6}"], "loss": [float(i)]}))
    table = tables.read(TRIALS_LOSS).sort_values("model").reset_index(drop=True)
    assert table.to_dict("list") == {"model": ["m0", "m1", "m2", "m3", "m4", "m5", "old"],
                                     "loss": [6.0, 7.0, 8.0, 9.0, 4.0, 5.0, 9.0]}
    assert len(store.list_dir(tables.parts_path(TRIALS_LOSS))) < 4


def test_s3_metrics_are_tied_to_the_weights_they_were_measured_on(s3_lab: str) -> None:
    store = LabStore(s3_lab)
    models = ModelRegistry(store)
    run = tiny_run("mlp")
    model = build_denoiser(run.model)
    measured_on = models.export_model("m", model, run, {"steps": 20}).weights_sha256
    models.update_metrics("m", {"fd_vae": 2.0}, expected_sha256=measured_on)
    models.update_metrics("m", {"fd_n": 48})
    assert models.read_card("m").metrics == {"steps": 20, "fd_vae": 2.0, "fd_n": 48}
    assert b"fd_vae" not in store.read_bytes("models/m/card.json")  # the card itself is written by exports only
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    models.export_model("m", model, run, {"steps": 40})
    assert models.read_card("m").metrics == {"steps": 40}  # scores of the old weights no longer show
    with pytest.raises(StaleMetrics, match="the weights changed"):
        models.update_metrics("m", {"fd_vae": 3.0}, expected_sha256=measured_on)
    assert [e.name for e in models.model_entries() if e.available] == ["m"]
