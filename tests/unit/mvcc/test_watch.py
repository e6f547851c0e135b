"""Watch streams: synced and historical delivery, filters, prev_kv, cancel, compaction, slow
consumers, progress, ids, and the wire encoding of responses."""

from __future__ import annotations

import pytest
from pyetcd.backend.contract import Backend
from pyetcd.mvcc import (
    FILTER_NODELETE,
    FILTER_NOPUT,
    INVALID_WATCH_ID,
    WatchableStore,
    WatchResponse,
    WatchStream,
)
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.proto.mvccpb import kv_pb2

from tests.unit.mvcc.helpers import EV, events_of, kv_tuple


def drain(stream: WatchStream) -> list[WatchResponse]:
    return stream.poll()


def event_responses(stream: WatchStream) -> list[tuple[int, int, list[EV]]]:
    """(watch_id, header revision, events) of the queued event responses."""
    return [(r.watch_id, r.revision, events_of(r)) for r in drain(stream) if r.events]


def test_watch_from_now_gets_each_txn_in_one_response_in_order(backend: Backend) -> None:
    ws = WatchableStore(backend)
    ws.put(b"foo", b"old")  # 2: before the watch, not delivered
    st = ws.new_stream()
    wid = st.watch(b"foo", b"fop")  # prefix "foo"
    (created,) = drain(st)
    assert (created.watch_id, created.created, created.canceled, created.revision) == (
        wid,
        True,
        False,
        2,
    )
    txn = ws.write()
    txn.put(b"foo1", b"a")
    txn.put(b"bar", b"not watched")
    txn.put(b"foo2", b"b")
    txn.delete_range(b"foo")
    txn.end()  # 3
    ws.put(b"foo1", b"c")  # 4
    assert event_responses(st) == [
        (
            wid,
            3,
            [
                ("PUT", b"foo1", b"a", 3),
                ("PUT", b"foo2", b"b", 3),
                ("DELETE", b"foo", b"", 3),
            ],
        ),
        (wid, 4, [("PUT", b"foo1", b"c", 4)]),
    ]
    assert not ws.needs_sync


@pytest.mark.parametrize(
    ("key", "range_end", "delivered"),
    [
        (b"b", b"", [b"b"]),  # single key
        (b"b", b"c", [b"b", b"b1"]),  # [key, end)
        (b"b", b"\x00", [b"b", b"b1", b"c"]),  # every key >= key
        (b"", b"\x00", [b"a", b"b", b"b1", b"c"]),  # empty key: from "\x00", i.e. everything
        (b"", b"", []),  # empty key alone: the key "\x00"
    ],
)
def test_watch_range_forms(
    backend: Backend, key: bytes, range_end: bytes, delivered: list[bytes]
) -> None:
    ws = WatchableStore(backend)
    st = ws.new_stream()
    st.watch(key, range_end)
    for k in (b"a", b"b", b"b1", b"c"):
        ws.put(k, b"v")
    got = [ev[1] for _, _, evs in event_responses(st) for ev in evs]
    assert got == delivered


def test_watch_from_the_past_catches_up_then_follows_live_writes(backend: Backend) -> None:
    ws = WatchableStore(backend)
    ws.put(b"k", b"1")  # 2
    ws.put(b"k", b"2")  # 3
    ws.delete_range(b"k")  # 4
    ws.put(b"other", b"x")  # 5
    st = ws.new_stream()
    wid = st.watch(b"k", start_revision=3)
    assert ws.needs_sync
    ws.put(b"k", b"3")  # 6: written while the watcher is unsynced
    assert event_responses(st) == []  # nothing yet: history is read by sync_step
    assert not ws.sync_step()
    ws.put(b"k", b"4")  # 7: the watcher is synced now
    assert event_responses(st) == [
        (wid, 6, [("PUT", b"k", b"2", 3), ("DELETE", b"k", b"", 4), ("PUT", b"k", b"3", 6)]),
        (wid, 7, [("PUT", b"k", b"4", 7)]),
    ]


