"""Bad input gets etcd's error and loses nothing.

Every malformed or impossible request runs against upstream etcd and pyetcd, one member of each
flavour started with ``--max-request-bytes=65536``. For each, the test asserts that

* upstream etcd answers with the gRPC code and message this file expects (so that an assumption
  about etcd that stops being true shows up as such, not as a pyetcd failure),
* pyetcd answers with exactly the same code and message,
* the failed request changed nothing: store revision, compacted revision, the keys under the
  test's own prefix and the set of leases (with their granted TTLs) are as before,
* the member still serves: a put then a get of the value just written.

The second half is pyetcd only: corrupt data files must stop the member at start-up with a clear
error naming the file (no Python traceback), and the damage etcd repairs by itself (a torn WAL
tail, a corrupt newest ``.snap``) must be repaired the same way, loudly.

Explained differences (asserted as such, not hidden):

* A request beyond the gRPC receive limit (``--max-request-bytes`` + 512 KiB) is refused by the
  gRPC transport before etcd sees it, with the transport's own text: grpc-go says ``grpc:
  received message larger than max (N vs. M)``, and so does pyetcd's own HTTP/2 stack
  (``--grpc-stack=h2``, the default); grpc-core (the C library under grpcio,
  ``--grpc-stack=grpcio``) says ``SERVER: Received message larger than max (N vs. M)``. See
  :data:`TRANSPORT_MESSAGES`.
* A corrupt newest ``.snap`` is not a start-up error in etcd (3.4.23, observed): etcd logs
  ``snap: corrupted snapshot file <path>: crc mismatch``, renames it ``<path>.broken`` and falls
  back to the previous snapshot. pyetcd is held to that, not to an exit.
* "Unreadable" files: the tests run as root, for whom ``chmod 000`` denies nothing, so an
  unreadable database is made by putting a directory where the file belongs (reads fail with
  EISDIR), which is unreadable for every user.
* Observed for reference, not asserted: upstream etcd 3.4 answers destroyed bbolt meta pages with
  a Go panic and a stack trace (exit 2), and a data dir that is a file with ``error listing data
  dir: <path>``; pyetcd is held to the stricter "clear error, no traceback" rule.
"""

from __future__ import annotations

import queue
import re
import shutil
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc
import pytest
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import FLAVOURS, Flavour, Member
from tests.integration.conftest import MemberRegistry

pytestmark = pytest.mark.integration

MAX_REQUEST_BYTES = 65536
GRPC_LIMIT = MAX_REQUEST_BYTES + 512 * 1024  # etcd: max gRPC receive = max-request-bytes + 512 KiB
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
MAX_LEASE_TTL = 9_000_000_000
UNKNOWN_LEASE = 0x0BAD_C0DE  # never granted: server-chosen ids are far larger
RPC_TIMEOUT = 10.0
START_DEADLINE = 20.0

#: The transport's wording of "message too large" (see the module docstring).
TRANSPORT_MESSAGES: dict[Flavour, str] = {
    "etcd": "grpc: received message larger than max ({size} vs. {limit})",
    "pyetcd": "grpc: received message larger than max ({size} vs. {limit})",
}


# ---------------------------------------------------------------------------------------------
# outcomes


@dataclass(frozen=True)
class Rejected:
    """A request that failed: the gRPC status code and the message (details) string."""

    code: grpc.StatusCode
    message: str


@dataclass(frozen=True)
class Accepted:
    """A request that succeeded (it should not have): the response, for the failure message."""

    response: str


Outcome = Rejected | Accepted


def attempt(call: Callable[[], object]) -> Outcome:
    try:
        response = call()
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return Rejected(exc.code(), exc.details() or "")
    return Accepted(str(response).replace("\n", " "))


def etcd_error(code: grpc.StatusCode, text: str) -> Rejected:
    return Rejected(code, "etcdserver: " + text)


INVALID = grpc.StatusCode.INVALID_ARGUMENT
OUT_OF_RANGE = grpc.StatusCode.OUT_OF_RANGE
EMPTY_KEY = etcd_error(INVALID, "key is not provided")
TOO_LARGE = etcd_error(INVALID, "request is too large")
TOO_MANY_OPS = etcd_error(INVALID, "too many operations in txn request")
DUPLICATE_KEY = etcd_error(INVALID, "duplicate key given in txn request")
VALUE_PROVIDED = etcd_error(INVALID, "value is provided")
LEASE_PROVIDED = etcd_error(INVALID, "lease is provided")
KEY_NOT_FOUND = etcd_error(INVALID, "key not found")
FUTURE_REV = etcd_error(OUT_OF_RANGE, "mvcc: required revision is a future revision")
COMPACTED = etcd_error(OUT_OF_RANGE, "mvcc: required revision has been compacted")
LEASE_NOT_FOUND = etcd_error(grpc.StatusCode.NOT_FOUND, "requested lease not found")
LEASE_EXISTS = etcd_error(grpc.StatusCode.FAILED_PRECONDITION, "lease already exists")
LEASE_TTL_TOO_LARGE = etcd_error(OUT_OF_RANGE, "too large lease TTL")


