"""Faults injected into a running cluster: kill -9 and restart, SIGSTOP/SIGCONT pause, and a
network cut of a member's inbound peer traffic (through its :class:`PeerProxy`).

Every fault leaves the cluster whole again when it returns (killed members restarted and ready,
paused members continued, proxies healed); :func:`heal` is the safety net for a ``finally``.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import Cluster, Member
from tests.linearizability.proxy import PeerProxy

PROCESS_FAULTS = ("kill-leader", "kill-random", "pause-leader", "pause-random")
NETWORK_FAULTS = ("cut-leader", "cut-random")


def leader(cluster: Cluster, deadline: float) -> Member | None:
    """The member that reports itself as leader, polled until ``deadline`` (None if none)."""
    while True:
        for member in cluster.members:
            if not member.running:
                continue
            try:
                with grpc.insecure_channel(member.host_port) as channel:
                    resp = rpc_pb2_grpc.MaintenanceStub(channel).Status(
                        rpc_pb2.StatusRequest(), timeout=1.0
                    )
            except grpc.RpcError:
                continue
            if resp.leader != 0 and resp.leader == resp.header.member_id:
                return member
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)  # poll interval


@dataclass
class FaultLog:
    """What was injected, for the report and failure messages."""

    entries: list[str]

    def add(self, text: str) -> None:
        self.entries.append(text)


def pick(cluster: Cluster, rng: random.Random, want_leader: bool) -> Member:
    if want_leader:
        found = leader(cluster, time.monotonic() + 10.0)
        if found is not None:
            return found
    return rng.choice(cluster.members)


def kill_and_restart(member: Member, down_for: float, timeout: float = 30.0) -> None:
    """SIGKILL, stay down ``down_for`` seconds (the fault), start on the same data dir."""
    member.kill(signal.SIGKILL)
    time.sleep(down_for)  # the length of the outage is the fault, not a synchronisation
    member.start_and_wait(timeout)


def pause(member: Member, paused_for: float) -> None:
    """SIGSTOP the member for ``paused_for`` seconds, then SIGCONT."""
    if member.proc is None:
        return
    member.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(paused_for)  # the pause is the fault
    finally:
        member.proc.send_signal(signal.SIGCONT)


def cut(proxy: PeerProxy, cut_for: float) -> None:
    """Stop all peer traffic into the member behind ``proxy`` for ``cut_for`` seconds."""
    proxy.cut()
    try:
        time.sleep(cut_for)  # the length of the partition is the fault
    finally:
        proxy.heal()


# The order of faults over rounds: the first four (a CI run) already cover a kill, a pause and
# a cut, of the leader and of a follower or random member.
ROTATION = (
    "kill-leader",
    "pause-random",
    "cut-leader",
    "kill-random",
    "pause-leader",
    "cut-random",
)


def schedule(rounds: int, kinds: Sequence[str] | None, network: bool) -> list[str]:
    """The fault kind of each round: ``kinds`` cycled (default :data:`ROTATION`)."""
    order = list(kinds) if kinds else [k for k in ROTATION if network or k not in NETWORK_FAULTS]
    unknown = set(order) - set(PROCESS_FAULTS + NETWORK_FAULTS)
    if unknown or not order or (not network and set(order) & set(NETWORK_FAULTS)):
        raise ValueError(f"unusable fault kinds {order} (network faults: {network})")
    return [order[n % len(order)] for n in range(rounds)]


def inject(
    kind: str,
    cluster: Cluster,
    rng: random.Random,
    log: FaultLog,
    proxies: Mapping[str, PeerProxy] | None = None,
) -> None:
    """One fault of ``kind`` on a member picked by ``rng`` (or the leader); returns when every
    member is running again and no proxy is cut."""
    member = pick(cluster, rng, kind.endswith("leader"))
    duration = rng.uniform(0.3, 2.0)
    log.add(f"{kind} {member.name} for {duration:.2f}s")
    if kind.startswith("kill"):
        kill_and_restart(member, duration)
    elif kind.startswith("pause"):
        pause(member, duration)
    elif kind.startswith("cut") and proxies is not None:
        cut(proxies[member.name], duration)
    else:
        raise ValueError(f"cannot inject {kind!r} (proxies: {proxies is not None})")


def heal(cluster: Cluster, proxies: Mapping[str, PeerProxy] | None = None) -> None:
    """Continue any stopped member and heal every proxy (so that stopping the cluster works)."""
    for member in cluster.members:
        if member.running and member.proc is not None:
            member.proc.send_signal(signal.SIGCONT)
    for proxy in (proxies or {}).values():
        proxy.heal()
