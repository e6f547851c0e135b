"""etcd's gRPC interceptors: what a learner may serve, and the ``hasleader`` requirement.

A learner answers only ``Status``, serializable ``Range`` and the ``Snapshot`` stream; anything
else is ``rpc not supported for learner`` (``v3rpc/interceptor.go``, ``isRPCSupportedForLearner``).
A request carrying the metadata ``hasleader: true`` fails with ``no leader`` while the member
knows no leader; a stream that carries it (Watch, LeaseKeepAlive) is ended with ``no leader``
once the member has known no leader for three election timeouts in a row (etcd's
``monitorLeader``: reconnecting streams costs more than refusing new requests, so it waits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from pyetcd.api.rpc import Guard
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors
from pyetcd.server.v3api import GuardedMember

SNAPSHOT = ("etcdserverpb.Maintenance", "Snapshot")


def supported_for_learner(service: str, method: str, request: Any) -> bool:
    if (service, method) == SNAPSHOT:
        return True
    if isinstance(request, rpc_pb2.StatusRequest):
        return True
    return isinstance(request, rpc_pb2.RangeRequest) and request.serializable


def requires_leader(context: grpc.aio.ServicerContext[Any, Any]) -> bool:
    for key, value in context.invocation_metadata() or ():
        if key == "hasleader" and value == "true":
            return True
    return False


def for_server(server: GuardedMember) -> Guard:
    def guard(
        service: str, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        if server.is_learner and not supported_for_learner(service, method, request):
            raise errors.ErrNotSupportedForLearner
        if server.lead == 0 and requires_leader(context):
            raise errors.ErrNoLeader

    return guard


# Election timeouts in a row without a leader before leader-requiring streams are ended.
MAX_NO_LEADER = 3


class LeaderMonitor:
    """Ends the streams that require a leader once the member has lost its leader for good."""

    def __init__(self, has_leader: Callable[[], bool], interval: float) -> None:
        self.has_leader = has_leader
        self.interval = interval
        self.no_leader_count = 0
        self._streams: set[asyncio.Event] = set()

    def track(self, context: grpc.aio.ServicerContext[Any, Any]) -> asyncio.Event | None:
        """An event set when the stream must end with ``no leader``; None if the stream does
        not require a leader. Hand it back to :meth:`release` when the stream ends."""
        if not requires_leader(context):
            return None
        lost = asyncio.Event()
        self._streams.add(lost)
        return lost

    def release(self, lost: asyncio.Event) -> None:
        self._streams.discard(lost)

    def tick(self) -> int:
        """One election timeout passed: count it, and end the tracked streams at the limit.
        Returns how many streams were ended."""
        if self.has_leader():
            self.no_leader_count = 0
            return 0
        self.no_leader_count += 1
        if self.no_leader_count < MAX_NO_LEADER:
            return 0
        ended = len(self._streams)
        for lost in self._streams:
            lost.set()
        self._streams.clear()
        return ended

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.tick()


def leader_monitor(server: GuardedMember) -> LeaderMonitor:
    return LeaderMonitor(lambda: server.lead != 0, server.cfg.election_timeout_seconds)
