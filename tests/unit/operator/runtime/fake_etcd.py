"""An in-memory stand-in for the etcd calls the handlers make: membership changes with etcd's
error answers, and what observing a cluster asks (member list, status, health, alarms). Every
member that has a client URL answers; the real client and servers are exercised by the
integration tests.

It has etcd's auth too (users with passwords and roles, roles, auth on or off): with auth on, a
call from a client connected without a user is refused as etcd 3.5 refuses it ("user name is
empty"), and one with a wrong password fails to authenticate; ``connected_as`` is the user the
test's connect function was given. ``auth_status_supported`` False is etcd 3.4 (no
``AuthStatus``)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

import grpc
from etcd_operator.components.auth import RootCredentials
from etcd_operator.members.auth import (
    AUTH_FAILED,
    NOT_ENABLED,
    ROLE_EXISTS,
    ROLE_NOT_FOUND,
    USER_EXISTS,
    USER_NOT_FOUND,
)
from etcd_operator.members.membership import LEARNER_NOT_READY, NOT_CAPABLE
from pyetcd.client import (
    AlarmMember,
    AuthStatus,
    EndpointHealth,
    EndpointStatus,
    EtcdClientError,
    Member,
    MemberList,
    WatchBatch,
    WatchCompactedError,
    WatchWindow,
)

CLUSTER_ID = 0xCAFE
USER_EMPTY = "etcdserver: user name is empty"


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
        self.auth_enabled = False
        self.users: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.roles: set[str] = set()
        self.auth_calls: list[str] = []
        self.auth_status_supported = True
        self.connected_as: RootCredentials | None = None
        # An auth call that fails once with this message (a pass interrupted there).
        self.fail_auth_call: tuple[str, str] | None = None
        # What a write sample's watch sees: (revision the window starts at, keys in order);
        # watch_refused makes the watch fail as etcd refuses one.
        self.window: tuple[int, list[bytes]] = (1, [])
        # What a continuous backup's watch sees, and the leases' granted TTLs.
        self.history: list[WatchBatch] = []
        self.lease_ttls: dict[int, int] = {}
        # Revisions below this are compacted: a history watch from one of them is refused.
        self.compacted_below = 0
        self.watched: list[tuple[str, float]] = []
        self.watch_refused: str | None = None

    def _authorized(self) -> None:
        """etcd's answer to a call while auth is on: a user is needed, with its password."""
        if not self.auth_enabled:
            return
        who = self.connected_as
        if who is None:
            raise EtcdClientError(
                "etcdserver: user name is empty", grpc.StatusCode.INVALID_ARGUMENT
            )
        known = self.users.get(who.user)
        if known is None or known[0] != who.password:
            raise EtcdClientError(AUTH_FAILED, grpc.StatusCode.INVALID_ARGUMENT)

    def _auth_call(self, call: str) -> None:
        self.auth_calls.append(call)
        if self.fail_auth_call is not None and self.fail_auth_call[0] == call:
            message = self.fail_auth_call[1]
            self.fail_auth_call = None
            raise EtcdClientError(message, grpc.StatusCode.UNAVAILABLE)
        self._authorized()

    async def auth_status(self) -> AuthStatus:
        if not self.auth_status_supported:
            raise EtcdClientError("unknown method AuthStatus", grpc.StatusCode.UNIMPLEMENTED)
        # As the real client: one with a user authenticates before its first call.
        if self.auth_enabled and self.connected_as is not None:
            self._authorized()
        return AuthStatus(self.auth_enabled, len(self.auth_calls))

    async def authenticate(self, user: str, password: str) -> str:
        if not self.auth_enabled:
            raise EtcdClientError(NOT_ENABLED, grpc.StatusCode.FAILED_PRECONDITION)
        known = self.users.get(user)
        if known is None or known[0] != password:
            raise EtcdClientError(AUTH_FAILED, grpc.StatusCode.INVALID_ARGUMENT)
        return f"token-{user}"

    async def user_add(self, user: str, password: str) -> None:
        self._auth_call("user_add")
        if user in self.users:
            raise EtcdClientError(USER_EXISTS, grpc.StatusCode.FAILED_PRECONDITION)
        self.users[user] = (password, ())

    async def user_get(self, user: str) -> tuple[str, ...]:
        self._authorized()
        if user not in self.users:
            raise EtcdClientError(USER_NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
        return self.users[user][1]

    async def user_change_password(self, user: str, password: str) -> None:
        self._auth_call("user_change_password")
        if user not in self.users:
            raise EtcdClientError(USER_NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
        self.users[user] = (password, self.users[user][1])

    async def user_grant_role(self, user: str, role: str) -> None:
        self._auth_call("user_grant_role")
        if role not in self.roles:
            raise EtcdClientError(ROLE_NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
        password, roles = self.users[user]
        self.users[user] = (password, tuple(sorted({*roles, role})))

    async def role_add(self, role: str) -> None:
        self._auth_call("role_add")
        if role in self.roles:
            raise EtcdClientError(ROLE_EXISTS, grpc.StatusCode.FAILED_PRECONDITION)
        self.roles.add(role)

    async def role_get(self, role: str) -> None:
        self._authorized()
        if role not in self.roles:
            raise EtcdClientError(ROLE_NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)

    async def auth_enable(self) -> None:
        self._auth_call("auth_enable")
        root = self.users.get("root")
        if root is None or "root" not in root[1]:
            raise EtcdClientError(
                "etcdserver: root user does not have root role", grpc.StatusCode.FAILED_PRECONDITION
            )
        self.auth_enabled = True

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if not self.capable:
            raise EtcdClientError(NOT_CAPABLE, grpc.StatusCode.UNAVAILABLE)

    async def member_list(self, endpoint: str | None = None) -> MemberList:
        self._authorized()
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
        self._authorized()
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
        try:
            self._authorized()
        except EtcdClientError as err:
            return EndpointHealth(endpoint, False, 0.001, err.message)
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

    async def watch_writes(self, seconds: float, on_write: Callable[[bytes], None]) -> WatchWindow:
        self.watched.append((self.endpoints[0], seconds))
        if self.watch_refused is not None:
            raise EtcdClientError(self.watch_refused, grpc.StatusCode.UNAVAILABLE)
        start, keys = self.window
        for key in keys:
            on_write(key)
        return WatchWindow(start, start + len(keys), len(keys))

    async def watch_history(
        self, start_revision: int, progress_every: float | None = None
    ) -> AsyncGenerator[WatchBatch, None]:
        """The batches in ``history`` after ``start_revision``; then it waits for ever."""
        self.watched.append((self.endpoints[0], float(start_revision)))
        if start_revision < self.compacted_below:
            raise WatchCompactedError(self.compacted_below, self.endpoints[0])
        for batch in self.history:
            events = tuple(e for e in batch.events if e.kv.mod_revision >= start_revision)
            if events or not batch.events:
                yield WatchBatch(events, batch.revision)
        await asyncio.Event().wait()

    async def lease_granted_ttl(self, lease_id: int) -> int | None:
        return self.lease_ttls.get(lease_id)

    async def close(self) -> None:
        self.closed = True
