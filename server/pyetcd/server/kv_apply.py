"""Applying KV requests to the MVCC store with etcd's semantics (etcdserver/apply.go).

Range, Put, DeleteRange and Txn (compares, branches, nested txns) run here against one MVCC
transaction. Pure with respect to I/O: the store and the lessor are passed in. Ranges keep the
stored ``KeyValue`` bytes as they are, so that the API layer can send them without re-encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pyetcd import mvcc
from pyetcd.mvcc import WriteTxn
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.proto.mvccpb import kv_pb2
from pyetcd.server import errors

RangeRequest = rpc_pb2.RangeRequest
ASCEND = rpc_pb2.RangeRequest.ASCEND
DESCEND = rpc_pb2.RangeRequest.DESCEND
NONE = rpc_pb2.RangeRequest.NONE


class LeaseLookup(Protocol):
    def __contains__(self, lease_id: int) -> bool: ...


class Ranger(Protocol):
    """What a range reads from: the store itself or a write transaction (sees its own writes)."""

    def range(
        self,
        key: bytes,
        end: bytes | None = b"",
        *,
        rev: int = 0,
        limit: int = 0,
        count_only: bool = False,
    ) -> mvcc.RangeResult: ...


def mvcc_error(exc: mvcc.MVCCError) -> errors.EtcdError:
    """The MVCC layer's errors as the client-visible etcd errors."""
    if isinstance(exc, mvcc.ErrCompacted):
        return errors.ErrCompacted
    if isinstance(exc, mvcc.ErrFutureRev):
        return errors.ErrFutureRev
    return errors.EtcdError(str(exc), "UNKNOWN")


@dataclass
class RangeResult:
    """A Range answer: stored KeyValue bytes (values stripped for keys_only), more, count."""

    kvs: list[bytes] = field(default_factory=list)
    more: bool = False
    count: int = 0
    revision: int = 0


def _decode(raw: bytes) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue.FromString(raw)


def _strip_value(raw: bytes) -> bytes:
    kv = _decode(raw)
    kv.ClearField("value")
    return kv.SerializeToString()


_SORT_KEYS: dict[int, Callable[[kv_pb2.KeyValue], object]] = {
    rpc_pb2.RangeRequest.KEY: lambda kv: kv.key,
    rpc_pb2.RangeRequest.VERSION: lambda kv: kv.version,
    rpc_pb2.RangeRequest.CREATE: lambda kv: kv.create_revision,
    rpc_pb2.RangeRequest.MOD: lambda kv: kv.mod_revision,
    rpc_pb2.RangeRequest.VALUE: lambda kv: kv.value,
}


def apply_range(view: Ranger, req: rpc_pb2.RangeRequest) -> RangeResult:
    filtered = bool(
        req.min_mod_revision
        or req.max_mod_revision
        or req.min_create_revision
        or req.max_create_revision
    )
    # As etcd: any sort order or filter fetches every key and limits afterwards; otherwise one
    # extra key is fetched to learn whether there are more.
    limit = 0 if (req.sort_order != NONE or filtered) else req.limit
    if limit > 0:
        limit += 1
    order = req.sort_order
    if req.sort_target != rpc_pb2.RangeRequest.KEY and order == NONE:
        order = ASCEND
    try:
        rr = view.range(
            req.key, req.range_end, rev=req.revision, limit=limit, count_only=req.count_only
        )
    except mvcc.MVCCError as exc:
        raise mvcc_error(exc) from None
    kvs = rr.kvs
    if filtered or order != NONE:
        decoded = [(_decode(raw), raw) for raw in kvs]
        if filtered:
            decoded = [p for p in decoded if _keep(req, p[0])]
        if order != NONE and not (req.sort_target == rpc_pb2.RangeRequest.KEY and order == ASCEND):
            sort_key = _SORT_KEYS[req.sort_target]
            decoded.sort(key=lambda p: sort_key(p[0]), reverse=order == DESCEND)  # type: ignore[arg-type,return-value]
        kvs = [raw for _, raw in decoded]
    more = False
    if req.limit > 0 and len(kvs) > req.limit:
        kvs = kvs[: req.limit]
        more = True
    if req.keys_only:
        kvs = [_strip_value(raw) for raw in kvs]
    return RangeResult(kvs=kvs, more=more, count=rr.count, revision=rr.rev)


def _keep(req: rpc_pb2.RangeRequest, kv: kv_pb2.KeyValue) -> bool:
    if req.max_mod_revision and kv.mod_revision > req.max_mod_revision:
        return False
    if req.min_mod_revision and kv.mod_revision < req.min_mod_revision:
        return False
    if req.max_create_revision and kv.create_revision > req.max_create_revision:
        return False
    return not (req.min_create_revision and kv.create_revision < req.min_create_revision)


def range_response(rr: RangeResult) -> rpc_pb2.RangeResponse:
    """A RangeResponse message (for txn responses, where the bytes path does not apply)."""
    resp = rpc_pb2.RangeResponse(more=rr.more, count=rr.count)
    resp.kvs.extend(_decode(raw) for raw in rr.kvs)
    return resp


