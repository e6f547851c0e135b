"""The pure keyspace analysis on hand-made `key`, `lease` and `meta` entries whose answer is
worked out by hand: live keys and tombstones, history, prefixes at several depths and
separators, the "other" remainder, biggest and hot keys, leases with and without keys, keys
naming a missing lease, age bands, compaction revisions, and entries etcd would not write."""

from __future__ import annotations

import random

import pytest
from pyetcd.analyze import AnalyzeError, Options, analyze, key_prefix
from pyetcd.analyze.report import AgeBand, LeaseInfo, MissingLease, Usage
from pyetcd.mvcc.revision import rev_to_bytes

from tests.unit.analyze.records import Entry, delete, history, lease, put, stored

POD_A = b"/registry/pods/default/a"  # 24 bytes, 6 revisions
POD_B = b"/registry/pods/kube-system/b"  # 28 bytes, the biggest value, on lease 1
EVENT = b"/registry/events/default/e1"  # on lease 1, then deleted
OTHER = b"/other"  # names lease 99, which does not exist
FOO = b"foo"

KEYS = [
    *history(POD_A, 2, 6, b"a" * 10),  # revisions 2..7
    put(8, POD_B, b"b" * 100, lease=1),
    put(9, EVENT, b"e" * 5, lease=1),
    put(10, OTHER, b"o", lease=99),
    delete(11, EVENT),
    put(12, FOO, b"bar"),
]
LEASES = [lease(1, 60), lease(2, 30, remaining=12)]
META = [
    (b"consistent_index", (40).to_bytes(8, "big")),
    (b"finishedCompactRev", rev_to_bytes(1)),
    (b"scheduledCompactRev", rev_to_bytes(1)),
]
LIVE_BYTES = (24 + 10) + (28 + 100) + (6 + 1) + (3 + 3)


def test_totals_count_live_keys_history_and_tombstones() -> None:
    a = analyze(KEYS, LEASES, META)
    assert a.revision == 12
    assert (a.compact_revision, a.scheduled_compact_revision) == (1, 1)
    assert a.totals == Usage(
        live_keys=4, live_bytes=LIVE_BYTES, revisions=11, stored_bytes=stored(KEYS)
    )
    assert a.tombstones == 1


@pytest.mark.parametrize(
    ("key", "separator", "depth", "prefix"),
    [
        (b"/registry/pods/default/a", b"/", 1, b"/registry/"),
        (b"/registry/pods/default/a", b"/", 2, b"/registry/pods/"),
        (b"/registry/pods/default/a", b"/", 3, b"/registry/pods/default/"),
        (b"/registry/pods/default/a", b"/", 4, b"/registry/pods/default/a"),  # fewer: whole key
        (b"registry/pods/x", b"/", 2, b"registry/pods/"),  # no leading separator
        (b"/other", b"/", 2, b"/other"),
        (b"/", b"/", 1, b"/"),
        (b"", b"/", 2, b""),
        (b"app:users:1", b":", 2, b"app:users:"),
        (b"app::users::1", b"::", 1, b"app::"),
        (b"::app::users::1", b"::", 2, b"::app::users::"),
        (b"a//b", b"/", 2, b"a//"),  # an empty segment counts
    ],
)
def test_key_prefix(key: bytes, separator: bytes, depth: int, prefix: bytes) -> None:
    assert key_prefix(key, separator, depth) == prefix


def _by_prefix(depth: int) -> dict[bytes, Usage]:
    a = analyze(KEYS, LEASES, META, Options(depth=depth))
    assert a.other.prefixes == 0
    return {p.prefix: p.usage for p in a.prefixes}


def test_prefixes_at_depth_1_2_and_3() -> None:
    pods = Usage(2, (24 + 10) + (28 + 100), 7, stored(KEYS[:7]))
    events = Usage(0, 0, 2, stored([KEYS[7], KEYS[9]]))
    other = Usage(1, 7, 1, stored([KEYS[8]]))
    foo = Usage(1, 6, 1, stored([KEYS[10]]))
    assert _by_prefix(2) == {
        b"/registry/pods/": pods,
        b"/registry/events/": events,
        b"/other": other,
        b"foo": foo,
    }
    registry = Usage(2, pods.live_bytes, 9, pods.stored_bytes + events.stored_bytes)
    assert _by_prefix(1) == {b"/registry/": registry, b"/other": other, b"foo": foo}
    assert _by_prefix(3) == {
        b"/registry/pods/default/": Usage(1, 34, 6, stored(KEYS[:6])),
        b"/registry/pods/kube-system/": Usage(1, 128, 1, stored([KEYS[6]])),
        b"/registry/events/default/": events,
        b"/other": other,
        b"foo": foo,
    }


