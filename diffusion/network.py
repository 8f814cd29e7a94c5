"""Loopback ports for the servers the lab starts locally (dashboard, Serve, Ray heads in tests and benchmarks)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LISTEN_RANGE = (20000, 32767)
"""Where ``free_port`` looks: above Ray's worker ports (10002-19999 by default) and below Linux's default ephemeral
range (32768-60999), from which the kernel hands a local port to every outgoing connection at any moment."""


def port_is_free(port: int) -> bool:
    """Whether nothing on this machine listens on ``port``: a bind to every address succeeds (a server may listen on
    the loopback, on the node's IP or on all of them)."""
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux; elsewhere the IANA range)."""
    try:
        low, high = map(int, EPHEMERAL_RANGE_FILE.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 49152, 65535


def free_port(host: str = "127.0.0.1", tries: int = 200, exclude: frozenset[int] | set[int] = frozenset()) -> int:
    """A TCP port that nothing listens on right now, for a server to bind to later.

    Drawn at random from ``LISTEN_RANGE`` less the kernel's ephemeral range: a port the kernel picks itself (a bind to
    port 0) is one it may give to an outgoing connection before the server binds it, and two processes choosing
    at once rarely draw the same port. ``exclude``: ports already chosen for another server, which nothing listens on
    yet either. Falls back to a port the kernel picks when the range is full."""
    low, high = LISTEN_RANGE
    ephemeral_low, ephemeral_high = _ephemeral_range()
    candidates = [port for port in range(low, high + 1) if not ephemeral_low <= port <= ephemeral_high]
    for port in random.sample(candidates, min(tries, len(candidates))):
        if port not in exclude and port_is_free(port):
            return port
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (``free_port``), for servers that will bind them side by side."""
    ports: list[int] = []
    for _ in range(count):
        ports.append(free_port(host, exclude=set(ports)))
    return ports
