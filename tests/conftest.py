"""Shared fixtures: tiny configs that train in seconds on the CPU; for the session an S3 server, a Ray head, the smoke
pipeline's lab and a lab whose VAE was re-trained after scoring."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import torch

from diffusion.core.config import DiffusionConfig, RunConfig, TrainConfig
from diffusion.core.models import denoiser_config

if TYPE_CHECKING:
    from tests.lineage_lab import RetrainedLab
    from tests.servers import Head

TINY_SIZES = {"width": 8, "depth": 1}


def tiny_run(arch: str = "unet", steps: int = 20, **train: object) -> RunConfig:
    """A run of a tiny ``arch`` on a 50-level schedule, fp32 for bit-exact comparisons."""
    train_config = TrainConfig(steps=steps, batch_size=16, lr=2e-3, warmup_steps=2, ema_decay=0.9,
                               precision="fp32", **train)  # type: ignore[arg-type]
    return RunConfig(
        model=denoiser_config(arch, **TINY_SIZES, num_heads=2),
        diffusion=DiffusionConfig(timesteps=50),
        train=train_config,
    )


XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""Set in the workers of ``pytest -n N`` (``make test``): each computes with one thread, so N workers share the cores."""

if XDIST_WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"  # the Ray workers, servers and subprocesses a test starts inherit it

SHARED_FIXTURE_GROUPS = {"smoke_head": "smoke", "smoke_lab": "smoke", "retrained_vae_lab": "retrained-vae"}
"""Session fixtures too costly to build twice: under ``--dist loadgroup`` every test that uses one runs on one worker."""


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1 if XDIST_WORKER else 2)


def xdist_group(item: pytest.Item) -> str:
    """The group of tests one xdist worker runs together: those sharing a costly session fixture, else the module (whose
    module-scoped fixtures are then built once)."""
    shared = [SHARED_FIXTURE_GROUPS[name] for name in getattr(item, "fixturenames", ()) if name in SHARED_FIXTURE_GROUPS]
    return shared[0] if shared else item.nodeid.split("::")[0]


def pytest_itemcollected(item: pytest.Item) -> None:
    """Each test's ``xdist_group``, marked as it is collected: xdist reads the groups in its own collection hook."""
    item.add_marker(pytest.mark.xdist_group(xdist_group(item)))


def _tag_group(item: pytest.Item) -> None:
    """Append ``@<group>`` to the test's node id, which is how ``--dist loadgroup``'s scheduler learns the group.

    pytest-xdist 3.8 does this by assigning ``item._nodeid``, which pytest 9 no longer reads (the id lives in
    ``item._id``), so every test became its own group; this sets the id pytest 9 reads. Idempotent."""
    from _pytest.nodeid import NodeId  # pytest 9's; only xdist's workers need it

    if "@" not in item.nodeid:
        item._id = NodeId.parse(f"{item.nodeid}@{xdist_group(item)}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` run where a GPU exists and are skipped elsewhere. Under xdist every test is tagged with
    its group; xdist hands the groups out, those with the most tests first (its default ``--loadscope-reorder``:
    12.5 min here, against 13.7 for every slow group first, which ran the heaviest tests side by side)."""
    if XDIST_WORKER and config.getvalue("loadgroup"):  # a worker sees `--dist loadgroup` so (its own dist is "no")
        for item in items:
            _tag_group(item)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def s3_bucket() -> Iterator[str]:
    """``s3://<bucket>`` on a moto server started for this test session.

    The AWS variables are set in this process's environment for the whole session, so the
    store, Ray's workers, Serve and the dashboard (all started from here) reach the same bucket.
    """
    from tests.servers import s3_server  # boto3, Serve: imported by the sessions that use them, not by `pytest -m cuda`

    with s3_server("diffusion-lab-tests") as env, pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield "s3://diffusion-lab-tests"


@pytest.fixture(scope="session")
def smoke_head(s3_bucket: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """A token-protected Ray head (``python -m cluster.local up``, 2 CPUs) for the session; its jobs reach the S3 bucket.

    Stopped (``down``) at the end of the session, which must leave no cluster behind.
    """
    from tests.servers import local_head, run

    with local_head(tmp_path_factory.mktemp("head")) as head:
        yield head
    assert run([*head.local, "status"], head.env).returncode == 1, "a cluster is still up after `down`"


@pytest.fixture(scope="session")
def smoke_lab(smoke_head: Head, s3_bucket: str) -> str:
    """What the smoke pipeline writes, made once per session as a Ray job on ``smoke_head``, on S3: the job
    tests, the dashboard and Serve tests read it from the same URI, as they would on a cluster."""
    from tests.servers import submit_smoke_pipeline

    lab = f"{s3_bucket}/smoke"
    submit_smoke_pipeline(smoke_head, lab)
    return lab


@pytest.fixture(scope="session")
def retrained_vae_lab(tmp_path_factory: pytest.TempPathFactory) -> RetrainedLab:
    """Two denoisers scored in a VAE that was then re-trained; only one scored again (``tests/lineage_lab.py``)."""
    from tests.lineage_lab import build_retrained_lab  # imports the jobs (and Ray): only sessions that use it pay

    return build_retrained_lab(tmp_path_factory.mktemp("lineage") / "lab")
