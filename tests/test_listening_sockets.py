"""What listens while local Ray (as the jobs start it), the Serve app and the dashboard run: the loopback only.

The sockets come from /proc (Linux): the listening TCP sockets of /proc/net/tcp{,6}, matched by
inode to the file descriptors of the processes a test started (the process tree, plus the Ray
processes that share its Ray temp dir). Sockets of other processes on the machine are ignored.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.screenshots import running_dashboard
from tests.servers import ROOT, ray_tmpdir, serve_app

pytestmark = [pytest.mark.slow,  # starts Ray, Serve and Streamlit
              pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")]


def listening_inodes() -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket in this network namespace."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found[int(fields[9])] = (str(ipaddress.ip_address(packed)), int(port, 16))
    return found


def running_pids() -> Iterator[int]:
    """Every process id in /proc."""
    return (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())


def parent_of(pid: int) -> int | None:
    """The parent's process id, or None if the process is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def environment_of(pid: int) -> dict[str, str]:
    """A process's environment (empty if it is gone)."""
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    return dict(e.decode(errors="replace").split("=", 1) for e in entries if b"=" in e)


def started_by(root: int) -> set[int]:
    """``root``, its descendants, and the processes that share its Ray temp dir (TMPDIR; Ray detaches some)."""
    parents = {pid: parent_of(pid) for pid in running_pids()}
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = {pid for pid, of in parents.items() if of == parent} - found
        found |= children
        frontier.extend(children)
    tmpdir = environment_of(root).get("TMPDIR", "")
    if tmpdir.startswith("/tmp/rl-"):  # tests.servers.ray_tmpdir: one per started server
        found |= {pid for pid in parents if environment_of(pid).get("TMPDIR") == tmpdir}
    return found


def pid_with_arguments(*arguments: str) -> int:
    """The one running process whose command line holds ``arguments`` in that order."""
    found = []
    for pid in running_pids():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(command[i:i + len(arguments)] == list(arguments) for i in range(len(command))):
            found.append(pid)
    assert len(found) == 1, f"{len(found)} processes run with {arguments}"
    return found[0]


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback address (::ffff:127.0.0.1)."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def listening_sockets(root: int) -> list[tuple[str, str, int]]:
    """(process 'name[pid]', address, port) of every TCP socket that ``root``'s processes listen on."""
    inodes = listening_inodes()
    found = []
    for pid in sorted(started_by(root)):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue  # exited meanwhile
        inodes_held = {int(t[8:-1]) for t in targets if t.startswith("socket:[")}
        found += [(f"{name}[{pid}]", *inodes[i]) for i in sorted(inodes_held & set(inodes))]
    return found


def off_loopback(sockets: list[tuple[str, str, int]]) -> list[str]:
    """'name[pid] address:port' of the sockets that listen on an address off the loopback."""
    return [f"{name} {address}:{port}" for name, address, port in sockets if not is_loopback(address)]


def test_the_check_sees_a_socket_on_every_interface_and_ignores_other_processes() -> None:
    wait = "print('up', flush=True); sys.stdin.read()"
    server = f"import socket, sys; s = socket.socket(); s.bind(('0.0.0.0', 0)); s.listen(); {wait}"
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    with subprocess.Popen([sys.executable, "-c", server], **pipes) as exposed, \
            subprocess.Popen([sys.executable, "-c", f"import sys; {wait}"], **pipes) as other:
        assert exposed.stdout.readline().strip() == other.stdout.readline().strip() == "up"
        [found] = off_loopback(listening_sockets(exposed.pid))
        assert f"[{exposed.pid}] 0.0.0.0:" in found
        assert listening_sockets(other.pid) == []  # the first child's socket is not the second's
        exposed.stdin.close()
        other.stdin.close()


LOCAL_RAY = textwrap.dedent("""
    import os, sys
    import ray
    from jobs.ray_session import start_ray

    start_ray()

    @ray.remote
    def task():
        return os.getpid()

    @ray.remote
    class Trial:  # Tune's trials are actors: a worker process with its own servers
        def pid(self):
            return os.getpid()

    ray.get([Trial.remote().pid.remote(), task.remote()])
    print("ready", flush=True)
    sys.stdin.read()
    ray.shutdown()
""")


def test_local_ray_of_the_jobs_listens_on_the_loopback_only() -> None:
    with ray_tmpdir() as ray_tmp:
        env = {**os.environ, "TMPDIR": ray_tmp, "RAY_ADDRESS": ""}
        with subprocess.Popen([sys.executable, "-c", LOCAL_RAY], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) as driver:
            try:
                assert driver.stdout.readline().strip() == "ready"
                sockets = listening_sockets(driver.pid)
                assert len(sockets) >= 6, sockets  # GCS, raylet, agents, workers: the check saw them
                assert off_loopback(sockets) == [], sockets
            finally:
                driver.stdin.close()
                driver.wait(timeout=60)


def is_replica_grpc(socket: tuple[str, str, int]) -> bool:
    """A Serve replica's inter-deployment gRPC server: Ray Serve 2.60 binds it to ``[::]:0``, hard-coded.

    ray/serve/_private/replica.py: ``add_port_to_grpc_server(self._server, "[::]:0")``, with no
    setting to change it. Ray's token interceptor guards it (the Serve test checks that).
    """
    name, address, _port = socket
    return name.startswith("ray::ServeRepli[") and address == "::"


def refuses_calls_without_the_token(port: int) -> bool:
    """Whether a replica's gRPC server answers UNAUTHENTICATED to a call that carries no Ray token."""
    import grpc  # installed with Ray

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            channel.unary_unary("/ray.serve.ASGIService/HandleRequest")(b"", timeout=10)
        except grpc.RpcError as error:
            return error.code() == grpc.StatusCode.UNAUTHENTICATED
    return False


def test_the_serve_app_listens_on_the_loopback_only(tmp_path: Path) -> None:
    (tmp_path / "lab" / "models").mkdir(parents=True)
    with serve_app(tmp_path / "lab") as base:
        server = pid_with_arguments("-m", "serve", "--lab", str(tmp_path / "lab"), "--port", base.rsplit(":", 1)[1])
        sockets = listening_sockets(server)
        assert len(sockets) >= 6, sockets  # Ray's servers and Serve's HTTP proxy
        assert off_loopback([s for s in sockets if not is_replica_grpc(s)]) == [], sockets
        replica_grpc = [port for *_, port in filter(is_replica_grpc, sockets)]
        assert len(replica_grpc) == 1 and refuses_calls_without_the_token(replica_grpc[0])


def test_the_dashboard_listens_on_the_loopback_only(tmp_path: Path) -> None:
    with running_dashboard(str(tmp_path / "lab")) as url:
        dashboard = pid_with_arguments("--server.port", url.rsplit(":", 1)[1])
        sockets = listening_sockets(dashboard)
        assert sockets, "the dashboard listens nowhere?"
        assert off_loopback(sockets) == [], sockets
