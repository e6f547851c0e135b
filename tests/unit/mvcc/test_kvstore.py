"""KV store semantics: revisions, versions, write txns, ranges, leases (etcd 3.5)."""

from __future__ import annotations

import pytest
from pyetcd.backend.contract import KEY, Backend
from pyetcd.mvcc import DELETE, PUT, ErrCompacted, ErrFutureRev, KVStore
from pyetcd.mvcc.revision import rev_to_bytes, tombstone_bytes
from pyetcd.proto.mvccpb import kv_pb2

from tests.unit.mvcc.helpers import keys_of, kv_tuple, kv_tuples


def test_new_store_starts_at_revision_1_uncompacted(backend: Backend) -> None:
    s = KVStore(backend)
    assert (s.current_revision, s.compact_revision, s.key_count) == (1, -1, 0)
    r = s.range(b"foo")
    assert (r.kvs, r.count, r.rev) == ([], 0, 1)


def test_revisions_and_versions_across_put_delete_recreate(backend: Backend) -> None:
    s = KVStore(backend)
    # (operation, expected store revision after it, expected (value, create, mod, version) or None)
    steps: list[tuple[str, int, tuple[bytes, int, int, int] | None]] = [
        ("put a", 2, (b"a", 2, 2, 1)),
        ("put b", 3, (b"b", 2, 3, 2)),
        ("put c", 4, (b"c", 2, 4, 3)),
        ("delete", 5, None),
        ("delete", 5, None),  # deleting a missing key changes nothing: no new revision
        ("put d", 6, (b"d", 6, 6, 1)),  # re-created: new create_revision, version restarts
        ("put e", 7, (b"e", 6, 7, 2)),
    ]
    for op, rev, expect in steps:
        if op == "delete":
            s.delete_range(b"k")
        else:
            s.put(b"k", op.split()[1].encode())
        assert s.current_revision == rev, op
        r = s.range(b"k")
        if expect is None:
            assert r.kvs == [] and r.count == 0
        else:
            value, create, mod, ver = expect
            assert kv_tuples(r) == [(b"k", value, create, mod, ver, 0)], op
    assert s.key_count == 1


def test_history_reads_at_each_revision(backend: Backend) -> None:
    s = KVStore(backend)
    s.put(b"k", b"v1")  # 2
    s.put(b"k", b"v2")  # 3
    s.delete_range(b"k")  # 4
    s.put(b"k", b"v3")  # 5
    s.put(b"other", b"o")  # 6
    expected: dict[int, tuple[bytes, int, int, int] | None] = {
        1: None,
        2: (b"v1", 2, 2, 1),
        3: (b"v2", 2, 3, 2),
        4: None,
        5: (b"v3", 5, 5, 1),
        6: (b"v3", 5, 5, 1),
    }
    for rev, expect in expected.items():
        r = s.range(b"k", rev=rev)
        assert r.rev == 6  # the header revision is always the store's current revision
        if expect is None:
            assert r.kvs == [], rev
        else:
            value, create, mod, ver = expect
            assert kv_tuples(r) == [(b"k", value, create, mod, ver, 0)], rev


def test_txn_changes_share_main_revision_with_increasing_subs(backend: Backend) -> None:
    s = KVStore(backend)
    s.put(b"gone", b"x")  # 2
    txn = s.write()
    txn.put(b"a", b"1")
    txn.put(b"b", b"2")
    n, _ = txn.delete_range(b"gone")
    txn.put(b"a", b"3")  # same key twice in one txn: version 2, same main revision
    events = txn.end()
    assert n == 1
    assert s.current_revision == 3
    assert [(e.type, e.key, e.mod_revision) for e in events] == [
        (PUT, b"a", 3),
        (PUT, b"b", 3),
        (DELETE, b"gone", 3),
        (PUT, b"a", 3),
    ]
    keys = [k for k, _ in backend.range(KEY, rev_to_bytes(3, 0))]
    assert keys == [
        rev_to_bytes(3, 0),
        rev_to_bytes(3, 1),
        tombstone_bytes(3, 2),
        rev_to_bytes(3, 3),
    ]
    assert kv_tuples(s.range(b"a")) == [(b"a", b"3", 3, 3, 2, 0)]
    # The DELETE event's KeyValue carries the key and the deletion's revision only.
    assert kv_tuple(events[2].kv) == (b"gone", b"", 0, 3, 0, 0)


