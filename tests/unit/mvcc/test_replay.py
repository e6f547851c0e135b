"""Replaying watch events into a db (``pyetcd.mvcc.replay``): the same store, or a clear refusal.

A source store makes a random history; a second backend gets the same first part (the "full
backup"), then the events of the rest are replayed into it. A store opened on the result must
answer every read at every revision as the source does. The refusals: a hole, a revision that
goes back, a key on a lease nobody announced, a damaged log.
"""

from __future__ import annotations

import io
import random

import pytest
from pyetcd.backend.contract import LEASE, Backend
from pyetcd.mvcc import KVStore
from pyetcd.mvcc.replay import (
    EVENT,
    LEASE_RECORD,
    TIME,
    ReplayError,
    read_records,
    replay,
)
from pyetcd.proto.leasepb import lease_pb2
from pyetcd.proto.mvccpb import kv_pb2

from tests.unit.mvcc.conftest import BackendFactory
from tests.unit.mvcc.helpers import apply_random_history, snapshot_reads

Record = tuple[bytes, bytes]


def history_events(store: KVStore, seed: int, n_txns: int = 40) -> list[kv_pb2.Event]:
    """A random history of multi-op txns on ``store``; its events as a watch sends them."""
    rng = random.Random(seed)
    keys = [f"k{i:02d}".encode() for i in range(12)]
    out: list[kv_pb2.Event] = []
    for i in range(n_txns):
        txn = store.write()
        for _ in range(rng.choice([1, 1, 2, 3])):
            op, k = rng.random(), rng.choice(keys)
            if op < 0.65:
                txn.put(k, f"late{i}".encode(), lease=rng.choice([0, 0, 7]))
            elif op < 0.85:
                txn.delete_range(k)
            else:
                txn.delete_range(k, k + b"\xff")
        for ev in txn.end():
            kind = kv_pb2.Event.PUT if ev.type == kv_pb2.Event.PUT else kv_pb2.Event.DELETE
            out.append(kv_pb2.Event(type=kind, kv=kv_pb2.KeyValue.FromString(ev.kv)))
    return out


def records(events: list[kv_pb2.Event], lease: int = 7) -> list[Record]:
    lease_record = lease_pb2.Lease(ID=lease, TTL=30).SerializeToString()
    return [
        (TIME, (1_700_000_000_000).to_bytes(8, "big")),
        (LEASE_RECORD, lease_record),
        *((EVENT, e.SerializeToString()) for e in events),
    ]


@pytest.mark.parametrize("seed", range(3))
def test_replayed_store_answers_every_read_as_the_source(
    make_backend: BackendFactory, seed: int
) -> None:
    source, copy = KVStore(make_backend()), make_backend()
    apply_random_history(source, seed)
    apply_random_history(KVStore(copy), seed)
    copy.commit()
    base = source.current_revision
    events = history_events(source, seed + 100)
    result = replay(copy, records(events))
    assert (result.base, result.first, result.last) == (base, base + 1, source.current_revision)
    assert result.events == len(events) and result.skipped == 0
    replayed = KVStore(copy)
    revs = range(1, source.current_revision + 1)
    assert snapshot_reads(replayed, revs) == snapshot_reads(source, revs)
    assert sorted(replayed.leased_keys()) == sorted(source.leased_keys())
    if any(e.kv.lease == 7 for e in events):
        assert copy.get(LEASE, (7).to_bytes(8, "big")) is not None


def test_events_at_or_below_the_db_revision_are_skipped(make_backend: BackendFactory) -> None:
    source, copy = KVStore(make_backend()), make_backend()
    early = history_events(source, 1, 8)
    replay(copy, records(early))  # the copy has the early part: the "full backup"
    late = history_events(source, 2, 8)
    result = replay(copy, records(early + late))
    assert result.skipped == len(early)
    assert (result.first, result.last) == (late[0].kv.mod_revision, source.current_revision)
    revs = range(1, source.current_revision + 1)
    assert snapshot_reads(KVStore(copy), revs) == snapshot_reads(source, revs)


def test_a_hole_is_refused(backend: Backend) -> None:
    source = KVStore(backend)
    events = history_events(source, 3, 10)
    hole = events[0].kv.mod_revision + 2
    kept = [e for e in events if e.kv.mod_revision != hole]
    with pytest.raises(ReplayError, match=f"skips revisions {hole}..{hole}"):
        replay(_empty_copy(), records(kept))


def test_a_revision_that_goes_back_is_refused() -> None:
    events = [_put(b"a", 2), _put(b"b", 3), _put(b"c", 2)]
    with pytest.raises(ReplayError, match="goes back"):
        replay(_empty_copy(), records(events))


def test_a_key_on_an_unknown_lease_is_refused() -> None:
    with pytest.raises(ReplayError, match="lease 9, which neither the db nor the log has"):
        replay(_empty_copy(), records([_put(b"a", 2, lease=9)]))


def test_an_event_without_a_revision_is_refused() -> None:
    with pytest.raises(ReplayError, match="has no revision"):
        replay(_empty_copy(), records([_put(b"a", 0)]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"E\x00\x00", "a record header is cut"),
        (b"E\x00\x00\x00\x09abc", "a record is cut"),
        (b"X\x00\x00\x00\x00", "unknown record kind"),
        (b"E\x00\x00\x00\x03\xff\xff\xff", "unreadable event record"),
    ],
)
def test_a_damaged_log_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        replay(_empty_copy(), read_records(io.BytesIO(data)))


def _put(key: bytes, rev: int, lease: int = 0) -> kv_pb2.Event:
    kv = kv_pb2.KeyValue(key=key, value=b"v", create_revision=rev, mod_revision=rev, version=1)
    kv.lease = lease
    return kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv)


def _empty_copy() -> Backend:
    from tests.unit.mvcc.memory_backend import MemoryBackend

    return MemoryBackend()
