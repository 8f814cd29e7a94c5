"""Real processes the integration tests start: Ray jobs, the Serve app, free ports, short Ray temp dirs."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dashboard.screenshots import free_port
from serve.launch import running_server

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))  # the venv's CLI; the venv need not be on PATH


@contextlib.contextmanager
def ray_tmpdir() -> Iterator[str]:
    """A short temp dir for Ray (its socket paths must stay under 107 bytes), removed afterwards."""
    path = tempfile.mkdtemp(prefix="rl-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_smoke_pipeline(lab: Path, timeout: float = 600) -> None:
    """``python -m jobs.pipeline --preset smoke`` into ``lab``, in Ray's local mode."""
    with ray_tmpdir() as ray_tmp:
        result = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--preset", "smoke", "--lab", str(lab)], cwd=ROOT,
                                env={**os.environ, "TMPDIR": ray_tmp, "RAY_ADDRESS": ""},
                                capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@contextlib.contextmanager
def serve_app(lab: Path, startup_s: float = 180) -> Iterator[str]:
    """``python -m serve`` over ``lab`` on a free port (one replica), in Ray's local mode; yields its base URL."""
    with ray_tmpdir() as ray_tmp:
        env = {"TMPDIR": ray_tmp, "RAY_ADDRESS": ""}
        try:
            with running_server(lab, free_port(), ["--max-replicas", "1"], env, startup_s) as base:
                yield base
        finally:
            subprocess.run([RAY, "stop", "--force"], env={**os.environ, **env}, capture_output=True, timeout=120)
