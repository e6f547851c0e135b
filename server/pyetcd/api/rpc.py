"""gRPC plumbing shared by the services: handlers, etcd's error statuses, metrics, wire helpers.

The handlers' request deserializer and response serializer are the one codec every serving
stack calls (grpcio's, ``api.h2``'s, the front-end relay's member side), so they count the
message bytes of client traffic, where etcd's v3rpc codec does.

Handlers may return either a protobuf message or bytes that are already an encoded response: the
hot paths (Range) assemble their responses from stored ``KeyValue`` bytes without decoding them.
An ``EtcdError`` becomes a status with etcd's code and message; anything unexpected becomes
``Unknown`` with a one-line message and a logged traceback, never a traceback to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, Protocol

import grpc
from google.protobuf.message import Message

from pyetcd.mvcc.events import encode_varint
from pyetcd.panic import panic_on_invariant
from pyetcd.server import errors
from pyetcd.server.metrics import ClientTraffic, ServerMetrics

log = logging.getLogger(__name__)

Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
# Checked before a handler runs (etcd's interceptors): (service, method, request or None for a
# stream, context); raises an EtcdError to refuse the call.
Guard = Callable[[str, str, Any, grpc.aio.ServicerContext[Any, Any]], None]
StreamHandler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


class StreamMonitor(Protocol):
    """Ends long-lived streams from outside (etcd's monitorLeader); see ``guard``."""

    def track(self, context: grpc.aio.ServicerContext[Any, Any]) -> asyncio.Event | None: ...

    def release(self, lost: asyncio.Event) -> None: ...


async def run_until(work: Awaitable[None], lost: asyncio.Event | None) -> None:
    """Await ``work``; if ``lost`` is set first, cancel it and raise etcd's ``no leader``."""
    if lost is None:
        await work
        return
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(lost.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise errors.ErrNoLeader
    task.result()


def counting_codec(
    traffic: ClientTraffic, req_type: type[Message]
) -> tuple[Callable[[bytes], Any], Callable[[Message | bytes], bytes]]:
    """``req_type``'s deserializer and the response serializer, adding the message bytes to
    ``traffic`` (plain ints: a client request is the hottest path there is)."""
    from_string = req_type.FromString

    def deserialize(data: bytes) -> Any:
        traffic.received += len(data)
        return from_string(data)

    def serialize(resp: Message | bytes) -> bytes:
        data = resp if type(resp) is bytes else resp.SerializeToString()  # type: ignore[union-attr]
        traffic.sent += len(data)
        return data

    return deserialize, serialize


def status_code(err: errors.EtcdError) -> grpc.StatusCode:
    return grpc.StatusCode[err.code]


# ----- hand-rolled protobuf encoding for responses built from stored bytes -----
# (the varint encoder is the MVCC layer's, which builds watch events the same way)


def repeated_bytes_field(field: int, items: list[bytes]) -> bytes:
    tag = encode_varint(field << 3 | 2)
    return b"".join(tag + encode_varint(len(item)) + item for item in items)


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any],
    exc: Exception,
    done: Callable[[str], Any],
    service: str,
    method: str,
) -> NoReturn:
    """End an RPC with etcd's status for ``exc``; anything unexpected is Unknown, and logged."""
    if isinstance(exc, errors.EtcdError):
        code = status_code(exc)
        done(GO_CODE_NAMES[code]).inc()
        await context.abort(code, exc.message)
    # A request that broke an invariant (Raft refusing a local step, apply out of order) stops
    # the member; it is not the client's error to be told about.
    panic_on_invariant(exc, f"{service}/{method}")
    log.exception("%s/%s failed", service, method)
    done("Unknown").inc()
    await context.abort(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")


# grpc-go's names of the status codes (codes.Code's String): the grpc_code label etcd's
# go-grpc-prometheus exports, every one of them registered for each method up front, so that a
# rate of failures is 0 rather than no data before the first failure.
GO_CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}


class Services:
    """Collects method handlers per service and wraps them with errors and metrics."""

    def __init__(
        self,
        metrics: ServerMetrics,
        guard: Guard | None = None,
        monitor: StreamMonitor | None = None,
    ) -> None:
        self.metrics = metrics
        self.guard = guard
        self.monitor = monitor
        self._services: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}

    def _codec(
        self, req_type: type[Message]
    ) -> tuple[Callable[[bytes], Any], Callable[[Message | bytes], bytes]]:
        return counting_codec(self.metrics.client_traffic, req_type)

    def _add(self, service: str, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> None:
        self._services.setdefault(service, {})[method] = handler

    def _counters(self, kind: str, service: str, method: str) -> tuple[Any, Callable[[str], Any]]:
        started = self.metrics.grpc_started.labels(kind, service, method)
        handled = self.metrics.grpc_handled

        def done(code: str) -> Any:
            return handled.labels(kind, service, method, code)

        for name in GO_CODE_NAMES.values():
            done(name)
        return started, done

    def unary(self, service: str, method: str, req_type: type[Message], fn: Handler) -> None:
        started, done = self._counters("unary", service, method)
        decode, encode = self._codec(req_type)
        ok = done("OK")

        async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started.inc()
            try:
                if self.guard is not None:
                    self.guard(service, method, request, context)
                resp = await fn(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, done, service, method)
            ok.inc()
            return resp

        self._add(
            service,
            method,
            grpc.unary_unary_rpc_method_handler(
                handler,
                request_deserializer=decode,
                response_serializer=encode,
            ),
        )

    def server_stream(
        self, service: str, method: str, req_type: type[Message], fn: StreamHandler
    ) -> None:
        started, done = self._counters("server_stream", service, method)
        decode, encode = self._codec(req_type)

        async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started.inc()
            try:
                if self.guard is not None:
                    self.guard(service, method, None, context)
                async for resp in fn(request, context):
                    yield resp
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, done, service, method)
            done("OK").inc()

        self._add(
            service,
            method,
            grpc.unary_stream_rpc_method_handler(
                handler,
                request_deserializer=decode,
                response_serializer=encode,
            ),
        )

    def bidi_stream(
        self,
        service: str,
        method: str,
        req_type: type[Message],
        fn: Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]],
    ) -> None:
        started, done = self._counters("bidi_stream", service, method)
        decode, encode = self._codec(req_type)

        async def handler(
            request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> None:
            started.inc()
            lost = None
            try:
                if self.guard is not None:
                    self.guard(service, method, None, context)
                if self.monitor is not None:
                    lost = self.monitor.track(context)
                await run_until(fn(context), lost)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, done, service, method)
            finally:
                if lost is not None and self.monitor is not None:
                    self.monitor.release(lost)
            done("OK").inc()

        self._add(
            service,
            method,
            grpc.stream_stream_rpc_method_handler(
                handler,
                request_deserializer=decode,
                response_serializer=encode,
            ),
        )

    def methods(self) -> dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]]:
        """service -> method -> handler, for a server other than grpcio's (``api.h2``)."""
        return self._services

    def generic_handlers(self) -> list[grpc.GenericRpcHandler]:
        return [
            grpc.method_handlers_generic_handler(name, methods)
            for name, methods in self._services.items()
        ]
