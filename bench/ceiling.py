"""The ceilings: the fastest a one-process Python gRPC server answers etcd's KV calls here.

``python -m bench.ceiling --listen 127.0.0.1:PORT [--stack grpcio|h2]`` serves
``etcdserverpb.KV`` (Put, Range, Txn) and ``Maintenance.Status`` and does nothing else: every
request is parsed and gets an empty response with a header. Driven by the same load generator
beside etcd and pyetcd, it tells how much of pyetcd's cost is its own work and how much is the
serving stack (issue 14: "The limit, measured").

* ``grpcio`` (the default): grpcio's asyncio server on uvloop, as pyetcd serves today.
* ``h2``: pyetcd's own HTTP/2 connection (``pyetcd.api.h2``: the whole protocol, flow control
  included) on a uvloop protocol, answering unary calls with pre-encoded responses, one write per
  read. It shows what serving costs when the per-call work of grpcio's stack is gone: the design
  question of issue 14.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import uvloop
from pyetcd.api.h2.connection import (
    DataReceived,
    H2Connection,
    H2ProtocolError,
    RequestReceived,
    StreamReset,
    encode_headers,
)
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

_RESPONSE_HEADERS = encode_headers([(b":status", b"200"), (b"content-type", b"application/grpc")])
_TRAILERS = encode_headers([(b"grpc-status", b"0")])


def _message(resp: Any) -> bytes:
    body: bytes = resp.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


_ANSWERS = {
    f"/{service}/{method}".encode(): (request_type, _message(answer()))
    for (service, method), (request_type, answer) in CALLS.items()
}


class H2Ceiling(asyncio.Protocol):
    """One client connection of the h2 stack: pyetcd's HTTP/2 connection (``pyetcd.api.h2``)
    answering unary calls with pre-encoded responses, one write per read."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.conn = H2Connection()
        self.calls: dict[int, tuple[bytes, list[bytes]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.initiate()
        transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        try:
            events = conn.receive(data)
        except H2ProtocolError:
            events = []
        for event in events:
            if type(event) is DataReceived:
                self.calls[event.stream_id][1].append(event.data)
                if event.end_stream:
                    self._answer(event.stream_id)
            elif type(event) is RequestReceived:
                path = next(v for k, v in event.headers if k == b":path")
                self.calls[event.stream_id] = (path, [])
                if event.end_stream:
                    self._answer(event.stream_id)
            elif type(event) is StreamReset:
                self.calls.pop(event.stream_id, None)
        out = conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)
        if conn.closed and self.transport is not None:
            self.transport.close()

    def _answer(self, stream: int) -> None:
        path, chunks = self.calls.pop(stream)
        request_type, answer = _ANSWERS[path]
        request_type.FromString(b"".join(chunks)[5:])
        self.conn.send_headers(stream, _RESPONSE_HEADERS)
        self.conn.send_data(stream, answer)
        self.conn.send_trailers(stream, _TRAILERS)


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
