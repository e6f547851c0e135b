"""MemoryStorage: the persisted log as Raft reads it back (entries, terms, snapshot, compaction)."""

from __future__ import annotations

import pytest
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.storage import (
    CompactedError,
    MemoryStorage,
    SnapOutOfDateError,
    UnavailableError,
    limit_size,
)


def ent(index: int, term: int, data: bytes = b"") -> raft_pb2.Entry:
    return raft_pb2.Entry(Index=index, Term=term, Data=data)


def storage_with(*terms: int) -> MemoryStorage:
    s = MemoryStorage()
    s.append([ent(i + 1, t) for i, t in enumerate(terms)])
    return s


def test_terms_and_entries_are_read_back() -> None:
    s = storage_with(1, 1, 2)
    assert (s.first_index(), s.last_index()) == (1, 3)
    assert [s.term(i) for i in range(4)] == [0, 1, 1, 2]
    assert [e.Index for e in s.entries(2, 4)] == [2, 3]
    with pytest.raises(UnavailableError):
        s.term(4)
    with pytest.raises(UnavailableError):
        s.entries(2, 5)


def test_append_replaces_a_conflicting_tail() -> None:
    s = storage_with(1, 1, 1)
    s.append([ent(2, 2), ent(3, 2), ent(4, 2)])
    assert [s.term(i) for i in range(1, 5)] == [1, 2, 2, 2]


def test_append_with_a_gap_is_refused() -> None:
    s = storage_with(1)
    with pytest.raises(UnavailableError):
        s.append([ent(3, 1)])


def test_compaction_keeps_the_term_of_the_last_compacted_entry() -> None:
    s = storage_with(1, 2, 3, 4)
    s.compact(2)
    assert s.first_index() == 3
    # The term just before the first entry is still known: log matching needs it.
    assert s.term(2) == 2
    with pytest.raises(CompactedError):
        s.term(1)
    with pytest.raises(CompactedError):
        s.entries(2, 4)
    with pytest.raises(CompactedError):
        s.compact(2)


def test_snapshots_are_created_from_the_log_and_must_be_newer() -> None:
    s = storage_with(1, 2, 3)
    cs = raft_pb2.ConfState(voters=[1, 2, 3])
    snap = s.create_snapshot(2, cs, b"state")
    assert (snap.metadata.index, snap.metadata.term, snap.data) == (2, 2, b"state")
    assert list(s.snapshot().metadata.conf_state.voters) == [1, 2, 3]
    with pytest.raises(SnapOutOfDateError):
        s.create_snapshot(1, cs, b"")


def test_applying_a_snapshot_replaces_the_whole_log() -> None:
    s = storage_with(1, 1)
    snap = raft_pb2.Snapshot(data=b"x")
    snap.metadata.index, snap.metadata.term = 10, 3
    s.apply_snapshot(snap)
    assert (s.first_index(), s.last_index(), s.term(10)) == (11, 10, 3)
    with pytest.raises(SnapOutOfDateError):
        s.apply_snapshot(snap)
    # Entries already covered by the snapshot are ignored, the rest appended.
    s.append([ent(9, 3), ent(10, 3), ent(11, 3)])
    assert s.last_index() == 11


def test_initial_state_reports_hard_state_and_membership() -> None:
    s = MemoryStorage(conf_state=raft_pb2.ConfState(voters=[1, 2], learners=[3]))
    s.set_hard_state(raft_pb2.HardState(term=4, vote=2, commit=0))
    hs, cs = s.initial_state()
    assert (hs.term, hs.vote) == (4, 2)
    assert (list(cs.voters), list(cs.learners)) == ([1, 2], [3])


def test_size_limit_returns_at_least_one_entry() -> None:
    ents = [ent(i, 1, b"x" * 100) for i in range(1, 6)]
    one = ents[0].ByteSize()
    assert len(limit_size(ents, 0)) == 1
    assert len(limit_size(ents, 2 * one)) == 2
    assert len(limit_size(ents, 2 * one + 1)) == 2
    assert len(limit_size(ents, 10**9)) == 5
