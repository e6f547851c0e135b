"""Re-opening a store on the same backend: index, revisions, leases, interrupted compactions."""

from __future__ import annotations

import pytest
from pyetcd.backend.contract import KEY, META, Backend
from pyetcd.mvcc import ErrCompacted, KVStore
from pyetcd.mvcc.revision import rev_to_bytes

from tests.unit.mvcc.helpers import apply_random_history, kv_tuples, snapshot_reads


@pytest.mark.parametrize("seed", range(4))
def test_reopen_rebuilds_identical_state(backend: Backend, seed: int) -> None:
    s = KVStore(backend)
    apply_random_history(s, seed)
    cur = s.current_revision
    reads = snapshot_reads(s, range(1, cur + 1))
    leases = sorted(s.leased_keys())
    s2 = KVStore(backend)
    assert s2.current_revision == cur
    assert s2.compact_revision == -1
    assert s2.key_count == s.key_count
    assert snapshot_reads(s2, range(1, cur + 1)) == reads
    assert sorted(s2.leased_keys()) == leases
    # The reopened store keeps counting from where the old one stopped.
    s2.put(b"k00", b"after")
    assert s2.current_revision == cur + 1
    assert kv_tuples(s2.range(b"k00"))[0][3] == cur + 1


def test_reopen_after_compaction(backend: Backend) -> None:
    s = KVStore(backend)
    apply_random_history(s, 11)
    cur = s.current_revision
    s.compact(cur - 10)
    s.run_compactions()
    reads = snapshot_reads(s, range(cur - 10, cur + 1))
    s2 = KVStore(backend)
    assert (s2.current_revision, s2.compact_revision) == (cur, cur - 10)
    assert s2.pending_compactions == []
    assert snapshot_reads(s2, range(cur - 10, cur + 1)) == reads
    with pytest.raises(ErrCompacted):
        s2.range(b"k00", rev=cur - 11)


def test_revision_never_goes_back_when_compaction_removed_the_last_revisions(
    backend: Backend,
) -> None:
    s = KVStore(backend)
    s.put(b"a", b"1")  # 2
    s.delete_range(b"a")  # 3: a tombstone, removed by compaction at 3
    s.compact(3)
    s.run_compactions()
    assert list(backend.range(KEY, b"")) == []
    s2 = KVStore(backend)
    assert (s2.current_revision, s2.compact_revision) == (3, 3)
    assert s2.put(b"b", b"1") == 4


def test_interrupted_compaction_is_resumed_on_open(backend: Backend) -> None:
    s = KVStore(backend, compaction_batch_limit=2)
    for i in range(12):
        s.put(b"k%d" % (i % 3), b"v%d" % i)  # revisions 2..13
    expected_reads = snapshot_reads(s, range(10, 14))
    job = s.compact(10)
    for _ in range(3):  # index pass (2 steps) + one backend batch, then "crash"
        assert not job.step()
    assert backend.get(META, b"finishedCompactRev") is None
    left_before_resume = len(list(backend.range(KEY, b"")))
    assert left_before_resume > 3 + 3  # not finished: more than the kept + newer revisions

    s2 = KVStore(backend, compaction_batch_limit=2)
    assert s2.compact_revision == 10  # unreadable below 10 at once, before resuming
    with pytest.raises(ErrCompacted):
        s2.range(b"k0", rev=9)
    (resumed,) = s2.pending_compactions
    assert resumed.revision == 10
    s2.run_compactions()
    assert backend.get(META, b"finishedCompactRev") == rev_to_bytes(10)
    assert len(list(backend.range(KEY, b""))) == 3 + 3  # k0..k2 at <= 10, plus 11..13
    assert snapshot_reads(s2, range(10, 14)) == expected_reads
    # The first compaction after an interrupted one does not store its hash (etcd #15919).
    assert s2.hashes.hashes() == []


def test_scheduled_but_not_started_compaction_resumes(backend: Backend) -> None:
    s = KVStore(backend)
    s.put(b"a", b"1")
    s.put(b"a", b"2")
    s.put(b"b", b"1")
    s.delete_range(b"b")  # 5
    s.compact(5)  # scheduled, never stepped
    s2 = KVStore(backend)
    assert (s2.current_revision, s2.compact_revision) == (5, 5)
    s2.run_compactions()
    assert [k for k, _ in backend.range(KEY, b"")] == [rev_to_bytes(3)]


def test_revision_uses_scheduled_compaction_when_its_tombstone_was_already_removed(
    backend: Backend,
) -> None:
    # etcd #17780: the latest revision was a tombstone that the compaction deleted, and the
    # process stopped before finishedCompactRev was written.
    s = KVStore(backend)
    s.put(b"a", b"1")  # 2
    s.put(b"a", b"2")  # 3
    s.delete_range(b"a")  # 4
    s.compact(4)
    job = s.pending_compactions[0]
    while True:
        job.step()
        if not list(backend.range(KEY, b"")):
            break
    backend.delete(META, b"finishedCompactRev")  # stopped just before recording the finish
    s2 = KVStore(backend)
    assert s2.current_revision == 4
    assert s2.put(b"x", b"y") == 5
