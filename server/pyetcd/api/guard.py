"""etcd's gRPC interceptors: what a learner may serve, and the ``hasleader`` requirement.

A learner answers only ``Status``, serializable ``Range`` and the ``Snapshot`` stream; anything
else is ``rpc not supported for learner`` (``v3rpc/interceptor.go``, ``isRPCSupportedForLearner``).
A request carrying the metadata ``hasleader: true`` fails with ``no leader`` while the member
knows no leader.
"""

from __future__ import annotations

from typing import Any

import grpc

from pyetcd.api.rpc import Guard
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors
from pyetcd.server.etcdserver import EtcdServer

SNAPSHOT = ("etcdserverpb.Maintenance", "Snapshot")


def supported_for_learner(service: str, method: str, request: Any) -> bool:
    if (service, method) == SNAPSHOT:
        return True
    if isinstance(request, rpc_pb2.StatusRequest):
        return True
    return isinstance(request, rpc_pb2.RangeRequest) and request.serializable


def _requires_leader(context: grpc.aio.ServicerContext[Any, Any]) -> bool:
    for key, value in context.invocation_metadata() or ():
        if key == "hasleader" and value == "true":
            return True
    return False


def for_server(server: EtcdServer) -> Guard:
    def guard(
        service: str, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        if server.is_learner and not supported_for_learner(service, method, request):
            raise errors.ErrNotSupportedForLearner
        if server.lead == 0 and _requires_leader(context):
            raise errors.ErrNoLeader

    return guard
