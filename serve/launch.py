"""Run ``python -m serve`` as a child process and wait until it answers: for tests, benchmarks and scripts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def running_server(lab: str | Path, port: int, extra_args: Sequence[str] = (), env: dict[str, str] | None = None,
                   startup_s: float = 180) -> Iterator[str]:
    """``python -m serve --lab LAB --port PORT [extra_args]`` until its /healthz answers; yields the base URL.

    On exit the server gets SIGINT (Serve shuts down cleanly), then SIGKILL after 30 s, and
    so does every process left in its session (the local Ray it started: GCS, raylet, actors),
    leaving other Ray instances on the machine alone. Its output goes to a temporary file (a pipe nobody reads would fill and stall the server) and is
    shown if it dies before answering.
    """
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen([sys.executable, "-m", "serve", "--lab", str(lab), "--port", str(port), *extra_args],
                               cwd=ROOT, env={**os.environ, **(env or {})}, start_new_session=True,
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while not answers(base + "/healthz"):
            if process.poll() is not None:
                log.seek(0)
                output = log.read()[-4000:]
                raise RuntimeError(f"python -m serve exited with {process.returncode} before answering:\n{output}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"python -m serve did not answer on {base} within {startup_s:.0f} s")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        kill_session(process.pid)
        log.close()


def kill_session(session_id: int) -> None:
    """SIGKILL every process of the session ``session_id`` (one started with ``start_new_session=True``)."""
    for pid in session_pids(session_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def session_pids(session_id: int) -> list[int]:
    """The processes of the session ``session_id``: the server and the local Ray it started (GCS, raylet, actors)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == session_id:
                found.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return found


def answers(url: str) -> bool:
    """Whether a GET on ``url`` returns 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
