"""``python -m cluster.local up | join | down | status``: a Ray head on this machine, token auth on.

The dashboard and the job API listen on 127.0.0.1 only. Every request to them, and every
process joining the cluster, must present the token in ``--token-file`` (Ray's default
``~/.ray/auth_token``, created with mode 0600 if missing; an existing one that group or others
may read is refused). Jobs submitted to this head run with the Python interpreter that started
it, so the project's virtual environment is theirs.

``join --address HOST:PORT`` adds a worker node to a running head (on this machine, or on
another one that has the same token file); several nodes on one machine make a real multi-node
cluster for trying placement and node failures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import psutil

from diffusion.network import free_port, port_is_free

HOST = "127.0.0.1"
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token").expanduser()
RUNTIME_ENV = Path(__file__).resolve().parent / "runtime_env.yaml"


FIXED_PORTS = {"dashboard-agent-listen-port": 52365, "ray-client-server-port": 10001}
"""Ports ``ray start --head`` takes by default whatever else listens; ``up`` picks a free one when the default is taken
(without its agent, a head's job API answers "No available agent to submit job")."""


def ray_cli() -> str:
    """The ``ray`` executable beside this interpreter (a virtual environment need not be on PATH)."""
    return str(Path(sys.executable).with_name("ray"))


def ensure_token(path: Path) -> str:
    """The token in ``path``, generated (64 hex digits, file mode 0600) if the file does not exist.

    An existing file that group or others may read or write is refused (SystemExit saying
    ``chmod 600``): whoever reads the token controls the cluster.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    check_token_mode(path)
    token = path.read_text().strip()
    if not token:
        raise SystemExit(f"python -m cluster.local: error: token file {path} is empty; delete it to generate a new one")
    return token


def check_token_mode(path: Path) -> None:
    """SystemExit, saying ``chmod 600 FILE``, if group or others have any access to the token file."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SystemExit(f"python -m cluster.local: error: token file {path} has mode {mode:04o}, so group or others "
                         f"can read or change the cluster's token; run `chmod 600 {path}` (or delete it to generate "
                         "a new one)")


