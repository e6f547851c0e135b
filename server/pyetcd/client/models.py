"""Plain, immutable results of the client's calls (decoupled from the protobuf messages)."""

from __future__ import annotations

from dataclasses import dataclass

from pyetcd.proto.mvccpb import kv_pb2


@dataclass(frozen=True)
class Member:
    """One entry of etcd's member list. An added member that never started has no name."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool

    @property
    def id_hex(self) -> str:
        """The member ID as etcdctl prints it."""
        return f"{self.id:x}"


@dataclass(frozen=True)
class MemberList:
    """The member list with the cluster ID and the ID of the member that answered."""

    cluster_id: int
    member_id: int
    members: tuple[Member, ...]


@dataclass(frozen=True)
class EndpointStatus:
    """What ``etcdctl endpoint status`` shows for one member."""

    endpoint: str
    member_id: int
    cluster_id: int
    leader: int
    raft_term: int
    raft_index: int
    raft_applied_index: int
    db_size: int
    db_size_in_use: int
    version: str
    revision: int
    is_learner: bool
    errors: tuple[str, ...]

    @property
    def is_leader(self) -> bool:
        return self.leader != 0 and self.leader == self.member_id


@dataclass(frozen=True)
class EndpointHealth:
    """The outcome of ``etcdctl endpoint health`` for one endpoint; never an exception."""

    endpoint: str
    healthy: bool
    took_seconds: float
    error: str | None = None


@dataclass(frozen=True)
class AlarmMember:
    """An active alarm: the member that raised it and the alarm name (NOSPACE, CORRUPT)."""

    member_id: int
    alarm: str


@dataclass(frozen=True)
class AuthStatus:
    """``etcdctl auth status``: whether auth is on, and the auth store's revision."""

    enabled: bool
    revision: int


@dataclass(frozen=True)
class WatchWindow:
    """What a window of ``watch_writes`` saw: the revision it started from, the last revision
    a response named, and the events (puts and deletes)."""

    from_revision: int
    to_revision: int
    events: int


@dataclass(frozen=True)
class WatchBatch:
    """One response of ``watch_history``: its events (whole revisions, in order; none for a
    progress notification) and the member's revision when it sent them."""

    events: tuple[kv_pb2.Event, ...]
    revision: int
