"""Network namespaces: the cluster network (a bridge in a namespace of its own) and one per pod.

Layout, all inside namespaces this module creates (the host's network is never touched):

- ``<prefix>-net``: the "cluster network" namespace. It holds the bridge ``br0`` with the gateway
  address ``10.244.0.1/16``, and a ``local`` route for the whole Service range, so the kubelet's
  service proxy and DNS responder can bind any ClusterIP (``10.96.0.0/16``) there.
  It also holds ``<prefix>drop``, the sink of refused connections (see :mod:`e2e.kubelet.enforcer`).
- ``<prefix>-<n>``: one namespace per pod, with ``eth0`` (a veth whose peer ``<prefix>v<n>`` is a
  port of the bridge), its own pod IP and a default route via the gateway.

The kubelet itself stays in the host namespace: it makes sockets in the others with
:func:`socket_in`, which switches one thread into the namespace for the ``socket()`` call (a
socket belongs to the namespace it was created in).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
POD_CIDR_PREFIX = 16
GATEWAY = "10.244.0.1"
SERVICE_RANGE = "10.96.0.0/16"

_libc = ctypes.CDLL(None, use_errno=True)
_setns_lock = threading.Lock()
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netns")


class NetnsError(RuntimeError):
    """An ``ip`` command failed."""


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip args...``; raise with its stderr on failure."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


async def aip(*args: str, check: bool = True) -> str:
    """``ip`` without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: ip(*args, check=check))


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def socket_in_sync(netns: str, family: int, kind: int) -> socket.socket:
    """A new socket in ``netns`` (this thread enters it for the call, then returns home)."""
    with _setns_lock:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
        try:
            _setns(target)
            try:
                return socket.socket(family, kind)
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)


async def socket_in(
    netns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    return await asyncio.get_running_loop().run_in_executor(
        _executor, socket_in_sync, netns, family, kind
    )


async def open_connection_in(
    netns: str, host: str, port: int, seconds: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection made from inside ``netns``."""
    sock = await socket_in(netns)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), seconds)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def list_netns(prefix: str) -> list[str]:
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def delete_all(prefix: str) -> None:
    """Delete every namespace whose name starts with ``prefix`` (the veths go with them)."""
    for name in list_netns(prefix):
        ip("netns", "delete", name, check=False)


class ClusterNetwork:
    """The bridge namespace and the pod namespaces of one kubelet run."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.name = f"{prefix}-net"
        # A veth whose peer stays down: what it is given is dropped. The NetworkPolicy filters
        # send refused connections there (this kernel has no tc drop action, nor dummy links).
        self.blackhole = f"{prefix}drop"
        self._next = 0

    def create(self) -> None:
        delete_all(self.prefix)
        ip("netns", "add", self.name)
        ns = ("-n", self.name)
        ip(*ns, "link", "set", "lo", "up")
        ip(*ns, "link", "add", "br0", "type", "bridge")
        ip(*ns, "addr", "add", f"{GATEWAY}/{POD_CIDR_PREFIX}", "dev", "br0")
        ip(*ns, "link", "set", "br0", "up")
        ip(*ns, "route", "add", "local", SERVICE_RANGE, "dev", "lo")
        ip(*ns, "link", "add", self.blackhole, "type", "veth", "peer", "name", f"{self.prefix}hole")
        ip(*ns, "link", "set", self.blackhole, "up")

    def destroy(self) -> None:
        delete_all(self.prefix)

    def pod_namespace(self) -> tuple[str, str]:
        """A fresh (namespace, host-side veth) name pair."""
        self._next += 1
        return f"{self.prefix}-{self._next}", f"{self.prefix}v{self._next}"

    async def add_pod(self, netns: str, veth: str, address: str) -> None:
        await aip("netns", "add", netns)
        await aip("-n", netns, "link", "set", "lo", "up")
        await aip(
            "-n", self.name, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
            "netns", netns,
        )  # fmt: skip
        await aip("-n", self.name, "link", "set", veth, "master", "br0", "up")
        await aip("-n", netns, "addr", "add", f"{address}/{POD_CIDR_PREFIX}", "dev", "eth0")
        await aip("-n", netns, "link", "set", "eth0", "up")
        await aip("-n", netns, "route", "add", "default", "via", GATEWAY)

    async def remove_pod(self, netns: str) -> None:
        await aip("netns", "delete", netns, check=False)

    async def set_link(self, veth: str, up: bool) -> None:
        """Plug or unplug a pod: its veth's bridge side up or down."""
        await aip("-n", self.name, "link", "set", veth, "up" if up else "down")
