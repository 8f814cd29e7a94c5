"""The lab store on S3 (a moto server on 127.0.0.1): the smoke pipeline's output lives in the bucket.

The session's ``smoke_lab`` is an ``s3://`` URI, so the dashboard page tests (leaderboard, live
sampling through Serve) and the browser test read the same bucket the pipeline wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from ray import tune

from diffusion.lab.store import LabStore, LabStoreError, default_lab
from diffusion.lab.tables import TRIALS, Column, TableSchema, TableStore
from jobs.trial import STATE_FILE
from tests.servers import ROOT

DENOISERS = ["attnunet", "cnn", "mlp", "resunet", "unet"]


def bucket_keys(uri: str) -> set[str]:
    """Every object key under ``uri`` (s3://bucket/prefix), relative to the prefix."""
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    client = boto3.client("s3")  # the endpoint and credentials come from the session's AWS variables
    keys = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        keys |= {item["Key"].removeprefix(f"{prefix}/") for item in page.get("Contents", [])}
    return keys


@pytest.mark.slow
def test_the_smoke_pipeline_writes_models_tables_and_checkpoints_to_the_bucket(smoke_lab: str) -> None:
    keys = bucket_keys(smoke_lab)
    for model in [*DENOISERS, "vae", "classifier"]:
        assert {f"models/{model}/weights.safetensors", f"models/{model}/card.json"} <= keys, model
    for table in ("trials", "trial_history", "scores", "robustness", "robustness_summary"):
        assert f"tables/{table}.parquet" in keys
    assert any(k.startswith("tune/sweep-") and "/train_trial_" in k and k.endswith(f"/{STATE_FILE}") for k in keys)

    trials = TableStore(LabStore(smoke_lab)).read(TRIALS)
    assert set(trials.model) == set(DENOISERS) and trials.checkpoint.str.startswith(f"{smoke_lab}/tune/").all()
    best = trials[trials.is_best & (trials.model == "unet")].iloc[0]
    with tune.Checkpoint(best.checkpoint).as_directory() as directory:  # a URI any node can open
        assert os.path.getsize(os.path.join(directory, STATE_FILE)) > 0


@pytest.mark.slow
def test_a_bucket_that_does_not_exist_is_named_before_any_training(s3_bucket: str) -> None:
    with pytest.raises(LabStoreError, match="s3://no-such-bucket/lab/tables/x.parquet"):
        TableStore(LabStore("s3://no-such-bucket/lab")).read(TableSchema("x", "a test", (Column("model", "string"),)))
    result = subprocess.run([sys.executable, "-m", "jobs.sweep", "--preset", "smoke", "--lab", "s3://no-such-bucket/lab"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "RAY_ADDRESS": ""})
    assert result.returncode == 2 and "s3://no-such-bucket/lab" in result.stderr, result.stderr[-2000:]


@pytest.mark.slow
def test_paths_that_tune_returns_without_a_scheme_become_uris_again(s3_bucket: str, tmp_path: Path) -> None:
    store = LabStore(f"{s3_bucket}/lab")
    bucket = s3_bucket.removeprefix("s3://")
    assert store.uri_of(f"{bucket}/lab/tune/sweep-unet/trial/checkpoint_000001") == f"{s3_bucket}/lab/tune/sweep-unet/trial/checkpoint_000001"
    assert LabStore(tmp_path).uri_of(str(tmp_path / "tune")) == str(tmp_path / "tune")


def test_the_lab_defaults_to_the_environment_variable_then_to_dot_lab() -> None:
    assert default_lab({"DIFFUSION_LAB": "s3://bucket/lab"}) == "s3://bucket/lab"
    assert default_lab({"DIFFUSION_LAB": ""}) == default_lab({}) == "./lab"