# ---------------------------------------------------------------------------------------------
# a client per member


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


@dataclass(frozen=True)
class State:
    """Everything a failed request must leave as it was."""

    revision: int
    compact_revision: int
    kvs: tuple[tuple[bytes, bytes, int, int, int, int], ...]
    leases: tuple[tuple[int, int], ...]


class Client:
    """Raw gRPC stubs on one member, plus the checks every case runs."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.channel = grpc.insecure_channel(
            member.host_port,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.watch = rpc_pb2_grpc.WatchStub(self.channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)
        self._round_trips = 0

    @property
    def flavour(self) -> Flavour:
        return self.member.flavour

    def close(self) -> None:
        self.channel.close()

    def revision(self) -> int:
        req = rpc_pb2.RangeRequest(key=b"/probe", count_only=True)
        return self.kv.Range(req, timeout=RPC_TIMEOUT).header.revision

    def compacted(self) -> int:
        resp = self.maintenance.HashKV(rpc_pb2.HashKVRequest(), timeout=RPC_TIMEOUT)
        return resp.compact_revision

    def put(self, key: bytes, value: bytes = b"v") -> int:
        req = rpc_pb2.PutRequest(key=key, value=value)
        return self.kv.Put(req, timeout=RPC_TIMEOUT).header.revision

    def state(self, prefix: bytes) -> State:
        req = rpc_pb2.RangeRequest(key=prefix, range_end=prefix_end(prefix))
        resp = self.kv.Range(req, timeout=RPC_TIMEOUT)
        kvs = tuple(
            (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
            for kv in resp.kvs
        )
        leases = []
        listed = self.lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=RPC_TIMEOUT)
        for status in listed.leases:
            ttl = self.lease.LeaseTimeToLive(
                rpc_pb2.LeaseTimeToLiveRequest(ID=status.ID), timeout=RPC_TIMEOUT
            )
            leases.append((status.ID, ttl.grantedTTL))
        return State(resp.header.revision, self.compacted(), kvs, tuple(sorted(leases)))

    def round_trip(self, prefix: bytes) -> None:
        """The member still serves: a put, then a get that sees exactly that put."""
        self._round_trips += 1
        key = prefix + b"/round-trip"
        value = f"value-{self._round_trips}".encode()
        revision = self.put(key, value)
        got = self.kv.Range(rpc_pb2.RangeRequest(key=key), timeout=RPC_TIMEOUT)
        assert [(kv.value, kv.mod_revision) for kv in got.kvs] == [(value, revision)], (
            f"{self.flavour}: round trip after the bad request read back {got.kvs!r}"
        )


Pair = dict[Flavour, Client]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """One member of each flavour, shared by the request tests (each uses its own prefix)."""
    registry = MemberRegistry(tmp_path_factory.mktemp("bad-input"))
    clients: Pair = {}
    try:
        for flavour in FLAVOURS:
            member = registry.new(
                flavour, name="bad-input", extra_flags=[f"--max-request-bytes={MAX_REQUEST_BYTES}"]
            )
            clients[flavour] = Client(member)
        yield clients
    finally:
        for client in clients.values():
            client.close()
        registry.stop_all()


Request = Callable[[Client, bytes], object]
Setup = Callable[[Client, bytes], None]


def check_rejected(
    pair: Pair, prefix: bytes, request: Request, expected: Rejected, setup: Setup | None = None
) -> None:
    """Run ``request`` on both flavours: same error as upstream, no state change, still serves."""
    results: dict[Flavour, Outcome] = {}
    for flavour, client in pair.items():
        if setup is not None:
            setup(client, prefix)
        before = client.state(prefix)
        results[flavour] = attempt(lambda c=client: request(c, prefix))  # type: ignore[misc]
        after = client.state(prefix)
        assert after == before, f"{flavour}: the rejected request changed the state"
        client.round_trip(prefix)
    assert results["etcd"] == expected, "upstream etcd did not answer as this test expects"
    assert results["pyetcd"] == results["etcd"]


# ---------------------------------------------------------------------------------------------
# requests etcd rejects


def put_op(key: bytes, value: bytes = b"v") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))


def many_puts(prefix: bytes, count: int) -> list[rpc_pb2.RequestOp]:
    return [put_op(prefix + b"/t/%03d" % i) for i in range(count)]


def grant_fixed_lease(client: Client, prefix: bytes) -> None:
    """Grant lease 0x7E57 (TTL 600) unless this member already has it."""
    ttl = client.lease.LeaseTimeToLive(
        rpc_pb2.LeaseTimeToLiveRequest(ID=0x7E57), timeout=RPC_TIMEOUT
    )
    if ttl.TTL == -1:
        client.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=0x7E57, TTL=600), timeout=RPC_TIMEOUT)


def put_existing_key(client: Client, prefix: bytes) -> None:
    client.put(prefix + b"/e", b"old")


def put_existing_key_and_lease(client: Client, prefix: bytes) -> None:
    grant_fixed_lease(client, prefix)
    client.put(prefix + b"/e", b"old")


def write_and_compact(client: Client, prefix: bytes) -> None:
    """Three writes of ``<prefix>/k``, then a physical compaction at the current revision."""
    for i in range(3):
        revision = client.put(prefix + b"/k", f"v{i}".encode())
    req = rpc_pb2.CompactionRequest(revision=revision, physical=True)
    client.kv.Compact(req, timeout=RPC_TIMEOUT)


@dataclass(frozen=True)
class Case:
    id: str
    request: Request
    expected: Rejected
    setup: Setup | None = None


K = rpc_pb2
CASES = [
    # 1. oversized, but within the gRPC receive limit: etcd's own size check
    Case(
        "put-value-just-over-max-request-bytes",
        lambda c, p: c.kv.Put(K.PutRequest(key=p + b"/k", value=b"x" * (MAX_REQUEST_BYTES + 1))),
        TOO_LARGE,
    ),
    Case(
        "txn-with-a-put-just-over-max-request-bytes",
        lambda c, p: c.kv.Txn(
            K.TxnRequest(success=[put_op(p + b"/k", b"x" * (MAX_REQUEST_BYTES + 1))])
        ),
        TOO_LARGE,
    ),
    # 2. empty keys
    Case("range-empty-key", lambda c, p: c.kv.Range(K.RangeRequest(key=b"")), EMPTY_KEY),
    Case(
        "range-empty-key-with-range-end",
        lambda c, p: c.kv.Range(K.RangeRequest(key=b"", range_end=p)),
        EMPTY_KEY,
    ),
    Case("put-empty-key", lambda c, p: c.kv.Put(K.PutRequest(key=b"", value=b"v")), EMPTY_KEY),
    Case(
        "delete-empty-key",
        lambda c, p: c.kv.DeleteRange(K.DeleteRangeRequest(key=b"")),
        EMPTY_KEY,
    ),
    Case(
        "txn-compare-empty-key",
        lambda c, p: c.kv.Txn(
            K.TxnRequest(
                compare=[K.Compare(key=b"", target=K.Compare.VERSION, version=0)],
                success=[put_op(p + b"/written-if-accepted")],
            )
        ),
        EMPTY_KEY,
    ),
    Case(
        "txn-put-op-empty-key",
        lambda c, p: c.kv.Txn(K.TxnRequest(success=[put_op(p + b"/a"), put_op(b"")])),
        EMPTY_KEY,
    ),
    Case(
        "txn-range-op-empty-key-in-failure-branch",
        lambda c, p: c.kv.Txn(
            K.TxnRequest(failure=[K.RequestOp(request_range=K.RangeRequest(key=b""))])
        ),
        EMPTY_KEY,
    ),
    # 2. revisions
    Case(
        "range-future-revision",
        lambda c, p: c.kv.Range(K.RangeRequest(key=p + b"/k", revision=c.revision() + 100)),
        FUTURE_REV,
    ),
    Case(
        "range-next-revision",
        lambda c, p: c.kv.Range(K.RangeRequest(key=p + b"/k", revision=c.revision() + 1)),
        FUTURE_REV,
    ),
    # 2. txn limits
    Case(
        "txn-129-puts-in-success",
        lambda c, p: c.kv.Txn(K.TxnRequest(success=many_puts(p, MAX_TXN_OPS + 1))),
        TOO_MANY_OPS,
    ),
    Case(
        "txn-129-puts-in-failure",
        lambda c, p: c.kv.Txn(
            K.TxnRequest(
                compare=[K.Compare(key=p + b"/c", target=K.Compare.VERSION, version=99)],
                failure=many_puts(p, MAX_TXN_OPS + 1),
            )
        ),
        TOO_MANY_OPS,
    ),
    Case(
        "txn-129-compares",
        lambda c, p: c.kv.Txn(
            K.TxnRequest(
                compare=[
                    K.Compare(key=p + b"/c%d" % i, target=K.Compare.VERSION, version=0)
                    for i in range(MAX_TXN_OPS + 1)
                ],
                success=[put_op(p + b"/written-if-accepted")],
            )
        ),
        TOO_MANY_OPS,
    ),
    Case(
        "txn-duplicate-put",
        lambda c, p: c.kv.Txn(K.TxnRequest(success=[put_op(p + b"/d", b"1"), put_op(p + b"/d")])),
        DUPLICATE_KEY,
    ),
    Case(
        "txn-put-and-delete-same-key",
        lambda c, p: c.kv.Txn(
            K.TxnRequest(
                success=[
                    put_op(p + b"/d"),
                    K.RequestOp(request_delete_range=K.DeleteRangeRequest(key=p + b"/d")),
                ]
            )
        ),
        DUPLICATE_KEY,
    ),
    Case(
        "txn-put-inside-a-deleted-range",
        lambda c, p: c.kv.Txn(
            K.TxnRequest(
                failure=[
                    K.RequestOp(
                        request_delete_range=K.DeleteRangeRequest(key=p, range_end=prefix_end(p))
                    ),
                    put_op(p + b"/d"),
                ]
            )
        ),
        DUPLICATE_KEY,
    ),
    # 2. put flags
    Case(
        "put-ignore-value-with-a-value",
        lambda c, p: c.kv.Put(K.PutRequest(key=p + b"/e", value=b"v", ignore_value=True)),
        VALUE_PROVIDED,
        setup=put_existing_key,
    ),
    Case(
        "put-ignore-lease-with-a-lease",
        lambda c, p: c.kv.Put(
            K.PutRequest(key=p + b"/e", value=b"v", lease=0x7E57, ignore_lease=True)
        ),
        LEASE_PROVIDED,
        setup=put_existing_key_and_lease,
    ),
    Case(
        "put-ignore-value-on-a-missing-key",
        lambda c, p: c.kv.Put(K.PutRequest(key=p + b"/missing", ignore_value=True)),
        KEY_NOT_FOUND,
    ),
    Case(
        "put-ignore-lease-on-a-missing-key",
        lambda c, p: c.kv.Put(K.PutRequest(key=p + b"/missing", value=b"v", ignore_lease=True)),
        KEY_NOT_FOUND,
    ),
    Case(
        "txn-put-ignore-value-on-a-missing-key",
        lambda c, p: c.kv.Txn(
            K.TxnRequest(
                success=[
                    put_op(p + b"/a"),
                    K.RequestOp(request_put=K.PutRequest(key=p + b"/missing", ignore_value=True)),
                ]
            )
        ),
        KEY_NOT_FOUND,
    ),
    # 3. leases
    Case(
        "put-with-an-unknown-lease",
        lambda c, p: c.kv.Put(K.PutRequest(key=p + b"/l", value=b"v", lease=UNKNOWN_LEASE)),
        LEASE_NOT_FOUND,
    ),
    Case(
        "txn-put-with-an-unknown-lease",
        lambda c, p: c.kv.Txn(
            K.TxnRequest(
                success=[
                    put_op(p + b"/a"),
                    K.RequestOp(
                        request_put=K.PutRequest(key=p + b"/l", value=b"v", lease=UNKNOWN_LEASE)
                    ),
                ]
            )
        ),
        LEASE_NOT_FOUND,
    ),
    Case(
        "lease-revoke-unknown",
        lambda c, p: c.lease.LeaseRevoke(K.LeaseRevokeRequest(ID=UNKNOWN_LEASE)),
        LEASE_NOT_FOUND,
    ),
    Case(
        "lease-grant-existing-id",
        lambda c, p: c.lease.LeaseGrant(K.LeaseGrantRequest(ID=0x7E57, TTL=1200)),
        LEASE_EXISTS,
        setup=grant_fixed_lease,
    ),
    Case(
        "lease-grant-ttl-over-max",
        lambda c, p: c.lease.LeaseGrant(K.LeaseGrantRequest(TTL=MAX_LEASE_TTL + 1)),
        LEASE_TTL_TOO_LARGE,
    ),
    Case(
        "lease-grant-fixed-id-ttl-over-max",
        lambda c, p: c.lease.LeaseGrant(K.LeaseGrantRequest(ID=0x7E58, TTL=MAX_LEASE_TTL + 1)),
        LEASE_TTL_TOO_LARGE,
    ),
    # 4. compacted revisions
    Case(
        "compact-at-the-compacted-revision",
        lambda c, p: c.kv.Compact(K.CompactionRequest(revision=c.compacted())),
        COMPACTED,
        setup=write_and_compact,
    ),
    Case(
        "compact-below-the-compacted-revision",
        lambda c, p: c.kv.Compact(K.CompactionRequest(revision=c.compacted() - 1)),
        COMPACTED,
        setup=write_and_compact,
    ),
    Case(
        "compact-above-the-current-revision",
        lambda c, p: c.kv.Compact(K.CompactionRequest(revision=c.revision() + 1)),
        FUTURE_REV,
        setup=write_and_compact,
    ),
    Case(
        "range-at-a-compacted-revision",
        lambda c, p: c.kv.Range(K.RangeRequest(key=p + b"/k", revision=c.compacted() - 1)),
        COMPACTED,
        setup=write_and_compact,
    ),
    Case(
        "txn-range-at-a-compacted-revision",
        lambda c, p: c.kv.Txn(
            K.TxnRequest(
                success=[
                    K.RequestOp(
                        request_range=K.RangeRequest(key=p + b"/k", revision=c.compacted() - 1)
                    )
                ]
            )
        ),
        COMPACTED,
        setup=write_and_compact,
    ),
]


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_rejected_like_etcd(case: Case, pair: Pair) -> None:
    check_rejected(pair, b"/bad/" + case.id.encode(), case.request, case.expected, case.setup)


# ---------------------------------------------------------------------------------------------
# the controls: what is just inside a limit is accepted


@pytest.mark.integration
def test_requests_inside_the_limits_are_accepted(pair: Pair) -> None:
    """The limits are where etcd puts them, not lower: the same requests pass on both."""
    seen: dict[Flavour, list[object]] = {}
    for flavour, client in pair.items():
        prefix = b"/bad/inside-limits"
        base = client.revision()
        near = client.kv.Put(
            K.PutRequest(key=prefix + b"/big", value=b"x" * (MAX_REQUEST_BYTES - 1024)),
            timeout=RPC_TIMEOUT,
        )
        txn = client.kv.Txn(
            K.TxnRequest(success=many_puts(prefix, MAX_TXN_OPS)), timeout=RPC_TIMEOUT
        )
        grant = client.lease.LeaseGrant(K.LeaseGrantRequest(TTL=MAX_LEASE_TTL), timeout=RPC_TIMEOUT)
        client.lease.LeaseRevoke(K.LeaseRevokeRequest(ID=grant.ID), timeout=RPC_TIMEOUT)
        state = client.state(prefix)
        seen[flavour] = [
            near.header.revision - base,
            txn.succeeded,
            len(txn.responses),
            txn.header.revision - base,
            grant.TTL,
            len(state.kvs),
            sorted({kv[3] - base for kv in state.kvs}),
        ]
    assert seen["etcd"] == [1, True, MAX_TXN_OPS, 2, MAX_LEASE_TTL, MAX_TXN_OPS + 1, [1, 2]]
    assert seen["pyetcd"] == seen["etcd"]


# ---------------------------------------------------------------------------------------------
# far beyond the limit: the gRPC transport refuses the message


@pytest.mark.integration
def test_request_beyond_the_grpc_receive_limit(pair: Pair) -> None:
    prefix = b"/bad/beyond-grpc-limit"
    request = K.PutRequest(key=prefix + b"/huge", value=b"x" * GRPC_LIMIT)
    size = request.ByteSize()
    results: dict[Flavour, Outcome] = {}
    for flavour, client in pair.items():
        before = client.state(prefix)
        results[flavour] = attempt(lambda c=client: c.kv.Put(request, timeout=RPC_TIMEOUT))  # type: ignore[misc]
        assert client.state(prefix) == before, f"{flavour}: the refused request changed the state"
        client.round_trip(prefix)
    for flavour, outcome in results.items():
        # same code; the text is the transport's own (grpc-go vs grpc-core), with the same sizes
        expected_text = TRANSPORT_MESSAGES[flavour].format(size=size, limit=GRPC_LIMIT)
        assert outcome == Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, expected_text), flavour


# ---------------------------------------------------------------------------------------------
# unknown leases that are not errors


@pytest.mark.integration
def test_unknown_lease_time_to_live_and_keep_alive(pair: Pair) -> None:
    """TimeToLive of an unknown lease is TTL -1 and KeepAlive's answer is TTL 0: no errors."""
    seen: dict[Flavour, object] = {}
    for flavour, client in pair.items():
        prefix = b"/bad/unknown-lease"
        before = client.state(prefix)
        ttl = client.lease.LeaseTimeToLive(
            K.LeaseTimeToLiveRequest(ID=UNKNOWN_LEASE, keys=True), timeout=RPC_TIMEOUT
        )
        stream = client.lease.LeaseKeepAlive(
            iter([K.LeaseKeepAliveRequest(ID=UNKNOWN_LEASE)]), timeout=RPC_TIMEOUT
        )
        keep_alive = next(stream)
        stream.cancel()
        assert client.state(prefix) == before, f"{flavour}: the state changed"
        client.round_trip(prefix)
        seen[flavour] = (
            (ttl.ID, ttl.TTL, ttl.grantedTTL, list(ttl.keys)),
            (keep_alive.ID, keep_alive.TTL),
        )
    assert seen["etcd"] == ((UNKNOWN_LEASE, -1, 0, []), (UNKNOWN_LEASE, 0))
    assert seen["pyetcd"] == seen["etcd"]