def test_history_is_read_in_bounded_chunks_without_splitting_txns(backend: Backend) -> None:
    ws = WatchableStore(backend, sync_batch_limit=3)
    for i in range(4):
        txn = ws.write()
        txn.put(b"a%d" % i, b"x")
        txn.put(b"b%d" % i, b"y")
        txn.end()  # revisions 2..5, two changes each
    big = ws.write()
    for i in range(5):
        big.put(b"c%d" % i, b"z")
    big.end()  # 6: one txn larger than the batch limit
    st = ws.new_stream()
    wid = st.watch(b"\x00", b"\x00", start_revision=1)
    steps = 0
    while ws.sync_step():
        steps += 1
    responses = event_responses(st)
    # Every response holds whole txns only.
    revs_per_response = [sorted({ev[3] for ev in evs}) for _, _, evs in responses]
    assert revs_per_response == [[2], [3], [4], [5], [6]]
    assert [len(evs) for _, _, evs in responses] == [2, 2, 2, 2, 5]
    assert all(w == wid for w, _, _ in responses)
    assert steps == 4  # five chunks, the last one returns False


@pytest.mark.parametrize(
    ("filters", "expected_types"),
    [
        ((), ["PUT", "PUT", "DELETE"]),
        ((FILTER_NOPUT,), ["DELETE"]),
        ((FILTER_NODELETE,), ["PUT", "PUT"]),
        ((FILTER_NOPUT, FILTER_NODELETE), []),
    ],
)
@pytest.mark.parametrize("from_history", [False, True])
def test_filters(
    backend: Backend, filters: tuple[int, ...], expected_types: list[str], from_history: bool
) -> None:
    ws = WatchableStore(backend)
    st = ws.new_stream()
    if not from_history:
        st.watch(b"k", filters=filters)
    ws.put(b"k", b"1")
    ws.put(b"k", b"2")
    ws.delete_range(b"k")
    if from_history:
        st.watch(b"k", start_revision=1, filters=filters)
        ws.sync_until_idle()
    got = [ev[0] for _, _, evs in event_responses(st) for ev in evs]
    assert got == expected_types


@pytest.mark.parametrize("from_history", [False, True])
def test_prev_kv(backend: Backend, from_history: bool) -> None:
    ws = WatchableStore(backend)
    st = ws.new_stream()
    if not from_history:
        st.watch(b"k", prev_kv=True)
    ws.put(b"k", b"1")  # 2: create: no prev
    ws.put(b"k", b"2")  # 3: prev is the put at 2
    ws.delete_range(b"k")  # 4: prev is the put at 3
    ws.put(b"k", b"3")  # 5: re-create: no prev
    if from_history:
        st.watch(b"k", start_revision=2, prev_kv=True)
        ws.sync_until_idle()
    responses = [r for r in drain(st) if r.events]
    pairs = []
    for r in responses:
        assert r.prev_kv
        for ev in r.events:
            prev = ev.prev_kv
            pairs.append((ev.mod_revision, None if prev is None else kv_tuple(prev)[:4]))
    assert pairs == [
        (2, None),
        (3, (b"k", b"1", 2, 2)),
        (4, (b"k", b"2", 2, 3)),
        (5, None),
    ]
    # On the wire the previous KeyValue is the event's field 3.
    wire = [ev for r in responses for ev in r.to_proto().events]
    assert [(ev.kv.mod_revision, ev.prev_kv.value) for ev in wire] == [
        (2, b""),
        (3, b"1"),
        (4, b"2"),
        (5, b""),
    ]
    assert [ev.HasField("prev_kv") for ev in wire] == [False, True, True, False]


