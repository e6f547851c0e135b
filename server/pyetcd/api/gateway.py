"""etcd's HTTP/JSON gateway (grpc-gateway v1): ``POST /v3/<service>/<method>`` with a JSON body.

As etcd does, the gateway is a client of the member's own gRPC server: the request's JSON is
parsed into the gRPC request message, the call goes through the same gRPC services (and their
guards) over the member's private socket, and the answer is written back as JSON. The JSON is
grpc-gateway's: proto field names (``cluster_id``, ``range_end``), 64-bit integers as strings,
bytes as base64, enums by name, zero values left out. A gRPC error becomes
``{"error": msg, "code": n, "message": msg}`` with grpc-gateway's HTTP status for the code.
``/v3beta/`` paths are served as ``/v3/`` (etcd's redirect for older clients).

The streaming calls (watch, lease keep-alive, snapshot) answer as grpc-gateway's do: a chunked
response, one ``{"result": ...}`` JSON line per message; a watch lasts until the client goes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc import aio

from pyetcd.proto.etcdserverpb import rpc_pb2

JSON = "application/json"

# Path -> (the gRPC method's full name, request type, response type).
ROUTES: dict[str, tuple[str, type[Message], type[Message]]] = {}

# (path, service, method): the message types are <Name>Request and <Name>Response, where Name
# is the method's name, but "Compaction" for Compact and "Auth<method>" for users and roles.
_UNARY = (
    ("/v3/kv/range", "KV", "Range"),
    ("/v3/kv/put", "KV", "Put"),
    ("/v3/kv/deleterange", "KV", "DeleteRange"),
    ("/v3/kv/txn", "KV", "Txn"),
    ("/v3/kv/compaction", "KV", "Compact"),
    ("/v3/lease/grant", "Lease", "LeaseGrant"),
    ("/v3/lease/revoke", "Lease", "LeaseRevoke"),
    ("/v3/kv/lease/revoke", "Lease", "LeaseRevoke"),
    ("/v3/lease/timetolive", "Lease", "LeaseTimeToLive"),
    ("/v3/kv/lease/timetolive", "Lease", "LeaseTimeToLive"),
    ("/v3/lease/leases", "Lease", "LeaseLeases"),
    ("/v3/kv/lease/leases", "Lease", "LeaseLeases"),
    ("/v3/cluster/member/add", "Cluster", "MemberAdd"),
    ("/v3/cluster/member/remove", "Cluster", "MemberRemove"),
    ("/v3/cluster/member/update", "Cluster", "MemberUpdate"),
    ("/v3/cluster/member/list", "Cluster", "MemberList"),
    ("/v3/cluster/member/promote", "Cluster", "MemberPromote"),
    ("/v3/maintenance/alarm", "Maintenance", "Alarm"),
    ("/v3/maintenance/status", "Maintenance", "Status"),
    ("/v3/maintenance/defragment", "Maintenance", "Defragment"),
    ("/v3/maintenance/hash", "Maintenance", "Hash"),
    ("/v3/maintenance/hashkv", "Maintenance", "HashKV"),
    ("/v3/maintenance/transfer-leadership", "Maintenance", "MoveLeader"),
    ("/v3/auth/enable", "Auth", "AuthEnable"),
    ("/v3/auth/disable", "Auth", "AuthDisable"),
    ("/v3/auth/status", "Auth", "AuthStatus"),
    ("/v3/auth/authenticate", "Auth", "Authenticate"),
    ("/v3/auth/user/add", "Auth", "UserAdd"),
    ("/v3/auth/user/get", "Auth", "UserGet"),
    ("/v3/auth/user/list", "Auth", "UserList"),
    ("/v3/auth/user/delete", "Auth", "UserDelete"),
    ("/v3/auth/user/changepw", "Auth", "UserChangePassword"),
    ("/v3/auth/user/grant", "Auth", "UserGrantRole"),
    ("/v3/auth/user/revoke", "Auth", "UserRevokeRole"),
    ("/v3/auth/role/add", "Auth", "RoleAdd"),
    ("/v3/auth/role/get", "Auth", "RoleGet"),
    ("/v3/auth/role/list", "Auth", "RoleList"),
    ("/v3/auth/role/delete", "Auth", "RoleDelete"),
    ("/v3/auth/role/grant", "Auth", "RoleGrantPermission"),
    ("/v3/auth/role/revoke", "Auth", "RoleRevokePermission"),
)
for _path, _service, _method in _UNARY:
    _name = {"Compact": "Compaction"}.get(_method, _method)
    if _method.startswith(("User", "Role")):
        _name = "Auth" + _method
    ROUTES[_path] = (
        f"/etcdserverpb.{_service}/{_method}",
        getattr(rpc_pb2, f"{_name}Request"),
        getattr(rpc_pb2, f"{_name}Response"),
    )

# Streaming calls: path -> (full name, request type, response type, the client streams too).
STREAMS: dict[str, tuple[str, type[Message], type[Message], bool]] = {
    "/v3/watch": ("/etcdserverpb.Watch/Watch", rpc_pb2.WatchRequest, rpc_pb2.WatchResponse, True),
    "/v3/lease/keepalive": (
        "/etcdserverpb.Lease/LeaseKeepAlive",
        rpc_pb2.LeaseKeepAliveRequest,
        rpc_pb2.LeaseKeepAliveResponse,
        True,
    ),
    "/v3/maintenance/snapshot": (
        "/etcdserverpb.Maintenance/Snapshot",
        rpc_pb2.SnapshotRequest,
        rpc_pb2.SnapshotResponse,
        False,
    ),
}

# grpc-gateway's runtime.HTTPStatusFromCode.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 408,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


def _error(code: grpc.StatusCode, message: str) -> tuple[int, str, bytes]:
    body = {"error": message, "code": code.value[0], "message": message}
    return HTTP_STATUS.get(code, 500), JSON, json.dumps(body, separators=(",", ":")).encode()


def to_json(message: Message) -> bytes:
    """grpc-gateway's JSON of a response (proto names, int64 as strings, no zero values)."""
    data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return json.dumps(data, separators=(",", ":")).encode()