# ---------------------------------------------------------------------------------------------
# watching from a compacted revision


class WatchStream:
    """A bidirectional Watch stream fed from a queue, read in a thread with deadlines."""

    def __init__(self, client: Client) -> None:
        self._requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        self._responses: queue.Queue[rpc_pb2.WatchResponse | Exception] = queue.Queue()
        self._call = client.watch.Watch(self._request_iter(), timeout=60)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _request_iter(self) -> Iterator[rpc_pb2.WatchRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def _read(self) -> None:
        try:
            for response in self._call:
                self._responses.put(response)
        except Exception as exc:  # the stream's end (cancel) or an error, handed to next()
            self._responses.put(exc)

    def create(self, key: bytes, start_revision: int = 0) -> None:
        create = K.WatchCreateRequest(key=key, start_revision=start_revision)
        self._requests.put(K.WatchRequest(create_request=create))

    def next(self, timeout: float = RPC_TIMEOUT) -> rpc_pb2.WatchResponse:
        item = self._responses.get(timeout=timeout)
        if isinstance(item, Exception):
            raise AssertionError(f"watch stream ended: {item!r}")
        return item

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(timeout=10)


def describe(resp: rpc_pb2.WatchResponse, current: int, compacted: int) -> dict[str, object]:
    """A watch response without ids and terms; revisions relative to the test's own marks
    (``C+0`` is the compacted revision; event revisions are relative to the current one)."""
    return {
        "watch_id": resp.watch_id,
        "created": resp.created,
        "canceled": resp.canceled,
        "cancel_reason": resp.cancel_reason,
        "compact_revision": f"C{resp.compact_revision - compacted:+d}"
        if resp.compact_revision
        else 0,
        "fragment": resp.fragment,
        "events": [
            (e.type, e.kv.key, e.kv.value, e.kv.mod_revision - current) for e in resp.events
        ],
    }


@dataclass
class WatchRun:
    responses: list[dict[str, object]]
    cancel_header_revision: str


def watch_compacted(client: Client, prefix: bytes) -> WatchRun:
    write_and_compact(client, prefix)
    compacted = client.compacted()
    before = client.state(prefix)
    current = before.revision
    stream = WatchStream(client)
    try:
        stream.create(prefix + b"/k", start_revision=compacted - 1)
        first = stream.next()
        second = stream.next()
        assert client.state(prefix) == before, f"{client.flavour}: the watch changed the state"
        # the stream still works: a new watcher on it, then a write it must report
        stream.create(prefix + b"/after")
        third = stream.next()
        client.put(prefix + b"/after", b"seen")
        fourth = stream.next()
    finally:
        stream.close()
    client.round_trip(prefix)
    header = second.header.revision
    return WatchRun(
        [describe(r, current, compacted) for r in (first, second, third, fourth)],
        "0" if header == 0 else f"R{header - current:+d}",
    )


@pytest.mark.integration
def test_watch_from_a_compacted_revision_raw_stream(pair: Pair) -> None:
    """created, then canceled with compact_revision set; the stream stays usable."""
    runs = {flavour: watch_compacted(c, b"/bad/watch-raw") for flavour, c in pair.items()}
    created: dict[str, object] = {
        "created": True,
        "canceled": False,
        "cancel_reason": "",
        "compact_revision": 0,
        "fragment": False,
        "events": [],
    }
    assert runs["etcd"].responses == [
        {**created, "watch_id": 0},
        {**created, "watch_id": 0, "created": False, "canceled": True, "compact_revision": "C+0"},
        {**created, "watch_id": 1},
        {
            **created,
            "watch_id": 1,
            "created": False,
            "events": [(0, b"/bad/watch-raw/after", b"seen", 1)],
        },
    ]
    assert runs["pyetcd"].responses == runs["etcd"].responses


@pytest.mark.integration
def test_watch_compacted_cancel_header_revision(pair: Pair) -> None:
    """etcd sends the compaction cancel with an empty header revision (mvcc's WatchResponse
    for a compacted watcher carries no Revision; v3rpc copies it into the header)."""
    runs = {flavour: watch_compacted(c, b"/bad/watch-header") for flavour, c in pair.items()}
    assert runs["etcd"].cancel_header_revision == "0"
    assert runs["pyetcd"].cancel_header_revision == runs["etcd"].cancel_header_revision


@pytest.mark.integration
def test_etcdctl_watch_from_a_compacted_revision(pair: Pair) -> None:
    results: dict[Flavour, tuple[int, str, str]] = {}
    for flavour, client in pair.items():
        prefix = b"/bad/watch-etcdctl"
        write_and_compact(client, prefix)
        before = client.state(prefix)
        result = client.member.etcdctl(
            "watch", (prefix + b"/k").decode(), f"--rev={before.compact_revision - 1}", timeout=20
        )
        assert client.state(prefix) == before, f"{flavour}: the watch changed the state"
        client.round_trip(prefix)
        results[flavour] = (result.returncode, result.stdout, result.stderr)
    assert results["etcd"] == (
        5,
        "",
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
        "Error: watch is canceled by the server\n",
    )
    assert results["pyetcd"] == results["etcd"]


# ---------------------------------------------------------------------------------------------
# corrupt data files (pyetcd only)

WAL_ENTRY_TYPE = 2
KEYS = 300
SNAPSHOT_COUNT = 100


def wal_frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, record length) of each frame of a WAL segment, up to the zeroed tail."""
    frames = []
    pos = 0
    while pos + 8 <= len(data):
        (field,) = struct.unpack_from("<Q", data, pos)
        if field == 0:
            break
        length = field & 0x00FF_FFFF_FFFF_FFFF
        padding = (field >> 56) & 0x7 if field & (1 << 63) else 0
        frames.append((pos, length))
        pos += 8 + length + padding
    return frames


@dataclass
class Corruptible:
    """A stopped pyetcd member and a pristine copy of its data dir (300 keys, 3 snapshots)."""

    member: Member
    pristine: Path

    def restore(self) -> None:
        data = self.member.data_dir
        if data.is_dir():
            shutil.rmtree(data)
        elif data.exists():
            data.unlink()
        shutil.copytree(self.pristine, data)

    @property
    def wal_segment(self) -> Path:
        return sorted((self.member.data_dir / "member" / "wal").glob("*.wal"))[-1]

    @property
    def db(self) -> Path:
        return self.member.data_dir / "member" / "snap" / "db"

    def snaps(self) -> list[Path]:
        return sorted((self.member.data_dir / "member" / "snap").glob("*.snap"))


@pytest.fixture(scope="module")
def corruptible(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corruptible]:
    registry = MemberRegistry(tmp_path_factory.mktemp("corrupt"))
    try:
        member = registry.new(
            "pyetcd", name="corrupt", extra_flags=[f"--snapshot-count={SNAPSHOT_COUNT}"]
        )
        client = Client(member)
        try:
            for i in range(KEYS):
                client.put(b"k%03d" % i, b"v%d" % i)
        finally:
            client.close()
        member.stop()
        pristine = member.workdir / "pristine"
        shutil.copytree(member.data_dir, pristine)
        found = Corruptible(member, pristine)
        assert found.snaps(), f"no .snap after {KEYS} writes with --snapshot-count={SNAPSHOT_COUNT}"
        yield found
    finally:
        registry.stop_all()


@pytest.fixture
def damaged(corruptible: Corruptible) -> Iterator[Corruptible]:
    """The pristine data dir, restored for one test; the member is stopped afterwards."""
    corruptible.restore()
    try:
        yield corruptible
    finally:
        corruptible.member.stop()


@dataclass
class Start:
    result: Literal["exited", "ready"]
    code: int | None
    log: str


def start_damaged(member: Member) -> Start:
    """Start the member and poll until it exits or serves (or the deadline fails the test)."""
    offset = member.log_path.stat().st_size if member.log_path.exists() else 0
    member.start()
    assert member.proc is not None
    deadline = time.monotonic() + START_DEADLINE
    delay = 0.02
    result: Literal["exited", "ready"] | None = None
    while result is None:
        if member.proc.poll() is not None:
            result = "exited"
        elif member.is_ready():
            result = "ready"
        elif time.monotonic() > deadline:
            pytest.fail(f"{member} neither exited nor served within {START_DEADLINE}s")
        else:
            time.sleep(delay)  # poll interval
            delay = min(delay * 2, 0.25)
    log = member.log_path.read_bytes()[offset:].decode(errors="replace")
    return Start(result, member.proc.returncode, log)


def flip_mid_wal_record(c: Corruptible) -> Path:
    segment = c.wal_segment
    data = bytearray(segment.read_bytes())
    frames = wal_frames(bytes(data))
    assert len(frames) > 10, f"{segment} has only {len(frames)} records"
    offset, length = frames[len(frames) // 2]
    data[offset + 8 + length - 3] ^= 0x55  # inside the record's payload: a CRC mismatch
    segment.write_bytes(bytes(data))
    return segment


def garble_meta_pages(c: Corruptible) -> Path:
    with c.db.open("r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 2048)  # both 4 KiB meta pages
    return c.db


def data_dir_is_a_file(c: Corruptible) -> Path:
    shutil.rmtree(c.member.data_dir)
    c.member.data_dir.write_text("not a directory\n")
    return c.member.data_dir


def wal_dir_is_a_file(c: Corruptible) -> Path:
    wal = c.member.data_dir / "member" / "wal"
    shutil.rmtree(wal)
    wal.write_text("not a directory\n")
    return wal


def db_is_a_directory(c: Corruptible) -> Path:
    c.db.unlink()
    c.db.mkdir()
    return c.db


FATAL = [
    ("bbolt-meta-pages-garbage", garble_meta_pages, r"invalid|corrupt|meta"),
    ("wal-crc-mismatch-mid-segment", flip_mid_wal_record, r"crc mismatch"),
    ("data-dir-is-a-file", data_dir_is_a_file, r"not a directory"),
    ("wal-dir-is-a-file", wal_dir_is_a_file, r"not a directory"),
    ("db-unreadable-is-a-directory", db_is_a_directory, r"is a directory"),
]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("corrupt", "reason"), [(f, r) for _, f, r in FATAL], ids=[name for name, _, _ in FATAL]
)
def test_corrupt_data_is_a_clear_startup_error(
    damaged: Corruptible, corrupt: Callable[[Corruptible], Path], reason: str
) -> None:
    path = corrupt(damaged)
    start = start_damaged(damaged.member)
    assert start.result == "exited", f"started despite the damage to {path}:\n{start.log}"
    assert start.code not in (0, None), f"exit code {start.code}:\n{start.log}"
    assert "Traceback (most recent call last)" not in start.log, start.log
    assert str(path) in start.log, f"the log does not name {path}:\n{start.log}"
    assert re.search(reason, start.log, re.IGNORECASE), f"no reason /{reason}/:\n{start.log}"


def assert_serves_everything(member: Member) -> None:
    """All the keys written before the damage are served; a new write survives a restart."""
    client = Client(member)
    try:
        resp = client.kv.Range(K.RangeRequest(key=b"k", range_end=b"l"), timeout=RPC_TIMEOUT)
        assert {kv.key: kv.value for kv in resp.kvs} == {
            b"k%03d" % i: b"v%d" % i for i in range(KEYS)
        }
        client.put(b"after-repair", b"new")
    finally:
        client.close()
    member.restart()
    client = Client(member)
    try:
        resp = client.kv.Range(K.RangeRequest(key=b"after-repair"), timeout=RPC_TIMEOUT)
        assert [kv.value for kv in resp.kvs] == [b"new"]
        count = client.kv.Range(
            K.RangeRequest(key=b"k", range_end=b"l", count_only=True), timeout=RPC_TIMEOUT
        )
        assert count.count == KEYS
    finally:
        client.close()


def tear_wal_tail(c: Corruptible) -> Path:
    """Truncate the newest WAL segment in the middle of its last record (a torn write)."""
    segment = c.wal_segment
    frames = wal_frames(segment.read_bytes())
    offset, length = frames[-1]
    with segment.open("r+b") as f:
        f.truncate(offset + 8 + length // 2)
    return segment


def corrupt_newest_snap(c: Corruptible) -> Path:
    newest = c.snaps()[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x55
    newest.write_bytes(bytes(data))
    return newest


@pytest.mark.integration
def test_torn_wal_tail_is_repaired(damaged: Corruptible) -> None:
    segment = tear_wal_tail(damaged)
    start = start_damaged(damaged.member)
    assert start.result == "ready", f"did not start from a torn WAL tail:\n{start.log}"
    assert_serves_everything(damaged.member)
    # etcd's wal.Repair keeps the damaged segment as <name>.broken
    assert Path(f"{segment}.broken").is_file()


@pytest.mark.integration
def test_torn_wal_tail_repair_is_logged(damaged: Corruptible) -> None:
    """etcd logs ``wal: repairing <segment>``; a silent repair hides lost data from operators."""
    segment = tear_wal_tail(damaged)
    start = start_damaged(damaged.member)
    assert start.result == "ready", f"did not start from a torn WAL tail:\n{start.log}"
    assert str(segment) in start.log, f"the repair of {segment} is not logged:\n{start.log}"


@pytest.mark.integration
def test_corrupt_newest_snap_falls_back(damaged: Corruptible) -> None:
    """etcd renames a corrupt .snap to .snap.broken and starts from the previous snapshot."""
    newest = corrupt_newest_snap(damaged)
    start = start_damaged(damaged.member)
    assert start.result == "ready", f"did not start with a corrupt {newest}:\n{start.log}"
    assert Path(f"{newest}.broken").is_file()
    assert "Traceback (most recent call last)" not in start.log, start.log
    assert_serves_everything(damaged.member)


@pytest.mark.integration
def test_corrupt_newest_snap_is_logged(damaged: Corruptible) -> None:
    """etcd logs ``snap: corrupted snapshot file <path>: crc mismatch`` when it skips one."""
    newest = corrupt_newest_snap(damaged)
    start = start_damaged(damaged.member)
    assert start.result == "ready", f"did not start with a corrupt {newest}:\n{start.log}"
    assert str(newest) in start.log, f"skipping {newest} is not logged:\n{start.log}"
    assert re.search(r"crc mismatch|corrupt", start.log), start.log