def auth_env(token_file: Path) -> dict[str, str]:
    """The environment variables with which Ray's CLIs and clients present the token."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}


def dashboard_get(port: int, path: str, token: str | None, timeout: float = 5.0) -> tuple[int, str]:
    """(HTTP status, body) of a GET on the dashboard; status 0 if nothing answers."""
    request = urllib.request.Request(f"http://{HOST}:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def agent_listens(port: int) -> bool:
    """Whether the head's dashboard agent accepts connections on ``port``: it registers itself for job submission right
    after its HTTP server starts, and a submission before that fails with "No available agent to submit job"."""
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0):
        return True
    return False


def how_to_submit(port: int, token_file: Path) -> str:
    """The lines a user pastes to submit the pipeline to this head."""
    env = " ".join(f"{k}={v}" for k, v in auth_env(token_file).items())
    return "\n".join([
        f"  export {env}",
        f"  ray job submit --address http://{HOST}:{port} --working-dir . --runtime-env cluster/runtime_env.yaml \\",
        "      -- python -m jobs.pipeline --preset quick --lab $PWD/lab",
        f"  ray job list --address http://{HOST}:{port}",
    ])


def up(args: argparse.Namespace) -> int:
    """Start the head and wait until its job API answers with the token."""
    token = ensure_token(args.token_file)
    status, _ = dashboard_get(args.dashboard_port, "/api/version", token)
    if status == 200:
        print(f"a Ray head already answers on http://{HOST}:{args.dashboard_port}; `python -m cluster.local down` stops it")
        return 0
    interpreter_dir = str(Path(sys.executable).parent)
    env = {**os.environ, **auth_env(args.token_file), "PATH": f"{interpreter_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [ray_cli(), "start", "--head", f"--node-ip-address={HOST}", f"--port={args.port}",
               "--include-dashboard=true", f"--dashboard-host={HOST}", f"--dashboard-port={args.dashboard_port}",
               "--disable-usage-stats"]
    chosen = {"dashboard-agent-listen-port": args.agent_port, "ray-client-server-port": args.client_port}
    taken = {args.port, args.dashboard_port, *(port for port in chosen.values() if port)}
    ports = {}
    for flag, default in FIXED_PORTS.items():  # none the same as another server's port, which nothing binds yet
        ports[flag] = chosen[flag] or (default if default not in taken and port_is_free(default) else free_port(exclude=taken))
        taken.add(ports[flag])
    command += [f"--{flag}={port}" for flag, port in ports.items()]  # a second head here must not collide with the first
    if args.num_cpus is not None:
        command.append(f"--num-cpus={args.num_cpus}")
    if args.temp_dir:
        command.append(f"--temp-dir={Path(args.temp_dir).resolve()}")
    started = subprocess.run(command, env=env, capture_output=True, text=True)
    if started.returncode != 0:
        print(started.stdout[-2000:] + started.stderr[-2000:], file=sys.stderr)
        print(f"python -m cluster.local: error: `ray start` failed (exit {started.returncode})", file=sys.stderr)
        return 1
    deadline, status = time.monotonic() + args.wait, None
    while time.monotonic() < deadline:
        status, body = dashboard_get(args.dashboard_port, "/api/version", token)
        if status == 200 and agent_listens(ports["dashboard-agent-listen-port"]):
            version = json.loads(body).get("ray_version", "?")
            print(f"Ray {version} head up: GCS {HOST}:{args.port}; dashboard and job API http://{HOST}:{args.dashboard_port}")
            print(f"token authentication on; the token is in {args.token_file}. To submit:")
            print(how_to_submit(args.dashboard_port, args.token_file))
            return 0
        time.sleep(0.5)
    agent_port = ports["dashboard-agent-listen-port"]
    silent = [what for what, up in ((f"the job API on port {args.dashboard_port}", status == 200),
                                    (f"its job agent on port {agent_port}", agent_listens(agent_port))) if not up]
    print(f"python -m cluster.local: error: {' and '.join(silent) or 'the head'} did not answer within {args.wait:.0f} s "
          f"(a longer --wait on a busy machine; `python -m cluster.local down` stops what started)", file=sys.stderr)
    print(startup_errors(Path(args.temp_dir or ray_temp_dir())), file=sys.stderr)
    return 1


def ray_temp_dir() -> str:
    """Where ``ray start`` keeps its sessions without ``--temp-dir`` (``$RAY_TMPDIR/ray``, ``$TMPDIR/ray`` or
    ``/tmp/ray``), as Ray itself decides it."""
    from ray._common.utils import get_default_ray_temp_dir  # only when a head failed: importing Ray costs 0.5 s

    return get_default_ray_temp_dir()


STARTUP_LOGS = ("dashboard.log", "dashboard.err", "dashboard_agent.log", "dashboard_agent.err")
"""The session logs of the two processes that serve the job API."""
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|^Traceback|^\w+(Error|Exception)\b|address already in use", re.MULTILINE)
"""A log line worth quoting: logged at ERROR or above, a Python traceback's first or last line, or a taken port
(not every line naming an error: the dashboard logs its ``/task/traceback`` route at INFO)."""


def startup_errors(temp_dir: Path, lines: int = 8) -> str:
    """The last error lines of the dashboard's and its agent's logs in the newest session under ``temp_dir``
    (e.g. a port another process took first), or where to look when there are none."""
    logs = temp_dir.resolve() / "session_latest" / "logs"
    found = []
    for name in STARTUP_LOGS:
        with contextlib.suppress(OSError):
            errors = [line.rstrip() for line in (logs / name).read_text(errors="replace").splitlines()
                      if ERROR_LINE.search(line)]
            found += [f"  {name}: {line[-300:]}" for line in errors[-lines:]]
    return "\n".join(["the errors in the session's logs:", *found]) if found else f"the session's logs: {logs}"


def join(args: argparse.Namespace) -> int:
    """Start a worker node that joins the head at ``--address``; with ``--block``, stay in the foreground."""
    if not args.address:
        print("python -m cluster.local: error: join needs --address HOST:PORT (the head's GCS address)", file=sys.stderr)
        return 2
    if not args.token_file.exists():
        print(f"python -m cluster.local: error: token file {args.token_file} does not exist; copy the head's token there",
              file=sys.stderr)
        return 2
    check_token_mode(args.token_file)
    command = [ray_cli(), "start", f"--address={args.address}", f"--node-ip-address={args.node_ip}", "--disable-usage-stats"]
    if args.num_cpus is not None:
        command.append(f"--num-cpus={args.num_cpus}")
    env = {**os.environ, **auth_env(args.token_file)}
    if args.block:  # the node lives as long as this process (and its process group)
        os.execve(command[0], [*command, "--block"], env)
    started = subprocess.run(command, env=env, capture_output=True, text=True)
    if started.returncode != 0:
        print(started.stdout[-2000:] + started.stderr[-2000:], file=sys.stderr)
        print(f"python -m cluster.local: error: `ray start --address {args.address}` failed (exit {started.returncode})",
              file=sys.stderr)
        return 1
    print(f"worker node joined {args.address}")
    return 0


def status(args: argparse.Namespace) -> int:
    """Report whether the head answers, its version, and its jobs by status; 1 if it is down."""
    token = args.token_file.read_text().strip() if args.token_file.exists() else None
    code, body = dashboard_get(args.dashboard_port, "/api/version", token)
    if code == 0:
        print(f"down: nothing answers on http://{HOST}:{args.dashboard_port}")
        return 1
    if code in (401, 403):
        print(f"up, but the token in {args.token_file} is refused (HTTP {code})")
        return 1
    version = json.loads(body).get("ray_version", "?") if code == 200 else f"HTTP {code}"
    _, jobs_body = dashboard_get(args.dashboard_port, "/api/jobs/", token)
    jobs = json.loads(jobs_body) if jobs_body.startswith("[") else []
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.get("status", "?")] = counts.get(job.get("status", "?"), 0) + 1
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no jobs"
    print(f"up: Ray {version} at http://{HOST}:{args.dashboard_port} (token auth); jobs: {summary}")
    return 0


def cluster_processes(gcs_port: int) -> list[psutil.Process]:
    """This machine's processes of the cluster whose GCS listens on ``gcs_port``, and everything they started.

    A Ray process names its cluster in its command line: the GCS by ``--gcs_server_port``, the
    raylets, agents and monitors of every node that joined by ``--gcs-address`` or ``--address``,
    and most of them by the head's session folder. Workers and job drivers are the raylets'
    descendants. Processes of any other cluster on the machine are not touched.
    """
    port = re.compile(rf"(--gcs_server_port={gcs_port}|--(gcs-)?address=\S+:{gcs_port})(\s|$)")
    listed = command_lines()
    roots = [p for p, line in listed if port.search(line)]
    sessions = {m.group(1) for p, line in listed if p in roots for m in [re.search(r"--session-dir=(\S+)", line)] if m}
    roots += [p for p, line in listed if p not in roots and any(session in line for session in sessions)]
    return with_descendants(roots)


def temp_dir_processes(temp_dir: str) -> list[psutil.Process]:
    """This machine's Ray processes whose session lives under ``temp_dir`` (Ray's ``--temp-dir`` or the
    ``TMPDIR`` a local cluster started with), and everything they started."""
    return with_descendants([process for process, line in command_lines() if temp_dir in line])


def command_lines() -> list[tuple[psutil.Process, str]]:
    """Every process on this machine with its command line, joined by spaces."""
    return [(p, " ".join(p.info["cmdline"] or [])) for p in psutil.process_iter(["cmdline"])]


def with_descendants(roots: list[psutil.Process]) -> list[psutil.Process]:
    """``roots`` and all their descendants, once each, without this process."""
    found: dict[int, psutil.Process] = {}
    for root in roots:
        try:
            for process in [root, *root.children(recursive=True)]:
                found[process.pid] = process
        except psutil.NoSuchProcess:
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def stop_processes(processes: list[psutil.Process], grace_s: float = 10.0) -> int:
    """SIGTERM ``processes``, SIGKILL those still alive after ``grace_s``; how many there were."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return len(processes)


