"""Loopback ports for the servers the lab starts locally (dashboard, Serve, Ray heads in tests and benchmarks)."""

from __future__ import annotations

import socket


def port_is_free(port: int) -> bool:
    """Whether nothing on this machine listens on ``port``: a bind to every address succeeds (a server may listen on
    the loopback, on the node's IP or on all of them)."""
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
