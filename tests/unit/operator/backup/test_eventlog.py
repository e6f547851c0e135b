"""The event log the operator writes (``backup.eventlog``) and the one pyetcdutl replays
(``pyetcd.mvcc.replay``): the same records, read back by both."""

from __future__ import annotations

import io

import pytest
from etcd_operator.backup.errors import CorruptObjectError
from etcd_operator.backup.eventlog import EventLog, read_log, write_records
from pyetcd.mvcc import replay as server_side
from pyetcd.proto.leasepb import lease_pb2
from pyetcd.proto.mvccpb import kv_pb2


def event(
    key: bytes, rev: int, kind: kv_pb2.Event.EventType.ValueType = kv_pb2.Event.PUT
) -> kv_pb2.Event:
    kv = kv_pb2.KeyValue(key=key, value=b"v", create_revision=rev, mod_revision=rev, version=1)
    return kv_pb2.Event(type=kind, kv=kv)


def sample() -> EventLog:
    log = EventLog()
    log.mark_time(1_765_000_000_123)
    log.add_lease(0x7F00_0000_0000_0001, 60)
    log.add_event(event(b"/a", 5))
    log.add_event(event(b"/b", 5, kv_pb2.Event.DELETE))
    log.mark_time(1_765_000_001_000)
    log.add_event(event(b"/c", 6))
    return log


def test_the_log_counts_what_it_holds() -> None:
    log = sample()
    assert (log.events, log.first_revision, log.last_revision) == (3, 5, 6)
    assert log.size == len(log.to_bytes())


def test_the_operator_reads_back_what_it_wrote() -> None:
    records = list(read_log(sample().to_bytes()))
    assert [r.unix_ms for r in records if r.unix_ms] == [1_765_000_000_123, 1_765_000_001_000]
    assert [r.lease.TTL for r in records if r.lease] == [60]
    assert [r.event.kv.key for r in records if r.event] == [b"/a", b"/b", b"/c"]
    assert write_records(records) == sample().to_bytes()


def test_pyetcdutl_reads_the_same_records() -> None:
    data = sample().to_bytes()
    kinds = [kind for kind, _ in server_side.read_records(io.BytesIO(data))]
    assert kinds == [
        server_side.TIME,
        server_side.LEASE_RECORD,
        server_side.EVENT,
        server_side.EVENT,
        server_side.TIME,
        server_side.EVENT,
    ]
    payloads = [p for _, p in server_side.read_records(io.BytesIO(data))]
    assert lease_pb2.Lease.FromString(payloads[1]).ID == 0x7F00_0000_0000_0001
    assert kv_pb2.Event.FromString(payloads[3]).type == kv_pb2.Event.DELETE


def test_events_must_not_go_back() -> None:
    log = EventLog()
    log.add_event(event(b"/a", 5))
    with pytest.raises(ValueError, match="revision 4 after 5"):
        log.add_event(event(b"/b", 4))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"E\x00", "a record header is cut"),
        (b"E\x00\x00\x00\x09abc", "a record is cut"),
        (b"Q\x00\x00\x00\x00", "unknown record"),
        (b"T\x00\x00\x00\x02ab", "unknown record"),
        (b"E\x00\x00\x00\x03\xff\xff\xff", "is corrupt"),
    ],
)
def test_a_damaged_log_is_corrupt(data: bytes, message: str) -> None:
    with pytest.raises(CorruptObjectError, match=message):
        list(read_log(data))