def test_prev_kv_is_absent_once_compacted(backend: Backend) -> None:
    ws = WatchableStore(backend)
    ws.put(b"k", b"1")  # 2
    ws.put(b"k", b"2")  # 3
    ws.put(b"k", b"3")  # 4
    st = ws.new_stream()
    st.watch(b"k", start_revision=3, prev_kv=True)
    ws.compact(3)  # the prev of revision 3 (at 2) is compacted away
    ws.sync_until_idle()
    (resp,) = [r for r in drain(st) if r.events]
    assert [(ev.mod_revision, ev.prev_kv is not None) for ev in resp.events] == [
        (3, False),
        (4, True),
    ]


def test_cancel(backend: Backend) -> None:
    ws = WatchableStore(backend)
    st = ws.new_stream()
    a = st.watch(b"k")
    b = st.watch(b"k")
    drain(st)
    ws.put(b"k", b"1")
    assert st.cancel(a)
    ws.put(b"k", b"2")
    responses = drain(st)
    assert [(r.watch_id, r.canceled, [e.mod_revision for e in r.events]) for r in responses] == [
        (a, False, [2]),
        (b, False, [2]),
        (a, True, []),
        (b, False, [3]),
    ]
    assert not st.cancel(a)  # unknown now: no response
    assert not st.cancel(12345)
    assert drain(st) == []
    assert ws.watcher_count == 1


def test_cancel_an_unsynced_watcher_and_a_victim(backend: Backend) -> None:
    ws = WatchableStore(backend)
    ws.put(b"k", b"1")
    st = ws.new_stream(buffer_limit=1)
    old = st.watch(b"k", start_revision=1)  # unsynced
    live = st.watch(b"k")
    ws.put(b"k", b"2")  # fills the buffer (live)
    ws.put(b"k", b"3")  # live becomes a victim
    assert ws.slow_watcher_count == 2
    assert st.cancel(old) and st.cancel(live)
    assert ws.watcher_count == 0 and not ws.needs_sync


@pytest.mark.parametrize(
    ("start", "compacted"),
    [(1, True), (4, True), (5, False), (6, False)],
)
def test_watch_from_a_compacted_revision(backend: Backend, start: int, compacted: bool) -> None:
    ws = WatchableStore(backend)
    for i in range(5):
        ws.put(b"k", b"%d" % i)  # 2..6
    ws.compact(5)
    ws.run_compactions()
    st = ws.new_stream()
    wid = st.watch(b"k", start_revision=start)
    ws.sync_until_idle()
    created, *rest = drain(st)
    assert created.created and created.watch_id == wid
    if compacted:
        (resp,) = rest
        assert (resp.watch_id, resp.compact_revision, resp.canceled, resp.events) == (
            wid,
            5,
            True,
            [],
        )
        ws.put(b"k", b"late")
        assert drain(st) == []  # a compacted watcher gets nothing more
        assert st.cancel(wid)  # the client may still cancel it (etcd keeps the id until then)
    else:
        assert [e.mod_revision for r in rest for e in r.events] == list(range(start, 7))


def test_watch_ids_auto_assigned_client_chosen_and_duplicates(backend: Backend) -> None:
    ws = WatchableStore(backend)
    st = ws.new_stream()
    assert st.watch(b"a") == 0
    assert st.watch(b"a", watch_id=2) == 2
    assert st.watch(b"a") == 1
    assert st.watch(b"a") == 3  # auto ids skip the client-chosen 2
    assert st.watch(b"a", watch_id=2) == INVALID_WATCH_ID
    assert st.watch(b"b", b"a") == INVALID_WATCH_ID  # key >= end
    assert st.watch(b"a", start_revision=-1) == INVALID_WATCH_ID
    st.reject("etcdserver: permission denied")
    responses = drain(st)
    assert [(r.watch_id, r.created, r.canceled, r.cancel_reason) for r in responses] == [
        (0, True, False, ""),
        (2, True, False, ""),
        (1, True, False, ""),
        (3, True, False, ""),
        (-1, True, True, "mvcc: duplicate watch ID provided on the WatchStream"),
        (-1, True, True, "mvcc: watcher range is empty"),
        (-1, True, True, "mvcc: required revision has been compacted"),
        (-1, True, True, "etcdserver: permission denied"),
    ]
    # Streams are independent: ids restart at 0.
    assert ws.new_stream().watch(b"a") == 0


