"""gRPC over ``connection``: calls, their contexts, deadlines, keepalive, and the socket.

``GrpcProtocol`` is the asyncio protocol of one client connection (the multiplexer hands it the
connection once it has seen the HTTP/2 preface). Each request stream becomes a ``Call``: a task
runs the method's handler, the same ``grpc.RpcMethodHandler`` objects grpcio's server runs (the
services do not know which stack serves them), with the ``Call`` as its context: ``read``,
``write``, ``abort``, ``invocation_metadata``, ``peer``, ``time_remaining``.

Per call the work is what gRPC's wire format asks and no more: the 5-byte message prefix, the
response headers and trailers from pre-encoded blocks, and one write per loop iteration for all
calls that finished in it (``_schedule_flush``), so a batch of proposals applied together leaves
in one ``send``. Errors carry grpc-go's wording where the transport speaks (message too large,
unknown method, deadline), since etcd's clients see grpc-go's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote

import grpc

from pyetcd.api.h2.connection import (
    DataReceived,
    ErrorCode,
    GoAwayReceived,
    H2Connection,
    H2ProtocolError,
    PingAcked,
    PingReceived,
    RequestReceived,
    Settings,
    StreamReset,
    WindowOpened,
    encode_headers,
    encode_literal,
)
from pyetcd.panic import panic_on_invariant

log = logging.getLogger(__name__)

_RESPONSE_HEADERS = encode_headers([(b":status", b"200"), (b"content-type", b"application/grpc")])
_OK_TRAILERS = encode_literal(b"grpc-status", b"0")
# Headers that are the transport's, not the caller's metadata (grpcio leaves them out too).
_RESERVED = frozenset(
    {
        b"content-type",
        b"te",
        b"grpc-timeout",
        b"grpc-encoding",
        b"grpc-accept-encoding",
        b"grpc-message-type",
    }
)
_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
# etcd registers no compressor with grpc-go, so a compressed request is refused there; the
# table stays empty here to answer alike (see tests/integration/test_grpc_stack.py).
_DECOMPRESS: dict[bytes, Callable[[bytes], bytes]] = {}
_MAX_PING_STRIKES = 2
_PING_WITHOUT_CALLS = 2 * 3600.0  # grpc-go's defaultPingTimeout
# A streaming writer waits while this much of its stream's data is queued unsent.
_WRITE_HIGH_WATER = 1024 * 1024


@dataclass(frozen=True)
class ServerOptions:
    """What grpcio's server options said: limits and keepalive (etcd's --grpc-keepalive-*)."""

    max_receive_message_length: int = 4 * 1024 * 1024
    max_send_message_length: int = 2**31 - 1
    max_concurrent_streams: int = 2**31 - 1
    keepalive_time: float = 2 * 3600.0  # server ping after this long without activity
    keepalive_timeout: float = 20.0  # the client's answer must come within this
    min_ping_interval: float = 5.0  # clients pinging more often than this are told off


def status_trailers(code: grpc.StatusCode, message: str, headers_sent: bool) -> bytes:
    """The trailers of a finished call; a trailers-only response when nothing was sent yet."""
    if code is grpc.StatusCode.OK and not message and headers_sent:
        return _OK_TRAILERS
    fields = [(b"grpc-status", str(code.value[0]).encode())]
    if message:
        # grpc's percent-encoding: printable ASCII except '%' as is, the rest %XX of UTF-8.
        fields.append((b"grpc-message", quote(message, safe=_GRPC_MESSAGE_SAFE).encode()))
    block = encode_headers(fields)
    return block if headers_sent else _RESPONSE_HEADERS + block


_GRPC_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def parse_timeout(value: bytes) -> float | None:
    """grpc-timeout (``<up to 8 digits><unit>``) in seconds; None when malformed."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit():
        return None
    unit = _TIMEOUT_UNITS.get(value[-1:])
    return None if unit is None else int(value[:-1]) * unit


def _ignore(call: CallContext) -> None:
    pass