def test_txn_that_changes_nothing_keeps_revision(backend: Backend) -> None:
    s = KVStore(backend)
    s.put(b"a", b"1")
    txn = s.write()
    assert txn.range(b"a").count == 1
    assert txn.delete_range(b"zzz") == (0, [])
    assert txn.end() == []
    assert s.current_revision == 2
    assert s.delete_range(b"b", b"c") == (0, 2)


def test_reads_in_a_write_txn_see_its_own_writes(backend: Backend) -> None:
    s = KVStore(backend)
    s.put(b"a", b"1")  # 2
    txn = s.write()
    assert txn.rev == 2
    txn.put(b"a", b"2")
    txn.put(b"b", b"x")
    assert txn.rev == 3
    assert kv_tuples(txn.range(b"a", b"\x00")) == [
        (b"a", b"2", 2, 3, 2, 0),
        (b"b", b"x", 3, 3, 1, 0),
    ]
    assert txn.range(b"a", rev=2).count == 1  # history inside the txn still works
    with pytest.raises(ErrFutureRev):
        txn.range(b"a", rev=4)
    # Outside readers do not see the txn before it ends (its revision is not published).
    assert kv_tuples(s.range(b"a")) == [(b"a", b"1", 2, 2, 1, 0)]
    assert s.range(b"b").count == 0
    txn.delete_range(b"a", b"c")
    assert txn.range(b"a", b"\x00").count == 0
    txn.end()
    assert s.current_revision == 3 and s.range(b"a", b"\x00").count == 0


def test_only_one_write_txn_and_end_once(backend: Backend) -> None:
    s = KVStore(backend)
    txn = s.write()
    with pytest.raises(RuntimeError):
        s.write()
    txn.end()
    with pytest.raises(RuntimeError):
        txn.end()
    s.write().end()


def test_put_and_delete_return_previous_key_values(backend: Backend) -> None:
    s = KVStore(backend)
    txn = s.write()
    raw, prev = txn.put(b"a", b"1", prev_kv=True)
    assert prev is None and kv_tuple(raw) == (b"a", b"1", 2, 2, 1, 0)
    txn.end()
    txn = s.write()
    _, prev2 = txn.put(b"a", b"2", prev_kv=True)
    assert prev2 == raw
    _, no_prev = txn.put(b"a", b"3")
    assert no_prev is None  # only read when asked for
    txn.end()
    s.put(b"b", b"x")
    txn = s.write()
    n, prevs = txn.delete_range(b"a", b"c", prev_kv=True)
    txn.end()
    assert n == 2
    assert [kv_tuple(p)[:2] for p in prevs] == [(b"a", b"3"), (b"b", b"x")]


KEYS = [b"a", b"ab", b"abc", b"b", b"c", b"c\x00", b"d"]


@pytest.mark.parametrize(
    ("key", "end", "expected"),
    [
        (b"ab", b"", [b"ab"]),  # empty end: just the key
        (b"zz", b"", []),
        (b"ab", b"b", [b"ab", b"abc"]),  # [key, end)
        (b"ab", b"ac", [b"ab", b"abc"]),  # prefix "ab"
        (b"a", b"\x00", KEYS),  # end "\x00": every key >= key
        (b"c", b"\x00", [b"c", b"c\x00", b"d"]),
        (b"\x00", b"\x00", KEYS),  # all keys
        (b"c", b"c\x00", [b"c"]),
        (b"c", b"a", []),  # end before key: nothing
        (b"b", b"b", []),
    ],
)
def test_range_end_forms(backend: Backend, key: bytes, end: bytes, expected: list[bytes]) -> None:
    s = KVStore(backend)
    for k in KEYS:
        s.put(k, b"v-" + k)
    r = s.range(key, end)
    assert keys_of(r) == expected
    assert r.count == len(expected)
    assert s.range(key, end, count_only=True).count == len(expected)
    assert s.range(key, end, count_only=True).kvs == []