def test_many_watchers_on_one_stream(backend: Backend) -> None:
    ws = WatchableStore(backend)
    st = ws.new_stream()
    ids = {st.watch(b"k%d" % i): i for i in range(50)}
    whole = st.watch(b"k", b"l")
    drain(st)
    txn = ws.write()
    for i in range(50):
        txn.put(b"k%d" % i, b"v")
    txn.end()
    responses = drain(st)
    by_id = {r.watch_id: [ev.key for ev in r.events] for r in responses}
    assert len(responses) == 51
    for wid, i in ids.items():
        assert by_id[wid] == [b"k%d" % i]
    assert by_id[whole] == [b"k%d" % i for i in range(50)]  # txn order, one response


def test_future_start_revision_waits_for_it(backend: Backend) -> None:
    ws = WatchableStore(backend)
    st = ws.new_stream()
    st.watch(b"k", start_revision=4)
    for i in range(4):
        ws.put(b"k", b"%d" % i)  # 2..5
    assert [ev[3] for _, _, evs in event_responses(st) for ev in evs] == [4, 5]


def test_slow_consumer_does_not_block_writers_and_loses_nothing(backend: Backend) -> None:
    sync_requests: list[int] = []
    ws = WatchableStore(backend, on_sync_needed=lambda: sync_requests.append(1))
    st = ws.new_stream(buffer_limit=2)
    wid = st.watch(b"k")
    other = ws.new_stream()
    other.watch(b"k")
    for i in range(10):
        ws.put(b"k", b"%d" % i)  # 2..11: the writer never waits
    assert ws.current_revision == 11
    assert ws.slow_watcher_count == 1 and sync_requests
    assert len([r for r in drain(other) if r.events]) == 10  # other streams unaffected
    seen: list[int] = []
    for _ in range(20):
        seen += [ev.mod_revision for r in drain(st) if r.events for ev in r.events]
        ws.sync_step()
    ws.put(b"k", b"last")  # 12: back in sync, delivered live
    seen += [ev.mod_revision for r in drain(st) if r.events for ev in r.events]
    assert seen == list(range(2, 13))
    assert ws.slow_watcher_count == 0
    assert all(r.watch_id == wid for r in drain(st))


def test_progress_request_when_synced_and_deferred_when_not(backend: Backend) -> None:
    ws = WatchableStore(backend)
    ws.put(b"k", b"1")  # 2
    st = ws.new_stream()
    st.watch(b"k")
    drain(st)
    st.request_progress()
    (p,) = drain(st)
    assert (p.watch_id, p.revision, p.is_progress) == (INVALID_WATCH_ID, 2, True)
    st.watch(b"k", start_revision=1)  # unsynced
    drain(st)
    st.request_progress()
    assert drain(st) == []  # deferred until every watcher is synced
    ws.put(b"k", b"2")  # 3
    ws.sync_until_idle()
    responses = drain(st)
    assert responses[-1].watch_id == INVALID_WATCH_ID and responses[-1].revision == 3
    assert all(r.events for r in responses[:-1])  # the progress comes after the events
    late = st.watch(b"k", start_revision=1)
    st.request_progress()
    assert st.cancel(late)  # canceling the only unsynced watcher releases the progress
    assert [(r.watch_id, r.canceled) for r in drain(st)] == [
        (late, False),
        (late, True),
        (INVALID_WATCH_ID, False),
    ]
    empty = ws.new_stream()
    empty.request_progress()
    assert [(r.watch_id, r.revision) for r in drain(empty)] == [(INVALID_WATCH_ID, 3)]