class Gateway:
    """Serves the ``/v3/`` paths by calling the member's gRPC server at ``target``."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._channel: aio.Channel | None = None

    def serves(self, path: str) -> bool:
        return path.startswith(("/v3/", "/v3beta/"))

    async def handle(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, str, bytes | AsyncIterator[bytes]]:
        if path.startswith("/v3beta/"):
            path = "/v3/" + path.removeprefix("/v3beta/")
        route = ROUTES.get(path)
        if route is None and path not in STREAMS:
            # grpc-gateway's answer to a path it has no pattern for: plain text.
            return 404, "text/plain; charset=utf-8", b"Not Found\n"
        if method != "POST":
            return 405, "text/plain; charset=utf-8", b"Method Not Allowed\n"
        full_name, request_type, response_type = route or STREAMS[path][:3]
        request = request_type()
        try:
            if body.strip():
                json_format.Parse(body, request, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError) as err:
            return _error(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        # grpc-gateway hands the Authorization header to the call as metadata: the token.
        token = (headers or {}).get("authorization")
        metadata = (("authorization", token),) if token else None
        if route is None:
            return 200, JSON, self._stream(path, request, metadata)
        call = self._channel_now().unary_unary(
            full_name,
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            response = await call(request, metadata=metadata)
        except aio.AioRpcError as err:
            return _error(err.code(), err.details() or "")
        return 200, JSON, to_json(response)

    async def _stream(
        self, path: str, request: Message, metadata: tuple[tuple[str, str], ...] | None
    ) -> AsyncIterator[bytes]:
        """grpc-gateway's streamed answer: one ``{"result": ...}`` line per message, or one
        ``{"error": ...}`` line when the call fails. The request stream of a bidirectional
        call stays open (a watch goes on) until the HTTP client goes."""
        full_name, request_type, response_type, bidi = STREAMS[path]
        channel = self._channel_now()
        call: Any
        if bidi:
            stop = asyncio.Event()

            async def requests() -> AsyncIterator[Message]:
                yield request
                await stop.wait()

            call = channel.stream_stream(
                full_name,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )(requests(), metadata=metadata)
        else:
            call = channel.unary_stream(
                full_name,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )(request, metadata=metadata)
        try:
            async for response in call:
                yield b'{"result":' + to_json(response) + b"}\n"
        except aio.AioRpcError as err:
            code, message = err.code(), err.details() or ""
            body = {"error": message, "code": code.value[0], "message": message}
            yield b'{"error":' + json.dumps(body, separators=(",", ":")).encode() + b"}\n"
        finally:
            call.cancel()

    def _channel_now(self) -> aio.Channel:
        if self._channel is None:
            self._channel = aio.insecure_channel(self._target)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
