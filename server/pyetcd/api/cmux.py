"""The client-port multiplexer: gRPC (HTTP/2) and plain HTTP/1.1 on one listening socket.

etcd serves its gRPC API and the HTTP endpoints (/health, /version, /metrics) on the same client
URL. grpcio owns its own sockets, so the gRPC server listens on a private abstract unix socket and
this module accepts client connections, looks at the first bytes, and either splices an HTTP/2
connection through to the gRPC server or answers HTTP/1.1 itself. With ``--listen-client-http-urls``
(etcd 3.5) the HTTP endpoints move off the client port and gRPC binds the port directly, without
this hop. An https URL terminates TLS here (``transport.tls.ServerTLS``); what is spliced to the
gRPC server is the decrypted HTTP/2.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, cast

from pyetcd.api.h2.server import peer_name
from pyetcd.transport.tls import ServerTLS, common_name

log = logging.getLogger(__name__)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_HTTP_HEADER = 16 * 1024
# Above this much data queued towards a slow reader, stop reading from the other side.
HIGH_WATER = 4 * 1024 * 1024

# etcd's tlsHandshakeTimeout: a client that starts a handshake and stalls is dropped.
TLS_HANDSHAKE_TIMEOUT = 10.0

H2Factory = Callable[[str, Callable[[], None]], asyncio.Protocol]
"""(the call's peer, called once the connection is gone) -> the protocol that serves an HTTP/2
connection in process (``api.h2.server.GrpcProtocol``) instead of splicing it to grpcio."""

HttpBody = bytes | AsyncIterator[bytes]
HttpHandler = Callable[[str, str, bytes, Mapping[str, str]], Awaitable[tuple[int, str, HttpBody]]]
"""(method, target, body, headers by lower-case name) -> (status, content type, body); a body
that is an async iterator is streamed, chunked, one chunk per item (the gateway's streaming
calls)."""


class _Splice(asyncio.Protocol):
    """One direction's receiving end: forwards everything to ``peer`` with backpressure."""

    def __init__(self, peer: asyncio.Transport, on_lost: Callable[[], None]) -> None:
        self.transport: asyncio.Transport | None = None
        # Known before connecting: the gRPC server speaks first (its SETTINGS frame).
        self.peer = peer
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)

    def pause_writing(self) -> None:
        self.peer.pause_reading()

    def resume_writing(self) -> None:
        self.peer.resume_reading()

    def eof_received(self) -> bool | None:
        if self.peer.can_write_eof():
            self.peer.write_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()


