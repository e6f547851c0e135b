"""keyIndex/treeIndex: generations, reads at revisions, compaction keep rules (etcd's tables)."""

from __future__ import annotations

import pytest
from pyetcd.mvcc.key_index import KeyIndex, TreeIndex
from pyetcd.mvcc.revision import pack


def new_test_key_index() -> KeyIndex:
    """etcd's ``newTestKeyIndex``::

    {empty}
    {14.0, 14.1, 16.0(t)}
    {8.0, 10.0, 12.0(t)}
    {2.0, 4.0, 6.0(t)}
    """
    ki = KeyIndex(b"foo")
    ki.put(pack(2))
    ki.put(pack(4))
    assert ki.tombstone(pack(6))
    ki.put(pack(8))
    ki.put(pack(10))
    assert ki.tombstone(pack(12))
    ki.put(pack(14))
    ki.put(pack(14, 1))
    assert ki.tombstone(pack(16))
    return ki


def gens(ki: KeyIndex) -> list[list[tuple[int, int]]]:
    return [[(r >> 32, r & 0xFFFFFFFF) for r in g.revs] for g in ki.generations]


FULL = [[(2, 0), (4, 0), (6, 0)], [(8, 0), (10, 0), (12, 0)], [(14, 0), (14, 1), (16, 0)], []]

# at revision -> (modified, created, version) or None
GET_TABLE: dict[int, tuple[tuple[int, int], tuple[int, int], int] | None] = {
    0: None,
    1: None,
    2: ((2, 0), (2, 0), 1),
    3: ((2, 0), (2, 0), 1),
    4: ((4, 0), (2, 0), 2),
    5: ((4, 0), (2, 0), 2),
    6: None,
    7: None,
    8: ((8, 0), (8, 0), 1),
    9: ((8, 0), (8, 0), 1),
    10: ((10, 0), (8, 0), 2),
    11: ((10, 0), (8, 0), 2),
    12: None,
    13: None,
    14: ((14, 1), (14, 0), 2),
    15: ((14, 1), (14, 0), 2),
    16: None,
    17: None,
}


@pytest.mark.parametrize(("at", "expected"), sorted(GET_TABLE.items()))
def test_get_at_revision(
    at: int, expected: tuple[tuple[int, int], tuple[int, int], int] | None
) -> None:
    found = new_test_key_index().get(at)
    if expected is None:
        assert found is None
    else:
        (mm, ms), (cm, cs), ver = expected
        assert found == (pack(mm, ms), pack(cm, cs), ver)


# compact(at) -> (generations left, revisions kept): etcd's TestKeyIndexCompactAndKeep
COMPACT_TABLE: list[tuple[int, list[list[tuple[int, int]]], set[tuple[int, int]]]] = [
    (1, FULL, set()),
    (2, FULL, {(2, 0)}),
    (3, FULL, {(2, 0)}),
    (4, [[(4, 0), (6, 0)], *FULL[1:]], {(4, 0)}),
    (5, [[(4, 0), (6, 0)], *FULL[1:]], {(4, 0)}),
    (6, FULL[1:], set()),  # the tombstone at exactly the compact revision is not kept
    (7, FULL[1:], set()),
    (8, FULL[1:], {(8, 0)}),
    (9, FULL[1:], {(8, 0)}),
    (10, [[(10, 0), (12, 0)], *FULL[2:]], {(10, 0)}),
    (11, [[(10, 0), (12, 0)], *FULL[2:]], {(10, 0)}),
    (12, FULL[2:], set()),
    (13, FULL[2:], set()),
    (14, [[(14, 1), (16, 0)], []], {(14, 1)}),  # only the highest sub of main 14 stays
    (15, [[(14, 1), (16, 0)], []], {(14, 1)}),
    (16, [[]], set()),  # the key is gone entirely
    (17, [[]], set()),
]


@pytest.mark.parametrize(("at", "left", "kept"), COMPACT_TABLE)
def test_compact_and_keep(
    at: int, left: list[list[tuple[int, int]]], kept: set[tuple[int, int]]
) -> None:
    kept_packed = {pack(m, s) for m, s in kept}
    ki = new_test_key_index()
    keep: set[int] = set()
    ki.keep(at, keep)
    assert keep == kept_packed
    assert gens(ki) == FULL  # keep changes nothing
    available: set[int] = set()
    ki.compact(at, available)
    assert available == kept_packed
    assert gens(ki) == left
    assert ki.is_empty() == (left == [[]])


def test_incremental_compaction_matches_one_shot() -> None:
    ki = new_test_key_index()
    for at, left, kept in COMPACT_TABLE:
        available: set[int] = set()
        ki.compact(at, available)
        assert gens(ki) == left, at
        assert available == {pack(m, s) for m, s in kept}, at
        if ki.is_empty():
            break


def test_compacted_key_index_still_answers_reads_above_compaction() -> None:
    ki = new_test_key_index()
    ki.compact(10, set())
    for at in range(10, 18):
        assert ki.get(at) == new_test_key_index().get(at), at


def test_tombstone_of_dead_key_is_refused() -> None:
    ki = KeyIndex(b"k")
    ki.put(pack(2))
    assert ki.tombstone(pack(3))
    assert not ki.tombstone(pack(4))
    with pytest.raises(AssertionError):
        ki.put(pack(3))  # revisions only go forward


def test_tree_index_ranges_counts_and_compaction() -> None:
    t = TreeIndex()
    t.put(b"a", pack(2))
    t.put(b"b", pack(3))
    t.put(b"c", pack(4))
    assert t.tombstone(b"b", pack(5))
    assert not t.tombstone(b"zz", pack(6))
    assert t.live_keys == 2
    assert t.revisions(b"a", b"\x00", 5) == ([pack(2), pack(4)], 2)
    assert t.revisions(b"a", b"\x00", 4, limit=1) == ([pack(2)], 3)
    assert t.count(b"a", b"c", 3) == 2
    assert t.keep(5) == {pack(2), pack(4)}
    kept: set[int] = set()
    cursor = t.compact_chunk(5, None, 2, kept)
    assert cursor == b"b"
    assert t.compact_chunk(5, cursor, 2, kept) is None
    assert kept == {pack(2), pack(4)}
    assert len(t) == 2 and t.key_index(b"b") is None  # fully deleted key left the index
