"""A real two-node Ray cluster on this machine (a token-protected head plus a joined worker node).

One sweep of two trials: they land one on each node; the worker node is then lost as a machine is
(SIGKILL to every one of its processes) in the middle of its trial: the sweep finishes, the lost
trial resumes from its last checkpoint on the head, and no report made before the kill is lost.
The lab store is on S3 (moto), as on a real cluster: the checkpoints outlive the node.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from cluster.local import dashboard_get, with_descendants
from diffusion.lab.store import LabStore
from diffusion.lab.tables import TRIAL_HISTORY, TRIALS, TableStore
from tests.servers import ROOT, Head, local_head

pytestmark = pytest.mark.slow  # starts a two-node Ray cluster on moto S3

EVERY = 10  # steps between reports (and checkpoints): report_every_images / batch_size
PRESET = """
embeddings: {{vae: {{train: {{steps: 60}}}}, classifier: {{train: {{steps: 20}}}}}}
sweep: {{num_samples: 2, max_concurrent: 2, resources: {{cpu: 1, gpu: 0}}, eval_every_images: 1280, report_every_images: 320,
        fd_samples: 64, fd_sampler_steps: 3, grace_images: 10000000, reduction_factor: 2, max_failures: 2}}
models:
  unet:
    model: {{width: 8, depth: 1}}
    diffusion: {{timesteps: 50}}
    train: {{steps: {steps}, batch_size: 32, warmup_steps: 2, lr: {{loguniform: [1.0e-3, 3.0e-3]}}}}
"""


def alive_nodes(port: int, token: str) -> dict[str, bool]:
    """node id -> is it the head, for the nodes the cluster reports alive."""
    status, body = dashboard_get(port, "/api/v0/nodes?limit=100", token, timeout=10)
    if status != 200:
        return {}
    nodes = json.loads(body)["data"]["result"]["result"]
    return {n["node_id"]: n["is_head_node"] for n in nodes if n["state"] == "ALIVE"}


T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """The first truthy value of ``condition()``, polled until ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def newest_checkpoints(store: LabStore) -> dict[str, int]:
    """trial folder -> index of its newest checkpoint in the store."""
    found = {}
    for trial in store.list_dir("tune/sweep-unet"):
        indices = [int(n.rsplit("_", 1)[1]) for n in store.list_dir(f"tune/sweep-unet/{trial}") if n.startswith("checkpoint_")]
        if indices:
            found[trial] = max(indices)
    return found


def node_processes(leader: int) -> list[psutil.Process]:
    """A node started by ``cluster.local join``: its process and all its descendants (raylet, object store, agents,
    workers). Ray starts every worker in a process group of its own, so the leader's group is not the whole node."""
    try:
        return with_descendants([psutil.Process(leader)])
    except psutil.NoSuchProcess:
        return []


def lose_node(leader: subprocess.Popen) -> None:
    """Lose a node as a machine is lost: SIGKILL every process of it at once.

    Killing its process group alone would leave the trial's worker training, and reporting to the
    driver (which talks to it directly), until it notices that its raylet is gone."""
    processes = node_processes(leader.pid)  # listed first: once killed, the workers are re-parented
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, signal.SIGKILL)  # the raylet first: it starts no worker after this
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    leader.wait(timeout=30)


def working_dirs(leader: int) -> dict[int, str]:
    """pid -> working directory of each process of the node of ``leader``."""
    found = {}
    for process in node_processes(leader):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            found[process.pid] = process.cwd()
    return found


def trial_on_node(leader: int, trial_folders: list[str]) -> str | None:
    """The trial folder of the trial running on the node of ``leader``: Tune runs a function trial in its own working
    directory, named as its folder in the store (this finds it because both nodes are processes of this machine)."""
    return next((os.path.basename(d) for d in working_dirs(leader).values() if os.path.basename(d) in trial_folders), None)


def test_trials_use_both_nodes_and_a_lost_node_costs_no_reported_work(tmp_path: Path, s3_bucket: str) -> None:
    with local_head(tmp_path, num_cpus=1) as cluster, open(tmp_path / "worker.log", "w") as worker_log:
        token = cluster.token_file.read_text().strip()
        worker = subprocess.Popen([sys.executable, "-m", "cluster.local", "join", "--address", cluster.gcs_address,
                                   "--num-cpus", "1", "--block", "--token-file", str(cluster.token_file)],
                                  cwd=ROOT, env=cluster.env, start_new_session=True, stdout=worker_log, stderr=subprocess.STDOUT)
        try:
            check_both_nodes_then_lose_one(cluster, worker, token, tmp_path, s3_bucket)
        finally:
            if worker.poll() is None:
                lose_node(worker)


