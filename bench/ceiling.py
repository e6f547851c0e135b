"""The ceilings: the fastest a one-process Python gRPC server answers etcd's KV calls here.

``python -m bench.ceiling --listen 127.0.0.1:PORT [--stack grpcio|h2]`` serves
``etcdserverpb.KV`` (Put, Range, Txn) and ``Maintenance.Status`` and does nothing else: every
request is parsed and gets an empty response with a header. Driven by the same load generator
beside etcd and pyetcd, it tells how much of pyetcd's cost is its own work and how much is the
serving stack (issue 14: "The limit, measured").

* ``grpcio`` (the default): grpcio's asyncio server on uvloop, as pyetcd serves today.
* ``h2``: HTTP/2 framed by hand on a uvloop protocol, header blocks decoded with ``hpack``
  (decoded blocks cached while the decoder's table is unchanged), responses written from
  pre-encoded header blocks, one write per read. It is a measuring instrument, not a server: it
  answers unary calls only, ignores the client's flow-control windows (its answers are tiny) and
  checks nothing a client could get wrong. It shows what serving costs when the per-call work of
  grpcio's stack is gone: the design question of issue 14.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import uvloop
from hpack import Decoder
from pyetcd.proto.etcdserverpb import rpc_pb2

CLUSTER_ID = 0xCE11
MEMBER_ID = 0x1


def _header() -> rpc_pb2.ResponseHeader:
    return rpc_pb2.ResponseHeader(
        cluster_id=CLUSTER_ID, member_id=MEMBER_ID, revision=1, raft_term=1
    )


def _unary(request_type: Any, answer: Callable[[], Any]) -> grpc.RpcMethodHandler[Any, Any]:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return answer()

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_type.FromString,
        response_serializer=lambda m: m.SerializeToString(),
    )


# (service, method) -> (request type, the answer)
CALLS: dict[tuple[str, str], tuple[Any, Callable[[], Any]]] = {
    ("etcdserverpb.KV", "Put"): (
        rpc_pb2.PutRequest,
        lambda: rpc_pb2.PutResponse(header=_header()),
    ),
    ("etcdserverpb.KV", "Range"): (
        rpc_pb2.RangeRequest,
        lambda: rpc_pb2.RangeResponse(header=_header()),
    ),
    ("etcdserverpb.KV", "Txn"): (
        rpc_pb2.TxnRequest,
        lambda: rpc_pb2.TxnResponse(header=_header(), succeeded=True),
    ),
    ("etcdserverpb.Maintenance", "Status"): (
        rpc_pb2.StatusRequest,
        lambda: rpc_pb2.StatusResponse(
            header=_header(), version="ceiling", leader=MEMBER_ID, raftTerm=1
        ),
    ),
}


def handlers() -> list[grpc.GenericRpcHandler]:
    services: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for (service, method), (request_type, answer) in CALLS.items():
        services.setdefault(service, {})[method] = _unary(request_type, answer)
    return [grpc.method_handlers_generic_handler(name, ms) for name, ms in services.items()]


# ----- the h2 stack -----------------------------------------------------------------------------

_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING = 0x0, 0x1, 0x3, 0x4, 0x6
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_PREFACE_LEN = 24


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream)
        + payload
    )


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal without indexing, new name, no Huffman: decodable with any table."""
    return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value


def _message(resp: Any) -> bytes:
    body: bytes = resp.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


_RESPONSE_HEADERS = b"\x88" + _literal(b"content-type", b"application/grpc")  # 0x88: :status 200
_TRAILERS = _literal(b"grpc-status", b"0")
# MAX_CONCURRENT_STREAMS 10000 and a 1 GiB stream window; then the connection window likewise.
_SERVER_SETTINGS = _frame(_SETTINGS, 0, 0, struct.pack(">HIHI", 3, 10000, 4, 1 << 30))
_CONNECTION_WINDOW = _frame(0x8, 0, 0, struct.pack(">I", (1 << 30) - 65535))
_ANSWERS = {
    f"/{service}/{method}".encode(): (request_type, _message(answer()))
    for (service, method), (request_type, answer) in CALLS.items()
}


