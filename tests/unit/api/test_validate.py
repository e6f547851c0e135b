"""etcd's request checks made before a proposal: each case names the error etcd returns."""

import pytest
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors, validate


def put(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"v"))


def delete(key: bytes, end: bytes = b"") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(
        request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=end)
    )


def nested(success: list[rpc_pb2.RequestOp], failure: list[rpc_pb2.RequestOp]) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=success, failure=failure))


@pytest.mark.parametrize(
    ("ops", "error"),
    [
        ([put(b"a"), put(b"b")], None),
        ([put(b"a"), put(b"a")], errors.ErrDuplicateKey),
        ([delete(b"a"), put(b"a")], errors.ErrDuplicateKey),
        ([delete(b"a", b"c"), put(b"b")], errors.ErrDuplicateKey),
        ([delete(b"a", b"c"), put(b"c")], None),
        ([delete(b"a"), delete(b"a")], None),
        ([nested([put(b"x")], [put(b"x")])], None),
        ([put(b"x")], None),
        ([nested([put(b"x"), put(b"x")], [])], errors.ErrDuplicateKey),  # one op, nested
        ([nested([nested([delete(b"x"), put(b"x")], [])], [])], errors.ErrDuplicateKey),
        ([nested([put(b"x")], []), put(b"x")], errors.ErrDuplicateKey),
        ([nested([delete(b"x")], []), put(b"x")], errors.ErrDuplicateKey),
        ([delete(b"x"), nested([put(b"x")], [])], errors.ErrDuplicateKey),
        ([rpc_pb2.RequestOp()], errors.ErrKeyNotFound),
    ],
)
def test_txn_intervals(ops: list[rpc_pb2.RequestOp], error: errors.EtcdError | None) -> None:
    req = rpc_pb2.TxnRequest(success=ops)
    if error is None:
        validate.check_txn(req, 128)
    else:
        with pytest.raises(errors.EtcdError) as exc:
            validate.check_txn(req, 128)
        assert exc.value == error


def test_too_many_ops_counts_the_largest_list() -> None:
    req = rpc_pb2.TxnRequest(success=[put(bytes([i])) for i in range(1, 4)])
    validate.check_txn(req, 3)
    with pytest.raises(errors.EtcdError) as exc:
        validate.check_txn(req, 2)
    assert exc.value.message == "etcdserver: too many operations in txn request"
    assert exc.value.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("req", "error"),
    [
        (rpc_pb2.PutRequest(key=b""), errors.ErrEmptyKey),
        (rpc_pb2.PutRequest(key=b"k", value=b"v", ignore_value=True), errors.ErrValueProvided),
        (rpc_pb2.PutRequest(key=b"k", lease=5, ignore_lease=True), errors.ErrLeaseProvided),
    ],
)
def test_put_checks(req: rpc_pb2.PutRequest, error: errors.EtcdError) -> None:
    with pytest.raises(errors.EtcdError) as exc:
        validate.check_put(req)
    assert exc.value == error


def test_empty_compare_key_is_rejected() -> None:
    req = rpc_pb2.TxnRequest(compare=[rpc_pb2.Compare(key=b"")])
    with pytest.raises(errors.EtcdError) as exc:
        validate.check_txn(req, 128)
    assert exc.value == errors.ErrEmptyKey