def test_progress_notify_ticks(backend: Backend) -> None:
    ws = WatchableStore(backend)
    st = ws.new_stream()
    quiet = st.watch(b"q", progress_notify=True)
    busy = st.watch(b"b", progress_notify=True)
    st.watch(b"n")  # did not ask for progress notifications
    drain(st)
    ws.put(b"b", b"1")  # 2
    drain(st)
    st.progress_tick()
    assert [(r.watch_id, r.revision, r.is_progress) for r in drain(st)] == [(quiet, 2, True)]
    st.progress_tick()  # busy sent nothing since the last tick: now it gets one too
    assert sorted(r.watch_id for r in drain(st)) == sorted([quiet, busy])


def test_wakeup_called_when_responses_become_available(backend: Backend) -> None:
    wakeups: list[int] = []
    ws = WatchableStore(backend)
    st = ws.new_stream(wakeup=lambda: wakeups.append(1))
    st.watch(b"k")
    assert len(wakeups) == 1
    ws.put(b"k", b"1")
    assert len(wakeups) == 1  # queue was not empty: no extra wakeup
    drain(st)
    ws.put(b"k", b"2")
    assert len(wakeups) == 2


def test_close_stream_removes_its_watchers(backend: Backend) -> None:
    ws = WatchableStore(backend)
    ws.put(b"k", b"1")
    st = ws.new_stream()
    st.watch(b"k")
    st.watch(b"k", start_revision=1)
    st.close()
    assert ws.watcher_count == 0
    ws.put(b"k", b"2")
    ws.sync_until_idle()
    assert drain(st) == []
    assert st.watch(b"k") == INVALID_WATCH_ID


def test_reopen_moves_watchers_through_history(backend: Backend) -> None:
    ws = WatchableStore(backend)
    st = ws.new_stream()
    st.watch(b"k")
    ws.put(b"k", b"1")  # 2
    drain(st)
    ws.reopen(backend)  # e.g. a snapshot was applied; here the same data
    assert ws.slow_watcher_count == 1
    ws.sync_until_idle()
    ws.put(b"k", b"2")  # 3
    assert [ev[3] for _, _, evs in event_responses(st) for ev in evs] == [3]


HEADER = rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=7, raft_term=3)


def test_encode_matches_protobuf_serialization(backend: Backend) -> None:
    ws = WatchableStore(backend)
    st = ws.new_stream()
    wid = st.watch(b"k", prev_kv=True)
    ws.put(b"k", b"1")
    ws.put(b"k", b"2" * 300)  # a value longer than one varint byte
    ws.delete_range(b"k")
    st.cancel(wid)
    st.watch(b"x", watch_id=5)
    st.watch(b"x", watch_id=5)  # duplicate: watch_id -1, cancel reason
    compacted = WatchResponse(9, 4, compact_revision=3, canceled=True)
    responses = [*drain(st), compacted]
    assert len(responses) == 8
    header = HEADER.SerializeToString()
    for r in responses:
        assert r.encode(header) == r.to_proto(HEADER).SerializeToString(), r
        assert rpc_pb2.WatchResponse.FromString(r.encode(header)) == r.to_proto(HEADER)
    delete = responses[3].to_proto(HEADER).events[0]
    assert delete.type == kv_pb2.Event.DELETE
    assert delete.kv == kv_pb2.KeyValue(key=b"k", mod_revision=4)
    assert delete.prev_kv.value == b"2" * 300


def test_open_streams_and_their_watchers_are_counted(backend: Backend) -> None:
    ws = WatchableStore(backend)
    a, b = ws.new_stream(), ws.new_stream()
    a.watch(b"k")
    a.watch(b"x", b"y")
    b.watch(b"k")
    assert (ws.stream_count, ws.watcher_count) == (2, 3)
    a.close()
    a.close()  # a second close is no second stream gone
    assert (ws.stream_count, ws.watcher_count) == (1, 1)