def check_both_nodes_then_lose_one(cluster: Head, worker: subprocess.Popen, token: str, tmp_path: Path,
                                   s3_bucket: str) -> None:
    """Trials land one on each node; the worker is killed mid-trial; the lost trial resumes on the head."""
    dashboard_port = cluster.dashboard_port
    nodes = wait_for(lambda: (n := alive_nodes(dashboard_port, token)) and len(n) == 2 and n, 90, "two alive nodes")
    head = next(node for node, is_head in nodes.items() if is_head)
    second = next(node for node, is_head in nodes.items() if not is_head)
    driver_env = {**cluster.authorised, "RAY_ADDRESS": cluster.gcs_address}

    def sweep(lab: str, steps: int) -> subprocess.Popen:
        preset = tmp_path / "two-nodes.yaml"
        preset.write_text(PRESET.format(steps=steps))
        return subprocess.Popen([sys.executable, "-m", "jobs.sweep", "--preset", str(preset), "--lab", lab], cwd=ROOT,
                                env=driver_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # two 1-CPU trials on two 1-CPU nodes: one lands on each; the worker node is lost once its trial's first report has
    # reached the driver: a checkpoint is in the bucket before its report reaches the driver, but a trial's second
    # report starts only after the driver has fetched its first (Tune's function trials report synchronously)
    lost = LabStore(f"{s3_bucket}/two-nodes")
    steps = 100  # the kill comes at step 20 or a little later; the lost trial resumes after the head's trial ends
    started = time.monotonic()
    the_sweep = sweep(lost.root, steps)

    def victim_reported() -> bool:
        checkpoints = newest_checkpoints(lost)
        victim = trial_on_node(worker.pid, list(checkpoints))
        return victim is not None and checkpoints[victim] >= 1

    try:
        wait_for(victim_reported, 300, "the worker node's trial to write its second checkpoint", interval=0.2)
    except AssertionError as error:
        found = f"checkpoints {newest_checkpoints(lost)}; the worker node's processes' folders: {working_dirs(worker.pid)}"
        the_sweep.kill()
        raise AssertionError(f"{error}; {found}; the sweep said:\n{the_sweep.communicate()[0][-3000:]}") from None
    killed_at = time.time()
    lose_node(worker)
    output = the_sweep.communicate(timeout=600)[0]
    wall = time.monotonic() - started
    assert the_sweep.returncode == 0, output[-4000:]
    # the trial's retry can finish before the head's health checks declare the lost node dead
    wait_for(lambda: len(alive_nodes(dashboard_port, token)) == 1, 60, "the head to mark the lost node dead")

    trials = TableStore(lost).read(TRIALS).set_index("trial_id")
    history = TableStore(lost).read(TRIAL_HISTORY)
    first_reports = history.sort_values("step").groupby("trial_id").node_id.first()
    assert set(first_reports) == {head, second}, history  # one trial started on each node
    assert list(trials.status) == ["completed"] * 2
    assert (history.groupby("trial_id").step.max() == steps).all()
    victim = history[history.trial_id.isin(history[history.node_id == second].trial_id)].sort_values("step")
    assert victim.trial_id.nunique() == 1, "exactly one trial ran on the killed node"
    before, after = victim[~victim.resumed.astype(bool)], victim[victim.resumed.astype(bool)]
    assert set(before.node_id) == {second} and set(after.node_id) == {head}, victim
    assert list(victim.step) == list(range(EVERY, steps + 1, EVERY)), "a report is missing"
    restored_from = int(after.step.min()) - EVERY
    assert restored_from >= EVERY, "the lost trial started again from scratch"
    redone = int(before.step.max()) - restored_from
    figures = {"trials_finished": int((trials.status == "completed").sum()), "trials": len(trials),
               "reports_lost": 0, "steps_per_trial": steps, "killed_at_step": int(before.step.max()),
               "resumed_from_step": restored_from, "reported_steps_redone": redone,
               "resumed_report_after_kill_s": round(float(after.timestamp.min()) - killed_at, 1),
               "sweep_wall_s": round(wall, 1)}
    print(f"[reliability] {json.dumps(figures)}")
    (tmp_path / "reliability.json").write_text(json.dumps(figures))
