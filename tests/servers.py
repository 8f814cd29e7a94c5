"""Real processes the integration tests start: Ray jobs, the Serve app, free ports, short Ray temp dirs."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import boto3

from diffusion.network import free_port
from serve.launch import running_server

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))  # the venv's CLI; the venv need not be on PATH


def clean_env(ray_tmp: str) -> dict[str, str]:
    """This process's environment without any Ray address or token setting, Ray's temp dir in ``ray_tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    return {**env, "TMPDIR": ray_tmp}


def run(command: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``command`` in the repository root, output captured."""
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def ray_tmpdir() -> Iterator[str]:
    """A short temp dir for Ray (its socket paths must stay under 107 bytes), removed afterwards."""
    path = tempfile.mkdtemp(prefix="rl-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def s3_server(bucket: str, startup_s: float = 60) -> Iterator[dict[str, str]]:
    """An S3-compatible server (moto's server mode) on 127.0.0.1 with ``bucket`` created.

    Yields the standard AWS environment variables that point boto3, pyarrow and Ray at it;
    the credentials are throwaway values the server accepts.
    """
    port = free_port()
    env = {"AWS_ACCESS_KEY_ID": "lab-tests", "AWS_SECRET_ACCESS_KEY": "lab-tests", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + startup_s
            while True:
                try:
                    urllib.request.urlopen(f"{env['AWS_ENDPOINT_URL']}/moto-api/", timeout=2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"moto server did not start: {log.read()[-2000:].decode(errors='replace')}")
                    time.sleep(0.3)
            boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                         aws_access_key_id="lab-tests", aws_secret_access_key="lab-tests").create_bucket(Bucket=bucket)
            yield env
        finally:
            process.terminate()
            process.wait(timeout=30)


def run_smoke_pipeline(lab: Path | str, timeout: float = 600) -> None:
    """``python -m jobs.pipeline --preset smoke`` into ``lab``, in Ray's local mode."""
    with ray_tmpdir() as ray_tmp:
        result = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--preset", "smoke", "--lab", str(lab)], cwd=ROOT,
                                env={**os.environ, "TMPDIR": ray_tmp, "RAY_ADDRESS": ""},
                                capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@contextlib.contextmanager
def serve_app(lab: Path | str, startup_s: float = 180, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """``python -m serve`` over ``lab`` on a free port (one replica, ``extra_args`` added), in Ray's local mode; yields its base URL."""
    with ray_tmpdir() as ray_tmp:
        env = {"TMPDIR": ray_tmp, "RAY_ADDRESS": ""}
        with running_server(lab, free_port(), ["--max-replicas", "1", *extra_args], env, startup_s) as base:
            yield base