@pytest.mark.parametrize(
    ("limit", "n_kvs"),
    [(0, 7), (1, 1), (3, 3), (7, 7), (8, 7), (-1, 7)],
)
def test_range_limit_truncates_but_count_is_total(backend: Backend, limit: int, n_kvs: int) -> None:
    s = KVStore(backend)
    for k in KEYS:
        s.put(k, b"v")
    r = s.range(b"\x00", b"\x00", limit=limit)
    assert keys_of(r) == KEYS[:n_kvs]
    assert r.count == len(KEYS)


def test_range_limit_and_count_at_past_revision(backend: Backend) -> None:
    s = KVStore(backend)
    for k in KEYS:
        s.put(k, b"v")  # revisions 2..8
    s.delete_range(b"a", b"b")  # 9: deletes a, ab, abc
    assert s.range(b"\x00", b"\x00").count == 4
    r = s.range(b"\x00", b"\x00", rev=8, limit=2)
    assert keys_of(r) == [b"a", b"ab"] and r.count == 7
    r = s.range(b"\x00", b"\x00", rev=4)
    assert keys_of(r) == [b"a", b"ab", b"abc"]
    assert s.range(b"\x00", b"\x00", rev=4, count_only=True).count == 3


def test_range_revision_errors(backend: Backend) -> None:
    s = KVStore(backend)
    for i in range(5):
        s.put(b"k", str(i).encode())  # revisions 2..6
    with pytest.raises(ErrFutureRev) as fut:
        s.range(b"k", rev=7)
    assert str(fut.value) == "mvcc: required revision is a future revision"
    s.compact(4)
    with pytest.raises(ErrCompacted) as comp:
        s.range(b"k", rev=3)
    assert str(comp.value) == "mvcc: required revision has been compacted"
    # etcd serves a read exactly at the compact revision (rangeKeys checks rev < compacted).
    assert kv_tuples(s.range(b"k", rev=4)) == [(b"k", b"2", 2, 4, 3, 0)]
    assert s.range(b"k", rev=0).count == 1


def test_lease_attach_detach_reported(backend: Backend) -> None:
    changes: list[tuple[bytes, int, int]] = []
    s = KVStore(backend, on_lease_change=lambda k, old, new: changes.append((k, old, new)))
    s.put(b"a", b"1", lease=7)
    s.put(b"a", b"2", lease=7)  # same lease: nothing to report
    s.put(b"a", b"3", lease=9)
    s.put(b"b", b"1", lease=9)
    assert s.lease_of(b"a") == 9
    s.put(b"a", b"4")  # put without lease detaches
    s.delete_range(b"b")  # delete detaches
    s.put(b"c", b"1")  # no lease, nothing to report
    assert changes == [
        (b"a", 0, 7),
        (b"a", 7, 9),
        (b"b", 0, 9),
        (b"a", 9, 0),
        (b"b", 9, 0),
    ]
    assert s.lease_of(b"a") == 0 and s.lease_of(b"b") == 0 and s.lease_of(b"zz") == 0
    s.put(b"d", b"1", lease=5)
    assert list(s.leased_keys()) == [(b"d", 5)]
    assert kv_tuples(s.range(b"d")) == [(b"d", b"1", 9, 9, 1, 5)]


def test_key_count_tracks_live_keys(backend: Backend) -> None:
    s = KVStore(backend)
    for k in KEYS:
        s.put(k, b"v")
    s.put(b"a", b"again")
    assert s.key_count == len(KEYS)
    s.delete_range(b"a", b"b")
    assert s.key_count == len(KEYS) - 3
    s.put(b"ab", b"back")
    assert s.key_count == len(KEYS) - 2


def test_range_result_decoded(backend: Backend) -> None:
    s = KVStore(backend)
    s.put(b"x", b"1", lease=3)
    (kv,) = s.range(b"x").decoded()
    assert kv == kv_pb2.KeyValue(
        key=b"x", value=b"1", create_revision=2, mod_revision=2, version=1, lease=3
    )


def test_range_returns_stored_bytes_without_reencoding(backend: Backend) -> None:
    s = KVStore(backend)
    s.put(b"x", b"1")
    stored = backend.get(KEY, rev_to_bytes(2, 0))
    assert s.range(b"x").kvs == [stored]
    assert s.range(b"x", b"y").kvs == [stored]
