"""The etcd client the operator opens per pass: one type for observing and changing membership.

The runtime never imports ``pyetcd.client`` itself; it gets a connection from here (or, in tests,
from an in-memory etcd with the same calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pyetcd.client import EtcdClient

from etcd_operator.members.membership import ClusterClient
from etcd_operator.members.observe import ObservingClient


class EtcdConnection(ClusterClient, ObservingClient, Protocol):
    """A client for observing etcd and changing its membership, closed after use."""

    async def close(self) -> None: ...


def connect_etcd(endpoints: Sequence[str], timeout: float) -> EtcdConnection:
    return EtcdClient(endpoints, timeout)
