"""Free ports for the lab's servers: never one the kernel may hand to an outgoing connection meanwhile."""

from __future__ import annotations

import socket

from diffusion.network import LISTEN_RANGE, _ephemeral_range, free_port, free_ports, port_is_free


def test_free_ports_lie_outside_the_ephemeral_range_and_can_be_bound() -> None:
    low, high = _ephemeral_range()
    ports = {free_port() for _ in range(20)}
    assert len(ports) > 1, "drawn at random, so that two processes choosing at once rarely collide"
    for port in ports:
        assert LISTEN_RANGE[0] <= port <= LISTEN_RANGE[1] and not low <= port <= high
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen()
            assert not port_is_free(port)


def test_ports_drawn_for_servers_side_by_side_are_distinct() -> None:
    """Nothing binds a drawn port before its server starts, so a second draw could give it again: ``free_ports`` and
    ``exclude`` rule that out (a Ray head's dashboard and agent ports once came out the same)."""
    assert all(len(set(free_ports(6))) == 6 for _ in range(50))
    taken = set(free_ports(3))
    assert free_port(exclude=taken) not in taken
