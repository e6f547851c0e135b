"""The ceiling: the fastest a one-process Python gRPC server can answer etcd's KV calls here.

``python -m bench.ceiling --listen 127.0.0.1:PORT`` serves ``etcdserverpb.KV`` (Put, Range, Txn)
and ``Maintenance.Status`` as pyetcd serves them (grpcio's asyncio server on uvloop, the same
protobuf messages parsed and built) and does nothing else: every request gets an empty response
with a header. Driven by the same load generator beside etcd and pyetcd, it tells how much of
pyetcd's cost is its own work and how much is the serving stack one Python process cannot pass
(issue 14: "The limit, measured").
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import uvloop
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


def handlers() -> list[grpc.GenericRpcHandler]:
    kv = {
        "Put": _unary(rpc_pb2.PutRequest, lambda: rpc_pb2.PutResponse(header=_header())),
        "Range": _unary(rpc_pb2.RangeRequest, lambda: rpc_pb2.RangeResponse(header=_header())),
        "Txn": _unary(
            rpc_pb2.TxnRequest, lambda: rpc_pb2.TxnResponse(header=_header(), succeeded=True)
        ),
    }
    maintenance = {
        "Status": _unary(
            rpc_pb2.StatusRequest,
            lambda: rpc_pb2.StatusResponse(
                header=_header(), version="ceiling", leader=MEMBER_ID, raftTerm=1
            ),
        ),
    }
    return [
        grpc.method_handlers_generic_handler("etcdserverpb.KV", kv),
        grpc.method_handlers_generic_handler("etcdserverpb.Maintenance", maintenance),
    ]


async def serve(listen: str) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2 * 1024 * 1024)])
    server.add_generic_rpc_handlers(handlers())
    if server.add_insecure_port(listen) == 0:
        raise SystemExit(f"cannot listen on {listen}")
    await server.start()
    print(f"ceiling serving on {listen}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port to serve on")
    args = parser.parse_args(argv)
    uvloop.run(serve(args.listen))


if __name__ == "__main__":
    main()
