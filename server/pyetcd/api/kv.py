"""The etcdserverpb.KV service: request checks, then the server; Range answers are built from
stored KeyValue bytes."""

from __future__ import annotations

from typing import Any

from pyetcd.api.identity import Identity
from pyetcd.api.rpc import Services, repeated_bytes_field
from pyetcd.mvcc.events import encode_bytes_field, encode_varint
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import validate
from pyetcd.server.v3api import KVServer, ServingMember

SERVICE = "etcdserverpb.KV"


def encode_range_response(header: bytes, kvs: list[bytes], more: bool, count: int) -> bytes:
    """RangeResponse{header=1, kvs=2, more=3, count=4} without decoding the KeyValues."""
    out = encode_bytes_field(1, header) + repeated_bytes_field(2, kvs)
    if more:
        out += b"\x18\x01"
    if count:
        out += b"\x20" + encode_varint(count)
    return out


def register(services: Services, server: KVServer, identity: Identity) -> None:
    async def range_(req: rpc_pb2.RangeRequest, ctx: Any) -> bytes:
        validate.check_range(req)
        rr = await server.range_linearizable(req, await identity.of(ctx))
        header = server.header(rr.revision).SerializeToString()
        return encode_range_response(header, rr.kvs, rr.more, rr.count)

    async def put(req: rpc_pb2.PutRequest, ctx: Any) -> rpc_pb2.PutResponse:
        validate.check_put(req)
        resp = await server.put(req, await identity.of(ctx))
        fill_header(server, resp.header)
        return resp

    async def delete_range(
        req: rpc_pb2.DeleteRangeRequest, ctx: Any
    ) -> rpc_pb2.DeleteRangeResponse:
        validate.check_delete(req)
        resp = await server.delete_range(req, await identity.of(ctx))
        fill_header(server, resp.header)
        return resp

    async def txn(req: rpc_pb2.TxnRequest, ctx: Any) -> rpc_pb2.TxnResponse:
        validate.check_txn(req, server.cfg.max_txn_ops)
        resp = await server.txn(req, await identity.of(ctx))
        fill_header(server, resp.header)
        return resp

    async def compact(req: rpc_pb2.CompactionRequest, ctx: Any) -> rpc_pb2.CompactionResponse:
        await identity.require_root(ctx)
        resp = await server.compact(req, await identity.of(ctx))
        fill_header(server, resp.header)
        return resp

    services.unary(SERVICE, "Range", rpc_pb2.RangeRequest, range_)
    services.unary(SERVICE, "Put", rpc_pb2.PutRequest, put)
    services.unary(SERVICE, "DeleteRange", rpc_pb2.DeleteRangeRequest, delete_range)
    services.unary(SERVICE, "Txn", rpc_pb2.TxnRequest, txn)
    services.unary(SERVICE, "Compact", rpc_pb2.CompactionRequest, compact)


def fill_header(server: ServingMember, header: rpc_pb2.ResponseHeader) -> None:
    """etcd fills cluster, member and term at the API layer; the revision comes from apply
    (the current one when apply left none)."""
    header.cluster_id = server.cluster_id
    header.member_id = server.member_id
    header.raft_term = server.term
    if header.revision == 0:
        header.revision = server.header().revision
