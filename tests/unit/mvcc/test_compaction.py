"""Compaction: errors, keep rules in the backend, batching, reads above the compact revision."""

from __future__ import annotations

import pytest
from pyetcd.backend.contract import KEY, META, Backend
from pyetcd.mvcc import Compaction, ErrCompacted, ErrFutureRev, KVStore
from pyetcd.mvcc.revision import bytes_to_rev, rev_to_bytes

from tests.unit.mvcc.helpers import apply_random_history, kv_tuples, snapshot_reads


def stored_revisions(backend: Backend) -> list[tuple[int, int, bool]]:
    return [(*bytes_to_rev(k), len(k) == 18) for k, _ in backend.range(KEY, b"")]


def build_history(s: KVStore) -> None:
    s.put(b"a", b"1")  # 2
    s.put(b"a", b"2")  # 3
    s.put(b"b", b"1")  # 4
    s.delete_range(b"b")  # 5 (tombstone)
    s.put(b"a", b"3")  # 6
    s.put(b"c", b"1")  # 7
    s.delete_range(b"c")  # 8 (tombstone)
    s.put(b"c", b"2")  # 9


# compact revision -> what stays in the key bucket: (main, sub, is_tombstone)
KEEP_TABLE = [
    (2, [(2, 0, False), (3, 0, False), (4, 0, False), (5, 0, True), (6, 0, False), (7, 0, False),
         (8, 0, True), (9, 0, False)]),
    (3, [(3, 0, False), (4, 0, False), (5, 0, True), (6, 0, False), (7, 0, False),
         (8, 0, True), (9, 0, False)]),
    (4, [(3, 0, False), (4, 0, False), (5, 0, True), (6, 0, False), (7, 0, False),
         (8, 0, True), (9, 0, False)]),
    # b's tombstone at exactly 5 goes, with b's older put
    (5, [(3, 0, False), (6, 0, False), (7, 0, False), (8, 0, True), (9, 0, False)]),
    (7, [(6, 0, False), (7, 0, False), (8, 0, True), (9, 0, False)]),
    (8, [(6, 0, False), (9, 0, False)]),
    (9, [(6, 0, False), (9, 0, False)]),
]  # fmt: skip


@pytest.mark.parametrize(("at", "left"), KEEP_TABLE)
def test_compaction_keeps_latest_non_tombstone_revision_per_key(
    backend: Backend, at: int, left: list[tuple[int, int, bool]]
) -> None:
    s = KVStore(backend)
    build_history(s)
    before = snapshot_reads(s, range(at, 10))
    job = s.compact(at)
    assert s.compact_revision == at
    assert backend.get(META, b"scheduledCompactRev") == rev_to_bytes(at)
    assert backend.get(META, b"finishedCompactRev") is None
    s.run_compactions()
    assert job.done
    assert backend.get(META, b"finishedCompactRev") == rev_to_bytes(at)
    assert stored_revisions(backend) == left
    assert snapshot_reads(s, range(at, 10)) == before


def test_compact_errors(backend: Backend) -> None:
    s = KVStore(backend)
    build_history(s)
    with pytest.raises(ErrFutureRev):
        s.compact(10)
    s.compact(5)
    for rev in (1, 4, 5):
        with pytest.raises(ErrCompacted) as err:
            s.compact(rev)
        assert str(err.value) == "mvcc: required revision has been compacted"
    s.compact(9)  # the current revision can be compacted
    assert s.compact_revision == 9
    s.run_compactions()
    assert s.pending_compactions == []


def test_compacted_revisions_unreadable_before_the_backend_is_cleaned(backend: Backend) -> None:
    s = KVStore(backend)
    build_history(s)
    s.compact(6)
    assert len(s.pending_compactions) == 1
    with pytest.raises(ErrCompacted):
        s.range(b"a", rev=5)
    assert kv_tuples(s.range(b"a", rev=6)) == [(b"a", b"3", 2, 6, 3, 0)]


def test_compaction_runs_in_bounded_steps_interleaved_with_writes(backend: Backend) -> None:
    s = KVStore(backend, compaction_batch_limit=3)
    for i in range(20):
        s.put(b"k%d" % (i % 4), b"v%d" % i)  # revisions 2..21
    job = s.compact(18)
    steps = 0
    while s.compaction_step():
        steps += 1
        s.put(b"k0", b"during-%d" % steps)  # writes between steps must not be disturbed
    assert job.done
    # index pass: 4 keys in chunks of 3 -> 2 steps; backend pass: 17 entries <= 18 -> 6 steps
    assert steps + 1 == 2 + 6
    assert job.deleted == 13  # 17 revisions <= 18, one kept for each of the 4 keys
    assert [(m, sub) for m, sub, _ in stored_revisions(backend)][:4] == [
        (15, 0),
        (16, 0),
        (17, 0),
        (18, 0),
    ]
    assert kv_tuples(s.range(b"k0"))[0][1] == b"during-%d" % steps


def test_queued_compactions_run_in_order_with_done_callbacks(backend: Backend) -> None:
    s = KVStore(backend, compaction_batch_limit=2)
    build_history(s)
    done: list[int] = []
    first = s.compact(4)
    second = s.compact(7)
    first.add_done_callback(lambda j: done.append(j.revision))
    second.add_done_callback(lambda j: done.append(j.revision))
    s.run_compactions()
    assert done == [4, 7]
    late: list[Compaction] = []
    second.add_done_callback(late.append)  # already done: called at once
    assert late == [second]
    assert backend.get(META, b"finishedCompactRev") == rev_to_bytes(7)


@pytest.mark.parametrize("seed", range(6))
def test_random_histories_read_the_same_above_compaction(backend: Backend, seed: int) -> None:
    s = KVStore(backend, compaction_batch_limit=7)
    apply_random_history(s, seed)
    cur = s.current_revision
    at = 2 + seed * (cur - 2) // 6
    before = snapshot_reads(s, range(at, cur + 1))
    counts = {rev: s.range(b"\x00", b"\x00", rev=rev, count_only=True).count for rev in before}
    s.compact(at)
    s.run_compactions()
    assert snapshot_reads(s, range(at, cur + 1)) == before
    assert {
        rev: s.range(b"\x00", b"\x00", rev=rev, count_only=True).count for rev in before
    } == counts
    # Nothing at or below `at` is left but one live revision per key alive at `at`.
    alive_at = len(before[at])
    assert sum(1 for m, _, _ in stored_revisions(backend) if m <= at) == alive_at
