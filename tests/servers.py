"""Real processes the integration tests start: Ray jobs, the Serve app, free ports, short Ray temp dirs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from dashboard.screenshots import free_port

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
    """``python -m serve`` over ``lab`` on a free port (one replica); yields its base URL; stopped afterwards."""
    with ray_tmpdir() as ray_tmp:
        port = free_port()
        env = {**os.environ, "TMPDIR": ray_tmp, "RAY_ADDRESS": ""}
        process = subprocess.Popen([sys.executable, "-m", "serve", "--lab", str(lab), "--port", str(port),
                                    "--max-replicas", "1"], cwd=ROOT, env=env, start_new_session=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup_s
            while not _answers(base + "/healthz"):
                assert process.poll() is None, process.stdout.read()[-4000:] if process.stdout else ""
                assert time.monotonic() < deadline, f"Serve did not come up within {startup_s:.0f} s"
                time.sleep(0.5)
            yield base
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
