"""The etcd client the operator opens per pass or backup: one type for observing, changing
membership and streaming a member's snapshot.

The runtime never imports ``pyetcd.client`` itself; it gets a connection from here (or, in tests,
from an in-memory etcd with the same calls).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from pyetcd.client import ClientTLS, EtcdClient

from etcd_operator.components.tls import ClientCredentials
from etcd_operator.members.maintenance import MaintenanceClient
from etcd_operator.members.membership import ClusterClient
from etcd_operator.members.observe import ObservingClient


class SnapshotClient(Protocol):
    """The call a backup makes: ``Maintenance.Snapshot`` of one member, as raw chunks."""

    def snapshot(
        self, endpoint: str, idle_timeout: float | None = None
    ) -> AsyncIterator[bytes]: ...


class EtcdConnection(ClusterClient, ObservingClient, SnapshotClient, MaintenanceClient, Protocol):
    """A client for observing etcd, changing its membership, maintaining its members and
    streaming snapshots; closed after use."""

    async def close(self) -> None: ...


def connect_etcd(
    endpoints: Sequence[str], timeout: float, tls: ClientCredentials | None = None
) -> EtcdConnection:
    """A client of ``endpoints``; with ``tls``, it presents that client certificate and trusts
    only that CA (https endpoints)."""
    if tls is None:
        return EtcdClient(endpoints, timeout)
    return EtcdClient(endpoints, timeout, ClientTLS(ca=tls.ca, cert=tls.cert, key=tls.key))
