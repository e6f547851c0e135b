"""Loopback ports for test servers, demos and benchmarks: one allocator for every process we start.

Asking the kernel for port 0 and closing the socket, as each harness once did, returns a port that
was free a moment ago and may be handed out again straight away: twice in a row to the same caller
(a member then got the same port for clients and peers and could not bind its second listener), or
as the ephemeral source port of any outgoing connection. This allocator walks a range below the
kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default), so no outgoing
connection ever takes one of its ports, never returns a port twice in one process, starts at an
offset derived from the process id so that concurrent processes walk apart, and skips any port it
cannot bind right now.
"""

from __future__ import annotations

import os
import socket
import threading

__all__ = ["free_port"]

_FIRST = 15000
_LAST = 30000  # exclusive; below the ephemeral range and the NodePort range (30000-32767)
_SPAN = _LAST - _FIRST

_lock = threading.Lock()
_given: set[int] = set()
_cursor = (os.getpid() * 997) % _SPAN


def _bindable(host: str, port: int) -> bool:
    # No SO_REUSEADDR: a port with a listener or connections in TIME_WAIT is skipped, though the
    # server that gets it (which sets SO_REUSEADDR) could have used it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now and that this process has not handed out before."""
    global _cursor
    with _lock:
        for _ in range(_SPAN):
            port = _FIRST + _cursor
            _cursor = (_cursor + 1) % _SPAN
            if port in _given or not _bindable(host, port):
                continue
            _given.add(port)
            return port
    raise RuntimeError(f"no free port left in {_FIRST}-{_LAST - 1} on {host}")