def down(args: argparse.Namespace) -> int:
    """Stop the head whose GCS listens on ``--port`` and the nodes of this machine that joined it.

    Only that cluster's processes are stopped, so other Ray clusters on the machine (another head,
    a test's local cluster) keep running; ``ray stop --force`` is the way to stop them all.
    """
    stopped = stop_processes(cluster_processes(args.port))
    if not stopped:
        print(f"no Ray processes of a cluster on GCS port {args.port} on this machine")
        return 0
    print(f"stopped {stopped} Ray processes of the cluster on GCS port {args.port}")
    return 0


COMMANDS = {"up": up, "join": join, "down": down, "status": status}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m cluster.local", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument("--port", type=int, default=6379, help="the head's GCS port")
    parser.add_argument("--dashboard-port", type=int, default=8265, help="the dashboard and job API port")
    parser.add_argument("--token-file", type=Path, default=DEFAULT_TOKEN_FILE, help="where the token is (created if missing)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs the node offers (default: all)")
    parser.add_argument("--address", default=None, help="join: the head's GCS address, HOST:PORT")
    parser.add_argument("--node-ip", default=HOST, help="join: the IP this node announces (default: loopback)")
    parser.add_argument("--block", action="store_true", help="join: keep the node in the foreground until killed")
    parser.add_argument("--temp-dir", default=None, help="Ray's session folder (default: Ray's, under /tmp)")
    parser.add_argument("--wait", type=float, default=90.0, help="seconds to wait for the job API after starting")
    parser.add_argument("--agent-port", type=int, default=None,
                        help="up: the job agent's port (default: Ray's 52365 when free, else a free one)")
    parser.add_argument("--client-port", type=int, default=None,
                        help="up: the Ray Client server's port (default: Ray's 10001 when free, else a free one)")
    args = parser.parse_args(argv)
    args.token_file = args.token_file.expanduser().resolve()
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