def test_prefixes_are_sorted_by_stored_bytes() -> None:
    a = analyze(KEYS, LEASES, META)
    sizes = [p.usage.stored_bytes for p in a.prefixes]
    assert sizes == sorted(sizes, reverse=True)
    assert a.prefixes[0].prefix == b"/registry/pods/"


def test_other_separator() -> None:
    entries = [
        put(2, b"app:users:1", b"x" * 50),
        put(3, b"app:users:2", b"x" * 50),
        put(4, b"app:cfg", b"y"),
        put(5, b"/registry/pods/p", b"z"),
    ]
    a = analyze(entries, options=Options(separator=b":", depth=2))
    assert [(p.prefix, p.usage.live_keys) for p in a.prefixes] == [
        (b"app:users:", 2),
        (b"/registry/pods/p", 1),  # no ':' in it: the key is its own prefix
        (b"app:cfg", 1),
    ]


@pytest.mark.parametrize("top", [1, 2, 3])
def test_other_remainder_adds_up_to_the_totals(top: int) -> None:
    a = analyze(KEYS, LEASES, META, Options(depth=2, top=top))
    assert len(a.prefixes) == top
    assert a.other.prefixes == 4 - top
    for field in ("live_keys", "live_bytes", "revisions", "stored_bytes"):
        listed = sum(getattr(p.usage, field) for p in a.prefixes)
        assert listed + getattr(a.other.usage, field) == getattr(a.totals, field), field
    assert a.other.usage.revisions > 0


def test_biggest_keys_are_live_keys_by_value_size() -> None:
    a = analyze(KEYS, LEASES, META)
    assert [(k.key, k.value_size) for k in a.biggest_keys] == [
        (POD_B, 100),
        (POD_A, 10),
        (FOO, 3),
        (OTHER, 1),
    ]
    pod_a = a.biggest_keys[1]
    assert (pod_a.create_revision, pod_a.mod_revision, pod_a.version) == (2, 7, 6)
    assert (pod_a.revisions, pod_a.stored_bytes, pod_a.live) == (6, stored(KEYS[:6]), True)
    assert a.biggest_keys[0].lease == 1
    assert len(analyze(KEYS, options=Options(top=2)).biggest_keys) == 2


def test_hot_keys_count_history_and_tombstones() -> None:
    a = analyze(KEYS, LEASES, META)
    assert [(k.key, k.revisions, k.live) for k in a.hot_keys] == [
        (POD_A, 6, True),
        (EVENT, 2, False),  # put + tombstone: still stored until compacted
    ]
    event = a.hot_keys[1]
    assert (event.mod_revision, event.value_size, event.version, event.lease) == (11, 0, 0, 0)


def test_leases_with_and_without_keys_and_missing_leases() -> None:
    a = analyze(KEYS, LEASES, META)
    assert a.leases == (
        LeaseInfo(id=1, ttl=60, remaining_ttl=0, live_keys=1, live_bytes=28 + 100),
        LeaseInfo(id=2, ttl=30, remaining_ttl=12, live_keys=0, live_bytes=0),
    )
    assert [lease.id for lease in a.leases_without_keys] == [2]
    assert a.missing_leases == (MissingLease(id=99, live_keys=1, keys=(OTHER,)),)


def test_missing_lease_lists_at_most_top_keys_smallest_first() -> None:
    entries = [put(2 + i, f"/k{9 - i}".encode(), lease=7) for i in range(5)]
    a = analyze(entries, options=Options(top=3))
    assert a.missing_leases == (MissingLease(id=7, live_keys=5, keys=(b"/k5", b"/k6", b"/k7")),)