def _indexed_only(block: bytes) -> bool:
    """True if every field of ``block`` is an indexed one: decoding it leaves the table as is."""
    i, n = 0, len(block)
    while i < n:
        if not block[i] & 0x80:
            return False
        if block[i] & 0x7F == 0x7F:
            i += 1
            while block[i] & 0x80:
                i += 1
        i += 1
    return True


class H2Ceiling(asyncio.Protocol):
    """One client connection of the h2 stack (see the module's docstring for what it skips)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.preface = False
        self.decoder = Decoder()
        self.paths: dict[bytes, bytes] = {}  # indexed-only header block -> :path
        self.streams: dict[int, tuple[bytes, list[bytes]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(_SERVER_SETTINGS + _CONNECTION_WINDOW)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data
        if not self.preface:
            if len(buf) < _PREFACE_LEN:
                self.buffer = buf
                return
            buf, self.preface = buf[_PREFACE_LEN:], True
        out: list[bytes] = []
        pos, end, received = 0, len(buf), 0
        while end - pos >= 9:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            if end - pos < 9 + length:
                break
            kind, flags = buf[pos + 3], buf[pos + 4]
            stream = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            payload = buf[pos + 9 : pos + 9 + length]
            pos += 9 + length
            if flags & _PADDED and kind in {_DATA, _HEADERS}:
                payload = payload[1 : len(payload) - payload[0]]
            if kind == _DATA:
                received += length
                if stream in self.streams:
                    self.streams[stream][1].append(payload)
                    if flags & _END_STREAM:
                        self._answer(stream, out)
            elif kind == _HEADERS:
                block = payload[5:] if flags & _PRIORITY else payload
                self.streams[stream] = (self._path(block), [])
                if flags & _END_STREAM:
                    self._answer(stream, out)
            elif kind == _SETTINGS and not flags & _ACK:
                out.append(_frame(_SETTINGS, _ACK, 0, b""))
            elif kind == _PING and not flags & _ACK:
                out.append(_frame(_PING, _ACK, 0, payload))
            elif kind == _RST_STREAM:
                self.streams.pop(stream, None)
        self.buffer = buf[pos:]
        if received:
            out.append(_frame(0x8, 0, 0, struct.pack(">I", received)))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _path(self, block: bytes) -> bytes:
        path = self.paths.get(block)
        if path is None:
            headers = self.decoder.decode(block, raw=True)
            path = next(bytes(value) for name, value in headers if name == b":path")
            if _indexed_only(block):
                self.paths[block] = path
            else:
                self.paths.clear()  # the table may have moved: cached meanings are stale
        return path

    def _answer(self, stream: int, out: list[bytes]) -> None:
        path, chunks = self.streams.pop(stream)
        request_type, answer = _ANSWERS[path]
        request_type.FromString(b"".join(chunks)[5:])
        out.append(
            _frame(_HEADERS, _END_HEADERS, stream, _RESPONSE_HEADERS)
            + _frame(_DATA, 0, stream, answer)
            + _frame(_HEADERS, _END_HEADERS | _END_STREAM, stream, _TRAILERS)
        )


async def serve(listen: str, stack: str = "grpcio") -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if stack == "h2":
        host, _, port = listen.rpartition(":")
        h2 = await loop.create_server(H2Ceiling, host, int(port))
        print(f"ceiling (h2) serving on {listen}", flush=True)
        await stop.wait()
        h2.close()
        return
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2 * 1024 * 1024)])
    server.add_generic_rpc_handlers(handlers())
    if server.add_insecure_port(listen) == 0:
        raise SystemExit(f"cannot listen on {listen}")
    await server.start()
    print(f"ceiling serving on {listen}", flush=True)
    await stop.wait()
    await server.stop(0.5)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port to serve on")
    parser.add_argument("--stack", choices=("grpcio", "h2"), default="grpcio")
    args = parser.parse_args(argv)
    uvloop.run(serve(args.listen, args.stack))


if __name__ == "__main__":
    main()
