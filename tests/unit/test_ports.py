"""tools.ports: the loopback port allocator every harness, demo and benchmark uses."""

from __future__ import annotations

import socket

from tools import ports


def test_never_hands_out_a_port_twice() -> None:
    # The kernel's port 0 hands the same port back on consecutive calls once it is closed; a member
    # then got one port for clients and peers and could not bind the second listener (a red CI).
    given = [ports.free_port() for _ in range(200)]
    assert len(set(given)) == len(given)


def test_ports_stay_out_of_the_ephemeral_and_nodeport_ranges() -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(50):
        port = ports.free_port()
        assert 1024 < port < min(low, 30000)


def test_skips_a_port_something_listens_on() -> None:
    taken = ports.free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", taken + 1))
        listener.listen(1)
        # Rewind so that the walk meets the held port next.
        ports._cursor = taken + 1 - ports._FIRST
        assert ports.free_port() != taken + 1
