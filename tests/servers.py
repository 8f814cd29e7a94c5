"""Real processes the integration tests start: a token-protected Ray head and its jobs, the Serve app, moto, short Ray temp dirs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3

from cluster.local import dashboard_get
from diffusion.network import free_port, free_ports
from serve.launch import running_server

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))  # the venv's CLI; the venv need not be on PATH
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
SMOKE_JOB = "smoke-1"  # submission id of the session's smoke pipeline job


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


@dataclass(frozen=True)
class Head:
    """A head that ``python -m cluster.local up`` started: its job API, token file and the environments to reach it."""

    address: str  # the job API (dashboard)
    gcs_address: str  # where nodes join and drivers connect
    dashboard_port: int
    token_file: Path
    env: dict[str, str]  # no token: as a stranger
    authorised: dict[str, str]  # RAY_AUTH_MODE=token with the token file
    local: list[str]  # the CLI and its flags, for status and down
    up_stdout: str


@contextlib.contextmanager
def local_head(tmp_path: Path, num_cpus: int = 2) -> Iterator[Head]:
    """``python -m cluster.local up`` on free ports with a token file in ``tmp_path``; ``down`` afterwards."""
    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    token_file = tmp_path / "token"
    gcs_port, dashboard_port, agent_port, client_port = free_ports(4)  # distinct: nothing binds them before ray start
    env = clean_env(ray_tmp)
    local = [sys.executable, "-m", "cluster.local"]
    flags = ["--port", str(gcs_port), "--dashboard-port", str(dashboard_port), "--token-file", str(token_file)]
    own_ports = ["--agent-port", str(agent_port), "--client-port", str(client_port)]  # heads may start side by side
    wait = ["--wait", "240"]  # beside the other xdist worker's pipeline, on 2 cores, a head can take minutes to answer
    up = run([*local, "up", *flags, *own_ports, *wait, "--num-cpus", str(num_cpus), "--temp-dir", ray_tmp], env, timeout=300)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        authorised = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
        yield Head(f"http://127.0.0.1:{dashboard_port}", f"127.0.0.1:{gcs_port}", dashboard_port, token_file, env,
                   authorised, [*local, *flags], up.stdout)
    finally:
        run([*local, "down", *flags], env)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def wait_for_jobs(head: Head, submission_ids: list[str], timeout: float) -> dict[str, str]:
    """Each job's final status (or the last seen one, if ``timeout`` runs out first)."""
    token = head.token_file.read_text().strip()
    deadline, states = time.monotonic() + timeout, dict.fromkeys(submission_ids, "")
    while time.monotonic() < deadline and not all(state in TERMINAL for state in states.values()):
        time.sleep(2)
        for job in submission_ids:
            states[job] = json.loads(dashboard_get(head.dashboard_port, f"/api/jobs/{job}", token)[1]).get("status", "")
    return states


NO_AGENT = "No available agent to submit job"
"""What Ray's job API answers while the head's job agent has not registered (it retries for 10 s only)."""
AGENT_RETRIES = 6


def submit_smoke_pipeline(head: Head, lab: str, timeout: float = 900) -> None:
    """The README's command: the smoke pipeline as a Ray job on ``head`` (``SMOKE_JOB``), writing ``lab``; waits for it."""
    command = [RAY, "job", "submit", "--address", head.address, "--working-dir", ".", "--runtime-env",
               "cluster/runtime_env.yaml", "--submission-id", SMOKE_JOB, "--no-wait",
               "--", "python", "-m", "jobs.pipeline", "--preset", "smoke", "--lab", lab]
    for _ in range(AGENT_RETRIES):  # a loaded machine: the new head's job agent may not be registered yet
        submitted = run(command, head.authorised)
        if submitted.returncode == 0 or NO_AGENT not in submitted.stdout + submitted.stderr:
            break
        time.sleep(5)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    state = wait_for_jobs(head, [SMOKE_JOB], timeout)[SMOKE_JOB]
    if state != "SUCCEEDED":
        logs = run([RAY, "job", "logs", "--address", head.address, SMOKE_JOB], head.authorised).stdout
        raise AssertionError(f"the smoke pipeline job ended {state or 'not at all'}: {logs[-5000:]}")


@contextlib.contextmanager
def serve_app(lab: Path | str, startup_s: float = 180, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """``python -m serve`` over ``lab`` on a free port (one replica, ``extra_args`` added), in Ray's local mode; yields its base URL."""
    with ray_tmpdir() as ray_tmp:
        env = {"TMPDIR": ray_tmp, "RAY_ADDRESS": ""}
        with running_server(lab, free_port(), ["--max-replicas", "1", *extra_args], env, startup_s) as base:
            yield base
