"""RaftLog: the log rules of the Raft paper, section 5.3, on a stable prefix plus unstable tail."""

from __future__ import annotations

import pytest
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.log import RaftLog
from pyetcd.raft.storage import MemoryStorage


def ent(index: int, term: int, data: bytes = b"") -> raft_pb2.Entry:
    return raft_pb2.Entry(Index=index, Term=term, Data=data)


def log_with(*terms: int, stable: bool = True) -> RaftLog:
    s = MemoryStorage()
    ents = [ent(i + 1, t) for i, t in enumerate(terms)]
    if stable:
        s.append(ents)
        return RaftLog(s)
    log = RaftLog(s)
    log.append(ents)
    return log


def terms(log: RaftLog) -> list[int]:
    return [e.Term for e in log.all_entries()]


def test_an_append_is_rejected_unless_the_log_matches_at_the_previous_entry() -> None:
    log = log_with(1, 1, 2)
    assert log.maybe_append(3, 1, 0, [ent(4, 2)]) is None  # term at 3 is 2, not 1
    assert log.maybe_append(4, 2, 0, [ent(5, 2)]) is None  # we have no entry 4
    assert log.maybe_append(3, 2, 0, [ent(4, 2)]) == 4
    assert terms(log) == [1, 1, 2, 2]


def test_a_conflicting_suffix_is_truncated_and_replaced() -> None:
    log = log_with(1, 1, 2, 2, 2)
    assert log.maybe_append(2, 1, 0, [ent(3, 3), ent(4, 3)]) == 4
    assert terms(log) == [1, 1, 3, 3]


def test_entries_already_present_are_not_truncated_by_a_stale_append() -> None:
    # A delayed MsgApp covering a prefix of what we hold must not cut our tail.
    log = log_with(1, 1, 1, 1)
    assert log.maybe_append(1, 1, 0, [ent(2, 1)]) == 2
    assert terms(log) == [1, 1, 1, 1]


def test_a_committed_entry_is_never_truncated() -> None:
    log = log_with(1, 1, 2)
    log.commit_to(3)
    with pytest.raises(AssertionError):
        log.maybe_append(2, 1, 3, [ent(3, 3)])


def test_commit_follows_the_leader_but_not_beyond_what_the_message_proves() -> None:
    log = log_with(1, 1, 1, 1, 1)
    # The leader committed 5, but this message only shows entries up to 3 match.
    assert log.maybe_append(2, 1, 5, [ent(3, 1)]) == 3
    assert log.committed == 3


def test_commit_never_goes_backwards_nor_beyond_the_log() -> None:
    log = log_with(1, 1)
    log.commit_to(2)
    log.commit_to(1)
    assert log.committed == 2
    with pytest.raises(AssertionError):
        log.commit_to(3)


def test_only_entries_of_the_current_term_are_committed_by_counting_replicas() -> None:
    log = log_with(1, 2)
    assert not log.maybe_commit(2, 3)  # entry 2 is of term 2, the leader is at term 3
    assert log.committed == 0
    assert log.maybe_commit(2, 2)
    assert log.committed == 2


def test_the_election_restriction_compares_last_term_then_length() -> None:
    log = log_with(1, 2, 2)
    assert log.is_up_to_date(1, 3)  # higher last term wins whatever the length
    assert log.is_up_to_date(3, 2)
    assert log.is_up_to_date(4, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(10, 1)


def test_conflict_hint_skips_a_whole_term_of_mismatching_entries() -> None:
    log = log_with(1, 1, 4, 4, 4, 4)
    # The leader probed at index 6 with term 3: all our term-4 entries are > 3 and cannot match.
    assert log.find_conflict_by_term(6, 3) == (2, 1)
    assert log.find_conflict_by_term(6, 5) == (6, 4)
    assert log.find_conflict_by_term(0, 1) == (0, 0)


def test_only_persisted_committed_entries_are_handed_out_for_applying() -> None:
    s = MemoryStorage()
    log = RaftLog(s)
    log.append([ent(1, 1), ent(2, 1)])
    log.commit_to(2)
    assert log.next_committed_ents() == []
    # The caller persists the unstable entries, then acknowledges them.
    s.append(log.next_unstable_ents())
    log.stable_to(2, 1)
    assert [e.Index for e in log.next_committed_ents()] == [1, 2]
    log.applied_to(2)
    assert log.next_committed_ents() == []


def test_stable_to_ignores_an_acknowledgement_for_an_overwritten_entry() -> None:
    log = log_with(1, 1, stable=False)
    # The unstable entry 2 (term 1) is replaced by a term-2 entry before the write of the old one
    # is acknowledged: the acknowledgement must not mark the new entry as persisted.
    log.append([ent(2, 2)])
    log.stable_to(2, 1)
    assert [e.Term for e in log.next_unstable_ents()] == [1, 2]


def test_term_lookups_span_storage_and_unstable() -> None:
    s = MemoryStorage()
    s.append([ent(1, 1), ent(2, 1), ent(3, 2)])
    s.compact(1)
    log = RaftLog(s)
    log.append([ent(4, 3)])
    assert [log.term_or_zero(i) for i in range(6)] == [0, 1, 1, 2, 3, 0]
    assert (log.first_index(), log.last_index(), log.last_term()) == (2, 4, 3)


def test_slices_are_size_limited() -> None:
    log = log_with(*([1] * 10))
    log.append([ent(11, 1, b"x" * 50), ent(12, 1, b"x" * 50)])
    one = ent(1, 1).ByteSize()
    assert len(log.slice(1, 13, 3 * one)) == 3
    assert len(log.entries(10, 0)) == 1
    assert len(log.entries(1)) == 12
