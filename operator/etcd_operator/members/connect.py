"""The etcd client the operator opens per pass or backup: one type for observing, changing
membership and streaming a member's snapshot.

The runtime never imports ``pyetcd.client`` itself; it gets a connection from here (or, in tests,
from an in-memory etcd with the same calls).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Protocol

from pyetcd.client import ClientTLS, Credentials, EtcdClient, WatchBatch, WatchWindow

from etcd_operator.components.auth import RootCredentials
from etcd_operator.components.tls import ClientCredentials
from etcd_operator.members.auth import AuthClient
from etcd_operator.members.maintenance import MaintenanceClient
from etcd_operator.members.membership import ClusterClient
from etcd_operator.members.observe import ObservingClient


class SnapshotClient(Protocol):
    """The call a backup makes: ``Maintenance.Snapshot`` of one member, as raw chunks."""

    def snapshot(
        self, endpoint: str, idle_timeout: float | None = None
    ) -> AsyncIterator[bytes]: ...


class WatchClient(Protocol):
    """The watches of a write sample (a window of the whole key space) and of a continuous
    backup (the whole key space from a revision on, and the TTLs of the leases it sees)."""

    async def watch_writes(
        self, seconds: float, on_write: Callable[[bytes], None]
    ) -> WatchWindow: ...

    def watch_history(
        self, start_revision: int, progress_every: float | None = None
    ) -> AsyncGenerator[WatchBatch, None]: ...

    async def lease_granted_ttl(self, lease_id: int) -> int | None: ...


class EtcdConnection(
    ClusterClient,
    ObservingClient,
    SnapshotClient,
    MaintenanceClient,
    AuthClient,
    WatchClient,
    Protocol,
):
    """A client for observing etcd, changing its membership, maintaining its members,
    streaming snapshots, sampling writes and turning auth on; closed after use."""

    async def close(self) -> None: ...


def connect_etcd(
    endpoints: Sequence[str],
    timeout: float,
    tls: ClientCredentials | None = None,
    auth: RootCredentials | None = None,
) -> EtcdConnection:
    """A client of ``endpoints``; with ``tls``, it presents that client certificate and trusts
    only that CA (https endpoints); with ``auth``, every call carries that user's token once
    etcd's auth is on. Both together: etcd takes the client certificate's CN as the user only
    when a call carries no token, so the calls run as ``auth``'s user."""
    client_tls = None if tls is None else ClientTLS(ca=tls.ca, cert=tls.cert, key=tls.key)
    user = None if auth is None else Credentials(auth.user, auth.password)
    return EtcdClient(endpoints, timeout, client_tls, user)