class _ClientConnection(asyncio.Protocol):
    """A connection accepted on the client port, before and after we know its protocol."""

    def __init__(self, mux: ClientMux, tls: ServerTLS | None = None) -> None:
        self._mux = mux
        self._tls = tls
        self._buf = b""
        self._mode = ""
        self.transport: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._closed = False
        self._stream_task: asyncio.Task[None] | None = None
        # The upstream socket's name when it stands for a client certificate's CN.
        self._identity = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        if self._tls is not None and transport.get_extra_info("peercert"):
            # After the handshake, before a byte is read: the client certificate against
            # --client-cert-allowed-hostname and the address it connects from.
            self.transport.pause_reading()
            asyncio.get_running_loop().create_task(self._admit(self._tls))

    async def _admit(self, tls: ServerTLS) -> None:
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername") or ("", 0)
        try:
            refused = await tls.admit(self.transport.get_extra_info("peercert"), str(peer[0]))
        except Exception as exc:  # a lookup that failed oddly refuses, never admits
            refused = f"checking the client certificate failed: {exc}"
        if refused is not None:
            log.warning("rejected connection from %s: %s", peer, refused)
            self._close()
        elif not self._closed:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._mode == "h2":
            if self._upstream is not None:
                self._upstream.write(data)
            else:
                self._buf += data
            return
        self._buf += data
        if not self._mode:
            probe = self._buf[: len(H2_PREFACE)]
            if H2_PREFACE.startswith(probe):
                if len(probe) < len(H2_PREFACE):
                    return
                self._mode = "h2"
                assert self.transport is not None
                if self._mux.h2_factory is not None:
                    self._hand_over(self._mux.h2_factory)
                    return
                self.transport.pause_reading()
                asyncio.get_running_loop().create_task(self._connect_upstream())
                return
            self._mode = "http"
        if self._mode == "http":
            self._maybe_serve_http()

    def _hand_over(self, factory: H2Factory) -> None:
        """The connection is HTTP/2: from here on the in-process gRPC stack owns it."""
        transport = self.transport
        assert transport is not None
        cert = transport.get_extra_info("peercert") if self._tls is not None else None
        cn = common_name(cert) if cert else ""
        if cn:
            # The calls see this name as their peer: it stands for the verified certificate.
            self._identity = self._mux.register_common_name(cn)
            peer = self._identity
        else:
            peer = peer_name(transport.get_extra_info("peername"))
        protocol = factory(peer, self._close)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data, self._buf = self._buf, b""
        protocol.data_received(data)

    async def _connect_upstream(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        transport = self.transport
        try:
            # Abstract-namespace paths (leading NUL) are not accepted by uvloop's
            # create_unix_connection, so connect the socket here; it completes at once.
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                cert = transport.get_extra_info("peercert") if self._tls is not None else None
                cn = common_name(cert) if cert else ""
                if cn:
                    # The gRPC server sees this socket's name as the call's peer: the name
                    # stands for the verified client certificate (auth's CN as the user).
                    self._identity = self._mux.register_common_name(cn)
                    sock.bind("\0" + self._identity)
                sock.connect(self._mux.grpc_socket)
            except OSError:
                sock.close()
                raise
            sock.setblocking(False)
            _, proto = await loop.create_unix_connection(
                lambda: _Splice(transport, self._close), sock=sock
            )
        except OSError as exc:
            log.warning("cannot reach the gRPC server: %s", exc)
            self._close()
            return
        if self._closed:
            assert proto.transport is not None
            proto.transport.close()
            return
        upstream = proto.transport
        assert upstream is not None
        upstream.set_write_buffer_limits(high=HIGH_WATER)
        self._upstream = upstream
        upstream.write(self._buf)
        self._buf = b""
        self.transport.resume_reading()

    def pause_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.resume_reading()

    def eof_received(self) -> bool | None:
        if self._upstream is not None and self._upstream.can_write_eof():
            self._upstream.write_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._identity:
            self._mux.common_names.pop(self._identity, None)
        stream = self._stream_task
        if stream is not None and stream is not asyncio.current_task():
            stream.cancel()  # the client went: end its stream
        if self.transport is not None:
            self.transport.close()
        if self._upstream is not None:
            self._upstream.close()

    def _maybe_serve_http(self) -> None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HTTP_HEADER:
                self._respond(431, "text/plain", b"request header too large\n")
            return
        head = self._buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._mode = "http-busy"
            self._respond(400, "text/plain", b"bad request\n")
            return
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode = "http-busy"
            self._respond(411, "text/plain", b"a request body needs a Content-Length\n")
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= self._mux.max_body:
            self._mode = "http-busy"
            self._respond(413, "text/plain", b"request body too large\n")
            return
        if len(self._buf) < end + 4 + length:
            return  # the body is still coming
        body = self._buf[end + 4 : end + 4 + length]
        self._mode = "http-busy"
        method, target = parts[0], parts[1]
        asyncio.get_running_loop().create_task(self._serve_http(method, target, body, headers))

    async def _serve_http(
        self, method: str, target: str, request_body: bytes, headers: Mapping[str, str]
    ) -> None:
        try:
            status, ctype, body = await self._mux.http_handler(
                method, target, request_body, headers
            )
        except Exception:
            log.exception("HTTP handler failed for %s %s", method, target)
            status, ctype, body = 500, "text/plain", b"internal error\n"
        if isinstance(body, bytes):
            self._respond(status, ctype, body)
            return
        self._stream_task = asyncio.current_task()
        try:
            await self._stream(status, ctype, body)
        finally:
            self._stream_task = None

    async def _stream(self, status: int, ctype: str, chunks: AsyncIterator[bytes]) -> None:
        """A chunked response, one chunk per item, until the items end or the client goes
        (its connection's loss cancels this task)."""
        if self.transport is None or self._closed:
            return
        reason = _REASONS.get(status, "")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1"))
        try:
            async for chunk in chunks:
                if self._closed or self.transport.is_closing():
                    break
                if chunk:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if not self._closed:
                self.transport.write(b"0\r\n\r\n")
        except asyncio.CancelledError:
            pass
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            self._close()

    def _respond(self, status: int, ctype: str, body: bytes) -> None:
        if self.transport is None or self._closed:
            return
        reason = _REASONS.get(status, "")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)
        self.transport.close()
        self._closed = True


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ClientMux:
    """Accepts client connections on ``host:port`` and routes them by protocol."""

    def __init__(
        self, grpc_socket: str, http_handler: HttpHandler, max_body: int = 2 * 1024 * 1024
    ) -> None:
        self.grpc_socket = grpc_socket
        self.http_handler = http_handler
        # The largest HTTP request body read (the gateway's JSON requests).
        self.max_body = max_body
        self._servers: list[asyncio.Server] = []
        # Upstream socket name -> CN of the verified client certificate of its connection.
        self.common_names: dict[str, str] = {}
        self._spliced = 0
        # Set: HTTP/2 connections are served in process, not spliced to grpc_socket.
        self.h2_factory: H2Factory | None = None
        self._adopting: set[asyncio.Task[Any]] = set()

    def register_common_name(self, cn: str) -> str:
        """A fresh upstream socket name standing for ``cn`` while its connection lasts."""
        self._spliced += 1
        name = f"{self.grpc_socket.lstrip(chr(0))}-c{self._spliced}"
        self.common_names[name] = cn
        return name

    def common_name(self, peer: str) -> str | None:
        """The CN of the connection a gRPC call came on (its ``context.peer()``), if any."""
        return self.common_names.get(peer.removeprefix("unix-abstract:"))

    async def listen(self, host: str, port: int, tls: ServerTLS | None = None) -> None:
        """Serve ``host:port``; over TLS only when ``tls`` is given (an https URL): a plain
        client's bytes then fail its handshake."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _ClientConnection(self, tls),
            host,
            port,
            reuse_address=True,
            backlog=1024,
            ssl=tls.context if tls is not None else None,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if tls is not None else None,
        )
        self._servers.append(server)

    def adopt(self, sock: socket.socket) -> None:
        """Serve a plain-HTTP connection accepted elsewhere (handed back by a gRPC front-end)."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            loop.connect_accepted_socket(lambda: _ClientConnection(self, None), sock)
        )
        self._adopting.add(task)
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[Any]) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("a handed-back connection closed before it was served: %s", task.exception())

    def close(self) -> None:
        for server in self._servers:
            server.close()