def test_ages_are_decades_of_revisions_with_gaps() -> None:
    entries = [put(1, b"/old", b"x"), put(2000, b"/new", b"yy"), put(2001, b"/newest", b"z")]
    a = analyze(entries)
    assert a.revision == 2001
    assert a.ages == (
        AgeBand(0, 9, 2, (4 + 2) + (7 + 1)),
        AgeBand(10, 99, 0, 0),
        AgeBand(100, 999, 0, 0),
        AgeBand(1000, 9999, 1, 4 + 1),
    )
    assert analyze(KEYS).ages == (AgeBand(0, 9, 4, LIVE_BYTES),)


def test_order_of_entries_does_not_matter() -> None:
    shuffled = list(KEYS)
    random.Random(7).shuffle(shuffled)
    assert shuffled != KEYS
    assert analyze(shuffled, LEASES, META) == analyze(KEYS, LEASES, META)


def test_a_key_recreated_after_deletion_is_live_with_its_new_revision() -> None:
    entries = [
        put(2, b"/k", b"old"),
        delete(3, b"/k"),
        put(4, b"/k", b"new!", create=4),
        put(5, b"/j", b"1", sub=0),
        delete(5, b"/k", sub=1),  # a txn: put /j and delete /k at revision 5
    ]
    a = analyze(entries[:3])
    assert a.totals == Usage(1, 2 + 4, 3, stored(entries[:3]))
    assert a.biggest_keys[0].create_revision == 4
    b = analyze(entries)
    assert (b.totals.live_keys, b.tombstones, b.revision) == (1, 2, 5)
    assert [k.key for k in b.biggest_keys] == [b"/j"]


def test_compaction_revisions_and_revision_bump_marker() -> None:
    bumped = 1_000_012
    meta = [
        (b"finishedCompactRev", rev_to_bytes(5)),
        (b"scheduledCompactRev", rev_to_bytes(bumped)),
    ]
    # etcdutl restore --bump-revision writes an empty KeyValue at the bumped revision.
    marker: Entry = (rev_to_bytes(bumped), b"")
    a = analyze([*KEYS, marker], LEASES, meta)
    assert (a.revision, a.compact_revision, a.scheduled_compact_revision) == (bumped, 5, bumped)
    assert a.totals.live_keys == 4
    assert a.totals.revisions == 12
    assert {p.prefix: p.usage for p in a.prefixes}[b""] == Usage(0, 0, 1, 17)
    # Without a `key` entry at it, a scheduled compaction still sets the current revision.
    assert analyze(KEYS, meta=meta).revision == bumped
    assert analyze([]).revision == 0


def test_empty_db() -> None:
    a = analyze([], [lease(5, 10)])
    assert a.totals == Usage()
    assert (a.prefixes, a.biggest_keys, a.hot_keys, a.ages) == ((), (), (), ())
    assert a.other.prefixes == 0
    assert [lease.id for lease in a.leases_without_keys] == [5]


@pytest.mark.parametrize(
    ("keys", "leases", "meta", "message"),
    [
        ([(b"\x00" * 16, b"")], [], [], "key bucket: entry 0000.* is not a revision"),
        ([(rev_to_bytes(3) + b"x", b"")], [], [], "key bucket: entry .* is not a revision"),
        ([(b"\x00" * 8 + b"-" + b"\x00" * 8, b"")], [], [], "is not a revision"),
        (
            [(rev_to_bytes(3, 1), b"\x0a\x05ab")],
            [],
            [],
            r"key bucket: the value at revision 3_1 is not an mvccpb.KeyValue",
        ),
        ([], [(b"\x01\x02", b"")], [], "lease bucket: key 0102 is not an 8-byte lease ID"),
        (
            [],
            [((10).to_bytes(8, "big"), b"\x08")],
            [],
            "lease bucket: the value of lease a is not a leasepb.Lease",
        ),
        ([], [], [(b"finishedCompactRev", b"\x01")], "meta bucket: finishedCompactRev is not"),
    ],
)
def test_entries_etcd_would_not_write_are_errors(
    keys: list[Entry], leases: list[Entry], meta: list[Entry], message: str
) -> None:
    with pytest.raises(AnalyzeError, match=message):
        analyze(keys, leases, meta)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"separator": b""}, "the separator must not be empty"),
        ({"depth": 0}, "depth must be at least 1, got 0"),
        ({"top": 0}, "top must be at least 1, got 0"),
    ],
)
def test_options_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Options(**kwargs)  # type: ignore[arg-type]
