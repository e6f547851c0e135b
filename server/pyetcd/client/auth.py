"""Password authentication for the client: a token per endpoint, carried on every call.

As clientv3 does: ``Authenticate`` with the user and password once per connection, send the
token in the ``token`` metadata of every call, and on ``invalid auth token`` (the member
restarted, or the token expired) or ``revision of auth store is old`` authenticate again and
retry the call once. While the cluster has auth off, calls go without a token, until one is
refused for want of a user (auth was enabled since). Streams (snapshot, watch) carry the token
but are not retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio

from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

# As etcd's own client (MaxCallRecvMsgSize math.MaxInt32): a watch response carries whole
# values, a range as many as asked for; grpc's default 4 MiB would refuse some.
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 2**31 - 1),)

AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"
AUTH_NOT_ENABLED = "etcdserver: authentication is not enabled"
# The answers after which clientv3 authenticates again (client/v3/retry_interceptor.go).
STALE_TOKEN = frozenset(
    {
        "etcdserver: invalid auth token",
        "etcdserver: revision of auth store is old",
        "etcdserver: user name is empty",
    }
)


@dataclass(frozen=True)
class Credentials:
    """A user and its password (never logged: ``repr`` leaves the password out)."""

    user: str
    password: str = field(repr=False)


class TokenSource:
    """The current token of one endpoint, fetched with ``Authenticate`` when needed."""

    def __init__(self, credentials: Credentials, timeout: float) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self.channel: aio.Channel | None = None
        # None: not asked yet; "": auth is not enabled on the cluster (calls go without one).
        self._token: str | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._token is not None:
            return self._token
        async with self._lock:
            if self._token is None:
                self._token = await self._authenticate()
        return self._token

    async def _authenticate(self) -> str:
        assert self.channel is not None, "the channel is attached before any call"
        stub = rpc_pb2_grpc.AuthStub(self.channel)
        try:
            resp = await stub.Authenticate(
                rpc_pb2.AuthenticateRequest(
                    name=self.credentials.user, password=self.credentials.password
                ),
                timeout=self.timeout,
            )
        except aio.AioRpcError as err:
            # As clientv3: with auth off, go on without a token (and ask again once a call
            # says a user is needed).
            if err.details() == AUTH_NOT_ENABLED:
                return ""
            raise
        return str(resp.token)

    def forget(self, token: str) -> None:
        if self._token == token:
            self._token = None


def _with_token(details: aio.ClientCallDetails, token: str) -> aio.ClientCallDetails:
    if not token:
        return details
    metadata = aio.Metadata(*(details.metadata or ()))
    metadata.add("token", token)
    return aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def _is_authenticate(details: aio.ClientCallDetails) -> bool:
    method = details.method
    return (method.decode() if isinstance(method, bytes) else method) == AUTHENTICATE


class TokenUnary(aio.UnaryUnaryClientInterceptor):
    def __init__(self, source: TokenSource) -> None:
        self.source = source

    async def intercept_unary_unary(
        self,
        continuation: Callable[[aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        if _is_authenticate(client_call_details):
            return await continuation(client_call_details, request)
        token = await self.source.token()
        call = await continuation(_with_token(client_call_details, token), request)
        try:
            await call
        except aio.AioRpcError as err:
            if err.details() not in STALE_TOKEN:
                return call
            self.source.forget(token)
            token = await self.source.token()
            return await continuation(_with_token(client_call_details, token), request)
        return call


class TokenUnaryStream(aio.UnaryStreamClientInterceptor):
    def __init__(self, source: TokenSource) -> None:
        self.source = source

    async def intercept_unary_stream(
        self,
        continuation: Callable[[aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        token = await self.source.token()
        return await continuation(_with_token(client_call_details, token), request)


def authenticated_channel(
    target: str,
    credentials: Credentials,
    timeout: float,
    channel_credentials: grpc.ChannelCredentials | None,
) -> aio.Channel:
    """A channel whose calls carry ``credentials``' token."""
    source = TokenSource(credentials, timeout)
    interceptors = [TokenUnary(source), TokenUnaryStream(source)]
    if channel_credentials is not None:
        channel = aio.secure_channel(
            target, channel_credentials, options=CHANNEL_OPTIONS, interceptors=interceptors
        )
    else:
        channel = aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=interceptors)
    source.channel = channel
    return channel