class CallContext:
    """One call as its handler sees it (the grpcio ``ServicerContext`` calls it makes) and its
    request queue; the transport that carries it (HTTP/2 here, the front-end relay in
    ``api.relay``) subclasses it with ``_emit``, ``_backlogged`` and how it ends."""

    def __init__(
        self,
        handler: grpc.RpcMethodHandler[Any, Any],
        metadata: tuple[tuple[str, str | bytes], ...],
        peer: str,
        method: bytes = b"",
    ) -> None:
        self.handler = handler
        self.method = method  # the path, /<service>/<method>
        self._metadata = metadata
        self._peer = peer
        self._messages: deque[bytes] = deque()
        self._ended = False  # the client half-closed
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.task: asyncio.Task[None] | None = None
        self.deadline: float | None = None
        self._deadline_handle: asyncio.TimerHandle | None = None
        self.expired = False
        self.reset = False
        self.completed = False
        self._over: Callable[[CallContext], None] = _ignore

    # ----- the ServicerContext surface -----

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def cancelled(self) -> bool:
        return self.reset or self.expired

    def done(self) -> bool:
        return self.task is None or self.task.done()

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> NoReturn:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort with OK")
        self.code, self.details = code, details
        raise grpc.aio.AbortError()

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    async def read(self) -> Any:
        """The next request message, or ``grpc.aio.EOF`` once the client half-closed."""
        while not self._messages:
            if self._ended:
                return grpc.aio.EOF
            self._readable = asyncio.get_running_loop().create_future()
            try:
                await self._readable
            finally:
                self._readable = None
        return self._deserialize(self._messages.popleft())

    async def write(self, message: Any) -> None:
        self._send(message)
        while self._backlogged():
            self._writable = asyncio.get_running_loop().create_future()
            try:
                await self._writable
            finally:
                self._writable = None

    async def requests(self) -> AsyncIterator[Any]:
        while True:
            message = await self.read()
            if message is grpc.aio.EOF:
                return
            yield message

    # ----- the transport's side -----

    def _deserialize(self, data: bytes) -> Any:
        deserializer = self.handler.request_deserializer
        return deserializer(data) if deserializer is not None else data

    def _send(self, message: Any) -> None:
        serializer = self.handler.response_serializer
        self._emit(serializer(message) if serializer is not None else message)

    def _emit(self, body: bytes) -> None:
        """Send one serialized response message."""
        raise NotImplementedError

    def _backlogged(self) -> bool:
        """A streaming writer waits while this holds (too much of its data unsent)."""
        raise NotImplementedError

    def whole_request(self) -> bytes | None:
        """The request's only message if the client already sent all of it (taken), else None."""
        if self._ended and len(self._messages) == 1:
            return self._messages.popleft()
        return None

    def received(self, body: bytes | None) -> None:
        """A request message, or None: the client half-closed."""
        if body is None:
            self._ended = True
        else:
            self._messages.append(body)
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def arm_deadline(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self._deadline_handle = loop.call_later(timeout, self.expire)

    def disarm_deadline(self) -> None:
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()

    def wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def fail(self, code: grpc.StatusCode, details: str) -> None:
        """End the call from the transport's side (bad input, deadline): status, then stop."""
        if self.task is not None and not self.task.done():
            self.code, self.details = code, details
            self.task.cancel()

    def expire(self) -> None:
        self.expired = True
        self.fail(grpc.StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")

    def client_reset(self) -> None:
        self.reset = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # ----- the call's life -----

    def start(self, loop: asyncio.AbstractEventLoop, over: Callable[[CallContext], None]) -> None:
        """Run the handler in a task of its own. However it ends (or if it is cancelled before
        it runs), ``over`` lets the transport forget the call, then ``finish`` sends its end."""
        self._over = over
        self.task = task = loop.create_task(self._run())
        task.add_done_callback(self._task_done)

    async def _run(self) -> None:
        await run_handler(self)
        self.complete()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # Cancelled before it ran (a message over the limit, or a cancel, in the same read as
        # its start): it never entered ``_run``.
        if not self.completed:
            if task.cancelled() and self.code == grpc.StatusCode.OK and not self.reset:
                self.code, self.details = grpc.StatusCode.CANCELLED, "context canceled"
            self.complete()

    def complete(self) -> None:
        if self.completed:
            return
        self.completed = True
        self._over(self)
        self.finish()

    def finish(self) -> None:
        """Send the call's end (its status) the transport's way."""
        raise NotImplementedError


class Call(CallContext):
    """A call on one HTTP/2 stream of a client connection."""

    def __init__(
        self,
        protocol: GrpcProtocol,
        stream_id: int,
        handler: grpc.RpcMethodHandler[Any, Any],
        metadata: tuple[tuple[str, str | bytes], ...],
        decompress: Any,
        *,
        method: bytes = b"",
    ) -> None:
        super().__init__(handler, metadata, protocol.peer, method)
        self._protocol = protocol
        self._conn = protocol.conn
        self.stream_id = stream_id
        self._decompress = decompress
        self._buffer = bytearray()
        self.headers_sent = False

    def _emit(self, body: bytes) -> None:
        if len(body) > self._protocol.options.max_send_message_length:
            raise CallError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"grpc: trying to send message larger than max ({len(body)} vs. "
                f"{self._protocol.options.max_send_message_length})",
            )
        if not self.headers_sent:
            self.headers_sent = True
            self._conn.send_headers(self.stream_id, _RESPONSE_HEADERS)
        self._conn.send_data(self.stream_id, b"\x00" + len(body).to_bytes(4, "big") + body)
        self._protocol.schedule_flush()

    def _backlogged(self) -> bool:
        return self._conn.pending_bytes(self.stream_id) > _WRITE_HIGH_WATER or (
            self._protocol.writing_paused and self._conn.is_open(self.stream_id)
        )

    def feed(self, data: bytes, end: bool) -> None:
        """Bytes of the request stream: split into messages, within the size limit."""
        if data:
            buf = self._buffer
            buf += data
            limit = self._protocol.options.max_receive_message_length
            while len(buf) >= 5:
                length = int.from_bytes(buf[1:5], "big")
                if length > limit:
                    self.fail(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"grpc: received message larger than max ({length} vs. {limit})",
                    )
                    return
                if len(buf) < 5 + length:
                    break
                compressed, body = buf[0], bytes(buf[5 : 5 + length])
                del buf[: 5 + length]
                if compressed:
                    if self._decompress is None:
                        self.fail(
                            grpc.StatusCode.INTERNAL,
                            "grpc: compressed flag set with identity or empty encoding",
                        )
                        return
                    try:
                        body = self._decompress(body)
                    except (OSError, zlib.error, EOFError) as exc:
                        self.fail(grpc.StatusCode.INTERNAL, f"grpc: failed to decompress: {exc}")
                        return
                self._messages.append(body)
            self._conn.consumed(self.stream_id, len(data))
        if end:
            self._ended = True
            if self._buffer:
                self.fail(grpc.StatusCode.INTERNAL, "grpc: the request ended inside a message")
                return
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def finish(self) -> None:
        self.disarm_deadline()
        if self.reset:
            return
        trailers = status_trailers(self.code, self.details, self.headers_sent)
        if self.headers_sent:
            self._conn.send_trailers(self.stream_id, trailers)
        else:
            self._conn.send_headers(self.stream_id, trailers, end_stream=True)
        self._protocol.schedule_flush()


class CallError(Exception):
    """A call ends with this status (the transport's own errors, in grpc-go's words)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


async def run_handler(call: CallContext) -> None:
    """Run the call's handler to its end; the outcome is left in ``call.code``/``details``."""
    # grpcio's stubs type the handlers as synchronous; ours are the aio server's coroutines.
    handler: Any = call.handler
    try:
        if handler.unary_unary is not None:
            request = await _single_request(call)
            response = await handler.unary_unary(request, call)
            call._send(response)
        elif handler.unary_stream is not None:
            request = await _single_request(call)
            async for response in handler.unary_stream(request, call):
                await call.write(response)
        elif handler.stream_stream is not None:
            result = handler.stream_stream(call.requests(), call)
            if hasattr(result, "__aiter__"):
                async for response in result:
                    await call.write(response)
            else:
                await result
        elif handler.stream_unary is not None:
            call._send(await handler.stream_unary(call.requests(), call))
    except grpc.aio.AbortError:
        pass  # the status is on the call
    except CallError as exc:
        call.code, call.details = exc.code, exc.details
    except asyncio.CancelledError:
        if not call.reset and call.code == grpc.StatusCode.OK:
            call.code, call.details = grpc.StatusCode.CANCELLED, "context canceled"
    except Exception as exc:
        # A broken invariant stops the member (the services' wrapper does the same for what
        # their handlers raise); anything else is this call's Unknown.
        panic_on_invariant(exc, "gRPC call")
        log.exception("gRPC call to %s failed", call.peer())
        call.code = grpc.StatusCode.UNKNOWN
        call.details = f"Unexpected {type(exc).__name__}: {exc}"


async def _single_request(call: CallContext) -> Any:
    request = await call.read()
    if request is grpc.aio.EOF:
        raise CallError(grpc.StatusCode.INTERNAL, "grpc: the request had no message")
    if await call.read() is not grpc.aio.EOF:
        raise CallError(
            grpc.StatusCode.UNIMPLEMENTED, "grpc: more than one message in a unary request"
        )
    return request


def unknown_method(path: bytes, methods: Mapping[bytes, Any]) -> str:
    """grpc-go's text for a path no service serves."""
    service, _, rpc = path.decode("latin-1").lstrip("/").rpartition("/")
    known = any(p.startswith(f"/{service}/".encode()) for p in methods)
    return f"unknown method {rpc} for service {service}" if known else f"unknown service {service}"


class GrpcProtocol(asyncio.Protocol):
    """One client connection served by this stack."""

    def __init__(
        self,
        server: H2Server,
        peer: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self.methods = server.methods
        self.options = options = server.options
        self.peer = peer or ""
        self.conn = H2Connection(Settings(max_concurrent_streams=options.max_concurrent_streams))
        self.calls: dict[int, Call] = {}
        self.transport: asyncio.Transport | None = None
        self.writing_paused = False
        self._flush_scheduled = False
        self._on_close = on_close
        self._loop = asyncio.get_event_loop()
        self._last_activity = time.monotonic()
        self._last_client_ping = -_PING_WITHOUT_CALLS
        self._ping_strikes = 0
        self._frames_at_ping = 0  # conn.stream_frames_sent when the client last pinged
        self._keepalive: asyncio.TimerHandle | None = None
        self._ping_outstanding: asyncio.TimerHandle | None = None

    # ----- asyncio.Protocol -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.peer:
            self.peer = peer_name(transport.get_extra_info("peername"))
        self.server.protocols.add(self)
        self.conn.initiate()
        self.flush()
        self._arm_keepalive()

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        try:
            events = self.conn.receive(data)
        except H2ProtocolError as exc:
            log.debug("closing a client connection from %s: %s", self.peer, exc)
            self.flush()
            self._close()
            return
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                call = self.calls.get(event.stream_id)  # type: ignore[union-attr]
                if call is not None:
                    call.feed(event.data, event.end_stream)  # type: ignore[union-attr]
            elif kind is RequestReceived:
                self._open(event)  # type: ignore[arg-type]
            elif kind is StreamReset:
                call = self.calls.pop(event.stream_id, None)  # type: ignore[union-attr]
                if call is not None:
                    call.client_reset()
            elif kind is WindowOpened:
                self._wake_writers(event.stream_id)  # type: ignore[union-attr]
            elif kind is PingReceived:
                self._client_pinged()
            elif kind is PingAcked:
                if self._ping_outstanding is not None:
                    self._ping_outstanding.cancel()
                    self._ping_outstanding = None
            elif kind is GoAwayReceived:
                self.conn.going_away = True
        self.flush()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writers(0)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.protocols.discard(self)
        for call in list(self.calls.values()):
            call.client_reset()
        self.calls.clear()
        for handle in (self._keepalive, self._ping_outstanding):
            if handle is not None:
                handle.cancel()
        if self._on_close is not None:
            self._on_close()

    # ----- calls -----

    def _open(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        path = method = b""
        timeout: float | None = None
        decompress: Any = None
        metadata: list[tuple[str, str | bytes]] = []
        content_type = b""
        for name, value in event.headers:
            if name[:1] == b":":
                if name == b":path":
                    path = value
                elif name == b":method":
                    method = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-timeout":
                timeout = parse_timeout(value)
                if timeout is None:
                    self._refuse(stream_id, grpc.StatusCode.INTERNAL, "malformed grpc-timeout")
                    return
            elif name == b"grpc-encoding":
                if value != b"identity":
                    decompress = _DECOMPRESS.get(value)
                    if decompress is None:
                        self._refuse(
                            stream_id,
                            grpc.StatusCode.UNIMPLEMENTED,
                            f"grpc: Decompressor is not installed for grpc-encoding "
                            f'"{value.decode("latin-1")}"',
                        )
                        return
            elif name not in _RESERVED:
                key = name.decode("latin-1")
                if key.endswith("-bin"):
                    metadata.append((key, base64.b64decode(value + b"=" * (-len(value) % 4))))
                else:
                    metadata.append((key, value.decode("latin-1")))
        if method != b"POST" or not content_type.startswith(b"application/grpc"):
            # Not a gRPC call: grpc-go answers HTTP errors (405, 415); a reset says as much.
            self.conn.reset(stream_id, ErrorCode.PROTOCOL_ERROR)
            return
        handler = self.methods.get(path)
        if handler is None:
            self._refuse(
                stream_id, grpc.StatusCode.UNIMPLEMENTED, unknown_method(path, self.methods)
            )
            return
        call = Call(self, stream_id, handler, tuple(metadata), decompress, method=path)
        self.calls[stream_id] = call
        self.server.call_started()
        if timeout is not None:
            call.arm_deadline(self._loop, timeout)
        call.start(self._loop, self._over)
        if event.end_stream:
            call.feed(b"", True)

    def _refuse(self, stream_id: int, code: grpc.StatusCode, details: str) -> None:
        self.conn.send_headers(stream_id, status_trailers(code, details, False), end_stream=True)

    def _over(self, call: CallContext) -> None:
        assert isinstance(call, Call)
        self.calls.pop(call.stream_id, None)
        self.server.call_ended()

    def _wake_writers(self, stream_id: int) -> None:
        if stream_id:
            call = self.calls.get(stream_id)
            if call is not None:
                call.wake_writer()
            return
        for call in self.calls.values():
            call.wake_writer()

    # ----- writing -----

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
        if self.conn.closed:
            self._close()

    def goaway(self) -> None:
        """Stop taking calls (the member is stopping); those under way finish."""
        self.conn.goaway()
        self.flush()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        for call in list(self.calls.values()):
            call.client_reset()
        self._close()

    # ----- keepalive (etcd's --grpc-keepalive-*) -----

    def _arm_keepalive(self) -> None:
        if self.options.keepalive_time <= 0:
            return
        self._keepalive = self._loop.call_later(self.options.keepalive_time, self._keepalive_due)

    def _keepalive_due(self) -> None:
        idle = time.monotonic() - self._last_activity
        if idle < self.options.keepalive_time:
            self._keepalive = self._loop.call_later(
                self.options.keepalive_time - idle, self._keepalive_due
            )
            return
        self.conn.ping(b"pyetcdka")
        self.flush()
        self._ping_outstanding = self._loop.call_later(
            self.options.keepalive_timeout, self._keepalive_lost
        )
        self._arm_keepalive()

    def _keepalive_lost(self) -> None:
        log.debug("client %s did not answer a keepalive ping; closing", self.peer)
        self._close()

    def _client_pinged(self) -> None:
        # grpc-go's enforcement policy as etcd configures it (MinTime, PermitWithoutStream
        # false): a ping counts as a strike when it comes sooner than the minimum after the
        # previous one (two hours when no call is open), unless the server sent headers or
        # data since; past two strikes the client gets GOAWAY ENHANCE_YOUR_CALM.
        now = time.monotonic()
        previous, self._last_client_ping = self._last_client_ping, now
        sent, self._frames_at_ping = self._frames_at_ping, self.conn.stream_frames_sent
        if sent != self._frames_at_ping:
            self._ping_strikes = 0
            return
        least = self.options.min_ping_interval if self.calls else _PING_WITHOUT_CALLS
        if now - previous < least:
            self._ping_strikes += 1
        if self._ping_strikes > _MAX_PING_STRIKES:
            self.conn.goaway(ErrorCode.ENHANCE_YOUR_CALM, b"too_many_pings")


def peer_name(address: Any) -> str:
    """grpc's peer string: ``ipv4:host:port`` or ``ipv6:[host]:port``."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"
    return f"unix:{address}"


class H2Server:
    """The connections this stack serves: handed over by the multiplexer, or accepted on a
    client URL of its own (--listen-client-http-urls moves HTTP elsewhere)."""

    def __init__(
        self, methods: Mapping[bytes, grpc.RpcMethodHandler[Any, Any]], options: ServerOptions
    ) -> None:
        self.methods = methods
        self.options = options
        self.protocols: set[GrpcProtocol] = set()
        self._listeners: list[asyncio.Server] = []
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def protocol(
        self, peer: str | None = None, on_close: Callable[[], None] | None = None
    ) -> GrpcProtocol:
        return GrpcProtocol(self, peer, on_close)

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._listeners.append(
            await loop.create_server(self.protocol, host, port, reuse_address=True, backlog=1024)
        )

    def call_started(self) -> None:
        self._active += 1
        self._idle.clear()

    def call_ended(self) -> None:
        self._active -= 1
        if self._active == 0:
            self._idle.set()

    async def stop(self, grace: float) -> None:
        """GOAWAY to every client; calls under way get ``grace`` seconds; then close."""
        for listener in self._listeners:
            listener.close()
        for protocol in list(self.protocols):
            protocol.goaway()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        for protocol in list(self.protocols):
            protocol.close()


def method_table(
    services: Mapping[str, Mapping[str, grpc.RpcMethodHandler[Any, Any]]],
) -> dict[bytes, grpc.RpcMethodHandler[Any, Any]]:
    """``/<service>/<method>`` -> handler, from the services' registry."""
    return {
        f"/{service}/{method}".encode(): handler
        for service, methods in services.items()
        for method, handler in methods.items()
    }
