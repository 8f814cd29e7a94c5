"""``cluster.local down`` stops one cluster's processes (found by its GCS port and session folder, with their children)
and leaves every other process on the machine, another Ray cluster included, running."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cluster.local import cluster_processes, main, stop_processes, temp_dir_processes
from diffusion.network import free_port

pytestmark = pytest.mark.slow  # starts stand-in processes

SLEEPER = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)"


def stand_in(*flags: str) -> subprocess.Popen[bytes]:
    """A process whose command line carries Ray-like ``flags``, with one child (as a raylet has workers)."""
    return subprocess.Popen([sys.executable, "-c", SLEEPER, *flags])


@pytest.fixture()
def port() -> int:
    """A GCS port for the stand-ins that no other test's stand-ins use (tests may run side by side)."""
    return free_port()


@pytest.fixture()
def processes(tmp_path: Path, port: int) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    session = tmp_path / "session_1"
    started = {
        "gcs": stand_in(f"--gcs_server_port={port}", f"--session-dir={session}"),
        "raylet": stand_in(f"--gcs-address=127.0.0.1:{port}"),
        "log monitor": stand_in(f"--logs-dir={session}/logs"),  # names only the session folder
        "other cluster": stand_in(f"--gcs_server_port={port + 1}", f"--gcs-address=127.0.0.1:{port}5"),
    }
    deadline = time.monotonic() + 10
    while any(len(psutil.Process(p.pid).children()) < 1 for p in started.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield started
    for process in started.values():
        for child in psutil.Process(process.pid).children(recursive=True) if psutil.pid_exists(process.pid) else []:
            child.kill()
        process.kill()
        process.wait()


def test_down_stops_the_cluster_on_its_port_with_its_children_and_nothing_else(
        processes: dict[str, subprocess.Popen[bytes]], port: int, capsys: pytest.CaptureFixture[str]) -> None:
    ours = {p.pid for p in cluster_processes(port)}
    expected = {name: processes[name].pid for name in ("gcs", "raylet", "log monitor")}
    children = {child.pid for name in expected for child in psutil.Process(expected[name]).children()}
    assert ours == set(expected.values()) | children
    other = psutil.Process(processes["other cluster"].pid)

    assert main(["down", "--port", str(port)]) == 0
    assert f"stopped 6 Ray processes of the cluster on GCS port {port}" in capsys.readouterr().out
    for name in expected:
        assert processes[name].wait(timeout=10) is not None, name
    assert other.is_running() and all(child.is_running() for child in other.children())
    assert main(["down", "--port", str(port)]) == 0
    assert f"no Ray processes of a cluster on GCS port {port}" in capsys.readouterr().out


def test_the_processes_of_a_temp_dir_are_found_with_their_children(processes: dict[str, subprocess.Popen[bytes]],
                                                                   tmp_path: Path) -> None:
    found = temp_dir_processes(str(tmp_path))
    assert {p.pid for p in found} >= {processes["gcs"].pid, processes["log monitor"].pid}
    assert processes["other cluster"].pid not in {p.pid for p in found}
    assert stop_processes(found) == len(found)
    assert processes["other cluster"].poll() is None