class KVApplier:
    """Runs KV requests inside one MVCC write transaction."""

    def __init__(self, store: mvcc.WatchableStore, leases: LeaseLookup) -> None:
        self.store = store
        self.leases = leases

    # --- checks made before anything is written (etcd's checkRequests) ---

    def _check_put(self, view: Ranger, req: rpc_pb2.PutRequest) -> None:
        if req.lease != 0 and req.lease not in self.leases:
            raise errors.ErrLeaseNotFound
        if (req.ignore_value or req.ignore_lease) and not view.range(req.key, b"").kvs:
            raise errors.ErrKeyNotFound

    def _check_range(self, txn: WriteTxn, req: rpc_pb2.RangeRequest) -> None:
        if req.revision == 0:
            return
        if req.revision > txn.rev:
            raise errors.ErrFutureRev
        if req.revision < self.store.compact_revision:
            raise errors.ErrCompacted

    def _check_ops(self, view: WriteTxn, ops: Sequence[rpc_pb2.RequestOp]) -> None:
        for op in ops:
            kind = op.WhichOneof("request")
            if kind == "request_put":
                self._check_put(view, op.request_put)
            elif kind == "request_range":
                self._check_range(view, op.request_range)
            elif kind == "request_txn":
                nested = op.request_txn
                branch = nested.success if compare_all(view, nested.compare) else nested.failure
                self._check_ops(view, branch)

    # --- the requests ---

    def put(self, txn: WriteTxn, req: rpc_pb2.PutRequest) -> rpc_pb2.PutResponse:
        self._check_put(txn, req)
        return self._put(txn, req)

    def _put(self, txn: WriteTxn, req: rpc_pb2.PutRequest) -> rpc_pb2.PutResponse:
        resp = rpc_pb2.PutResponse()
        value, lease = req.value, req.lease
        if req.prev_kv or req.ignore_value or req.ignore_lease:
            prev = txn.range(req.key, b"").kvs
            if prev:
                prev_kv = _decode(prev[0])
                if req.prev_kv:
                    resp.prev_kv.CopyFrom(prev_kv)
                if req.ignore_value:
                    value = prev_kv.value
                if req.ignore_lease:
                    lease = prev_kv.lease
        txn.put(req.key, value, lease)
        resp.header.revision = txn.rev
        return resp

    def delete_range(
        self, txn: WriteTxn, req: rpc_pb2.DeleteRangeRequest
    ) -> rpc_pb2.DeleteRangeResponse:
        resp = rpc_pb2.DeleteRangeResponse()
        deleted, prevs = txn.delete_range(req.key, req.range_end, prev_kv=req.prev_kv)
        resp.deleted = deleted
        resp.prev_kvs.extend(_decode(raw) for raw in prevs)
        resp.header.revision = txn.rev
        return resp

    def txn(self, txn: WriteTxn, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        succeeded = compare_all(txn, req.compare)
        branch = req.success if succeeded else req.failure
        self._check_ops(txn, branch)
        resp = rpc_pb2.TxnResponse(succeeded=succeeded)
        self._run_ops(txn, branch, resp)
        resp.header.revision = txn.rev
        return resp

    def _run_ops(
        self, txn: WriteTxn, ops: Sequence[rpc_pb2.RequestOp], resp: rpc_pb2.TxnResponse
    ) -> None:
        for op in ops:
            kind = op.WhichOneof("request")
            out = resp.responses.add()
            if kind == "request_range":
                rr = apply_range(txn, op.request_range)
                r = range_response(rr)
                r.header.revision = rr.revision
                out.response_range.CopyFrom(r)
            elif kind == "request_put":
                out.response_put.CopyFrom(self._put(txn, op.request_put))
            elif kind == "request_delete_range":
                out.response_delete_range.CopyFrom(self.delete_range(txn, op.request_delete_range))
            elif kind == "request_txn":
                nested = op.request_txn
                ok = compare_all(txn, nested.compare)
                sub = rpc_pb2.TxnResponse(succeeded=ok)
                # etcd gives a nested txn response an empty (but present) header.
                sub.header.SetInParent()
                self._run_ops(txn, nested.success if ok else nested.failure, sub)
                out.response_txn.CopyFrom(sub)


def compare_all(view: Ranger, compares: Sequence[rpc_pb2.Compare]) -> bool:
    return all(_compare(view, c) for c in compares)


def _compare(view: Ranger, c: rpc_pb2.Compare) -> bool:
    kvs = view.range(c.key, c.range_end).kvs
    if not kvs:
        # A missing key: a value compare is false, the others compare against zero.
        if c.target == rpc_pb2.Compare.VALUE:
            return False
        return _compare_kv(c, kv_pb2.KeyValue())
    return all(_compare_kv(c, _decode(raw)) for raw in kvs)


def _cmp(a: int | bytes, b: int | bytes) -> int:
    return (a > b) - (a < b)  # type: ignore[operator]


def _compare_kv(c: rpc_pb2.Compare, kv: kv_pb2.KeyValue) -> bool:
    target = c.target
    if target == rpc_pb2.Compare.VALUE:
        result = _cmp(kv.value, c.value)
    elif target == rpc_pb2.Compare.CREATE:
        result = _cmp(kv.create_revision, c.create_revision)
    elif target == rpc_pb2.Compare.MOD:
        result = _cmp(kv.mod_revision, c.mod_revision)
    elif target == rpc_pb2.Compare.VERSION:
        result = _cmp(kv.version, c.version)
    elif target == rpc_pb2.Compare.LEASE:
        result = _cmp(kv.lease, c.lease)
    else:
        return False
    op = c.result
    if op == rpc_pb2.Compare.EQUAL:
        return result == 0
    if op == rpc_pb2.Compare.NOT_EQUAL:
        return result != 0
    if op == rpc_pb2.Compare.GREATER:
        return result > 0
    if op == rpc_pb2.Compare.LESS:
        return result < 0
    return False


def is_txn_readonly(req: rpc_pb2.TxnRequest) -> bool:
    for op in (*req.success, *req.failure):
        kind = op.WhichOneof("request")
        if kind in ("request_put", "request_delete_range"):
            return False
        if kind == "request_txn" and not is_txn_readonly(op.request_txn):
            return False
    return True
