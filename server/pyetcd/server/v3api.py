"""What the API layer may ask of a member: one small interface per etcd service.

``api/`` depends on these protocols, never on the concrete ``EtcdServer``, as etcd's v3rpc
servers take the narrow interfaces of ``etcdserver`` (``RaftKV``, ``Lessor``, ``Authenticator``,
...). The member implements them all; each servicer sees only what its service needs, so that
what the request surface offers is stated here in one place and the server's insides can move
without the services noticing.
"""

from __future__ import annotations

from typing import Any, Protocol

from pyetcd import __version__
from pyetcd.backend import contract
from pyetcd.mvcc import WatchableStore
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server.auth.store import AuthStore
from pyetcd.server.auth.tokens import AuthInfo
from pyetcd.server.config import ServerConfig
from pyetcd.server.kv_apply import RangeResult
from pyetcd.server.membership import Member
from pyetcd.server.metrics import ServerMetrics

CLUSTER_VERSION = ".".join(__version__.split(".")[:2]) + ".0"
"""The cluster version a member of this release publishes (major.minor.0, as etcd)."""


def member_pb(m: Member) -> rpc_pb2.Member:
    return rpc_pb2.Member(
        ID=m.id,
        name=m.name,
        peerURLs=list(m.peer_urls),
        clientURLs=list(m.client_urls),
        isLearner=m.is_learner,
    )


class ServingMember(Protocol):
    """The member answering: its identity for response headers, and its settings."""

    @property
    def cluster_id(self) -> int: ...

    @property
    def member_id(self) -> int: ...

    @property
    def cfg(self) -> ServerConfig: ...

    @property
    def term(self) -> int: ...

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader: ...


class KVServer(ServingMember, Protocol):
    @property
    def store(self) -> WatchableStore: ...

    async def range_linearizable(
        self, req: rpc_pb2.RangeRequest, ai: AuthInfo | None = None
    ) -> RangeResult: ...

    async def put(
        self, req: rpc_pb2.PutRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.PutResponse: ...

    async def delete_range(
        self, req: rpc_pb2.DeleteRangeRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.DeleteRangeResponse: ...

    async def txn(
        self, req: rpc_pb2.TxnRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.TxnResponse: ...

    async def compact(
        self, req: rpc_pb2.CompactionRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.CompactionResponse: ...


class WatchServer(ServingMember, Protocol):
    @property
    def store(self) -> WatchableStore: ...

    @property
    def auth(self) -> AuthStore: ...


class LeaseServer(ServingMember, Protocol):
    async def lease_grant(
        self, req: rpc_pb2.LeaseGrantRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.LeaseGrantResponse: ...

    async def lease_revoke(
        self, req: rpc_pb2.LeaseRevokeRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.LeaseRevokeResponse: ...

    async def lease_renew(self, lease_id: int, ai: AuthInfo | None = None) -> int: ...

    async def lease_time_to_live(
        self, req: rpc_pb2.LeaseTimeToLiveRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.LeaseTimeToLiveResponse: ...

    def lease_leases(self, ai: AuthInfo | None = None) -> rpc_pb2.LeaseLeasesResponse: ...


class ClusterServer(ServingMember, Protocol):
    def member_list(self) -> list[Member]: ...

    async def member_add(
        self, peer_urls: list[str], is_learner: bool
    ) -> tuple[Member, list[Member]]: ...

    async def member_remove(self, member_id: int) -> list[Member]: ...

    async def member_update(self, member_id: int, peer_urls: list[str]) -> list[Member]: ...

    async def member_promote(self, member_id: int) -> list[Member]: ...


class AlarmServer(Protocol):
    async def alarm(self, req: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse: ...


class MaintenanceServer(ServingMember, Protocol):
    def status(self) -> rpc_pb2.StatusResponse: ...

    async def defragment(self) -> None: ...

    async def hash(self) -> int: ...

    def hash_kv(self, revision: int) -> tuple[int, int, int, int]: ...

    async def move_leader(self, transferee: int) -> None: ...

    async def snapshot(self) -> contract.SnapshotReader: ...


class AuthServer(ServingMember, Protocol):
    @property
    def auth(self) -> AuthStore: ...

    async def authenticate(self, name: str, password: str) -> rpc_pb2.AuthenticateResponse: ...

    async def auth_request(self, kind: str, req: Any, ai: AuthInfo | None) -> Any: ...

    async def auth_info_from_token(self, token: str) -> AuthInfo: ...


class GuardedMember(Protocol):
    """What etcd's interceptors look at: learner or not, and the leader."""

    @property
    def cfg(self) -> ServerConfig: ...

    @property
    def lead(self) -> int: ...

    @property
    def is_learner(self) -> bool: ...


class HealthSource(Protocol):
    """What ``/health`` and ``/metrics`` read."""

    @property
    def alarms(self) -> set[tuple[int, int]]: ...

    @property
    def lead(self) -> int: ...

    @property
    def metrics(self) -> ServerMetrics: ...

    async def range_linearizable(
        self, req: rpc_pb2.RangeRequest, ai: AuthInfo | None = None
    ) -> RangeResult: ...
