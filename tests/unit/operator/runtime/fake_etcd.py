"""An in-memory stand-in for the etcd calls the handlers make: membership changes with etcd's
error answers, and what observing a cluster asks (member list, status, health, alarms). Every
member that has a client URL answers; the real client and servers are exercised by the
integration tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

import grpc
from etcd_operator.members.membership import LEARNER_NOT_READY, NOT_CAPABLE
from pyetcd.client import (
    AlarmMember,
    EndpointHealth,
    EndpointStatus,
    EtcdClientError,
    Member,
    MemberList,
)

CLUSTER_ID = 0xCAFE


def peer_url(ordinal: int) -> str:
    return f"http://demo-{ordinal}.demo-peer.ns.svc.cluster.local:2380"


def started(ordinal: int, *, learner: bool = False) -> Member:
    """Member ``demo-<ordinal>`` as etcd lists it once its process has joined."""
    return Member(
        0x100 + ordinal,
        f"demo-{ordinal}",
        (peer_url(ordinal),),
        (f"http://c{ordinal}:2379",),
        learner,
    )


class FakeEtcd:
    """etcd's membership calls on an in-memory member list, with etcd's error answers."""

    def __init__(self, size: int = 3, *, leader: int = 0x100) -> None:
        self.members = {0x100 + i: started(i) for i in range(size)}
        self.leader = leader
        self.endpoints: tuple[str, ...] = ("http://demo-client.ns.svc.cluster.local:2379",)
        self.calls: list[str] = []
        self.in_sync = True
        self.capable = True
        self.closed = False
        self.snapshot_chunks: list[bytes] = [b"snapshot"]
        self.snapshots_from: list[str] = []
        self.defragmented: list[str] = []
        self.disarmed: list[tuple[int, str]] = []

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if not self.capable:
            raise EtcdClientError(NOT_CAPABLE, grpc.StatusCode.UNAVAILABLE)

    async def member_list(self, endpoint: str | None = None) -> MemberList:
        return MemberList(CLUSTER_ID, self.leader, tuple(self.members.values()))

    async def member_add(self, peer_urls: Sequence[str], learner: bool = False) -> Member:
        self._check("add")
        new = Member(0x100 + len(self.members), "", tuple(peer_urls), (), learner)
        self.members[new.id] = new
        return new

    async def member_remove(self, member_id: int) -> None:
        self._check("remove")
        if self.members.pop(member_id, None) is None:
            raise EtcdClientError("etcdserver: member not found", grpc.StatusCode.NOT_FOUND)

    async def member_promote(self, member_id: int) -> None:
        self._check("promote")
        if not self.in_sync:
            raise EtcdClientError(LEARNER_NOT_READY, grpc.StatusCode.FAILED_PRECONDITION)
        self.members[member_id] = dataclasses.replace(self.members[member_id], is_learner=False)

    async def move_leader(self, target_id: int) -> None:
        self._check("move")
        self.leader = target_id

    async def status(self, endpoint: str) -> EndpointStatus:
        member = next(m for m in self.members.values() if endpoint in m.client_urls)
        return EndpointStatus(
            endpoint,
            member.id,
            CLUSTER_ID,
            self.leader,
            2,
            10,
            10,
            20480,
            20480,
            "3.5.17",
            5,
            member.is_learner,
            (),
        )

    async def health(self, endpoint: str) -> EndpointHealth:
        return EndpointHealth(endpoint, True, 0.001)

    async def alarm_list(self) -> list[AlarmMember]:
        return []

    async def cluster_version(self, endpoint: str) -> str:
        return "3.5.0"

    async def defragment(self, endpoint: str) -> None:
        self.defragmented.append(endpoint)

    async def alarm_disarm(self, member_id: int, alarm: str) -> list[AlarmMember]:
        self.disarmed.append((member_id, alarm))
        return []

    async def snapshot(
        self, endpoint: str, idle_timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        self.snapshots_from.append(endpoint)
        for chunk in self.snapshot_chunks:
            yield chunk

    async def close(self) -> None:
        self.closed = True
