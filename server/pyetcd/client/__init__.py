"""A thin asyncio etcd v3 client over grpc.aio and the generated stubs.

Used by the operator (``etcd_operator.members``) and by the tests; it speaks only the etcd wire
protocol (``pyetcd.proto``), so it works the same against upstream etcd and pyetcd, and it never
imports server internals.
"""

from __future__ import annotations

from pyetcd.client.auth import Credentials
from pyetcd.client.client import ClientTLS, EtcdClient, normalize_endpoint
from pyetcd.client.errors import EtcdClientError, WatchCompactedError
from pyetcd.client.models import (
    AlarmMember,
    AuthStatus,
    EndpointHealth,
    EndpointStatus,
    Member,
    MemberList,
    WatchBatch,
    WatchWindow,
)

__all__ = [
    "AlarmMember",
    "AuthStatus",
    "ClientTLS",
    "Credentials",
    "EndpointHealth",
    "EndpointStatus",
    "EtcdClient",
    "EtcdClientError",
    "Member",
    "MemberList",
    "WatchBatch",
    "WatchCompactedError",
    "WatchWindow",
    "normalize_endpoint",
]
