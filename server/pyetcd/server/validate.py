"""Request checks etcd makes before a request is proposed (etcdserver/api/v3rpc/key.go).

Each returns nothing or raises the EtcdError a client would get from etcd for the same request.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors


def check_range(req: rpc_pb2.RangeRequest) -> None:
    if not req.key:
        raise errors.ErrEmptyKey


def check_put(req: rpc_pb2.PutRequest) -> None:
    if not req.key:
        raise errors.ErrEmptyKey
    if req.ignore_value and req.value:
        raise errors.ErrValueProvided
    if req.ignore_lease and req.lease != 0:
        raise errors.ErrLeaseProvided


def check_delete(req: rpc_pb2.DeleteRangeRequest) -> None:
    if not req.key:
        raise errors.ErrEmptyKey


def check_txn(req: rpc_pb2.TxnRequest, max_txn_ops: int) -> None:
    _check_txn(req, max_txn_ops)
    for branch in (req.success, req.failure):
        # A branch of one plain op (kube-apiserver's every write) cannot write a key twice.
        if len(branch) > 1 or (branch and branch[0].HasField("request_txn")):
            _intervals(branch)


def _check_txn(req: rpc_pb2.TxnRequest, max_txn_ops: int) -> None:
    opc = max(len(req.compare), len(req.success), len(req.failure))
    if opc > max_txn_ops:
        raise errors.ErrTooManyOps
    for cmp in req.compare:
        if not cmp.key:
            raise errors.ErrEmptyKey
    for op in (*req.success, *req.failure):
        _check_op(op, max_txn_ops - opc)


def _check_op(op: rpc_pb2.RequestOp, max_txn_ops: int) -> None:
    kind = op.WhichOneof("request")
    if kind == "request_range":
        check_range(op.request_range)
    elif kind == "request_put":
        check_put(op.request_put)
    elif kind == "request_delete_range":
        check_delete(op.request_delete_range)
    elif kind == "request_txn":
        _check_txn(op.request_txn, max_txn_ops)
    else:
        # An empty RequestOp: etcd answers with this error too.
        raise errors.ErrKeyNotFound


class _Deletes:
    """The delete ranges of a txn branch, as etcd's interval tree sees them."""

    def __init__(self) -> None:
        self.points: set[bytes] = set()
        self.ranges: list[tuple[bytes, bytes]] = []

    def add(self, key: bytes, end: bytes) -> None:
        if end:
            self.ranges.append((key, end))
        else:
            self.points.add(key)

    def union(self, other: _Deletes) -> None:
        self.points |= other.points
        self.ranges.extend(other.ranges)

    def intersects(self, key: bytes) -> bool:
        # A range [start, end) compares as plain bytes, so etcd's "\x00" end (from-key) does
        # not match here, exactly as in etcd's affine interval tree.
        return key in self.points or any(s <= key < e for s, e in self.ranges)


def _intervals(ops: Sequence[rpc_pb2.RequestOp]) -> tuple[set[bytes], _Deletes]:
    """etcd's checkIntervals: no key is written twice by one branch, nested txns included."""
    dels = _Deletes()
    for op in ops:
        if op.WhichOneof("request") == "request_delete_range":
            dels.add(op.request_delete_range.key, op.request_delete_range.range_end)
    puts: set[bytes] = set()
    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        puts_then, dels_then = _intervals(op.request_txn.success)
        puts_else, dels_else = _intervals(op.request_txn.failure)
        for k in puts_then:
            if k in puts or dels.intersects(k):
                raise errors.ErrDuplicateKey
            puts.add(k)
        for k in puts_else:
            # then and else never both run, so the same key in both is fine.
            if (k in puts and k not in puts_then) or dels.intersects(k):
                raise errors.ErrDuplicateKey
            puts.add(k)
        dels.union(dels_then)
        dels.union(dels_else)
    for op in ops:
        if op.WhichOneof("request") != "request_put":
            continue
        k = op.request_put.key
        if k in puts or dels.intersects(k):
            raise errors.ErrDuplicateKey
        puts.add(k)
    return puts, dels
