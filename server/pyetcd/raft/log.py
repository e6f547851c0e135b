"""The Raft log as the state machine sees it: a stable prefix in Storage plus an unstable tail.

``Unstable`` holds what Raft has decided but the caller has not yet persisted: entries (from
``offset``) and possibly an incoming snapshot. ``RaftLog`` joins it with ``Storage`` and enforces
the log rules of the Raft paper (section 5.3): an append is accepted only if the log matches the
leader's at the previous index and term (log matching), a conflicting suffix is truncated, and a
committed entry is never truncated.

Indexes: ``committed`` is the highest index known committed; ``applying`` is the highest index
handed to the application (in a Ready not yet advanced); ``applied`` the highest it has applied.
Invariant: applied <= applying <= committed <= last_index.
"""

from __future__ import annotations

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.storage import (
    NO_LIMIT,
    CompactedError,
    Storage,
    StorageError,
    UnavailableError,
    limit_size,
)


class Unstable:
    """Entries and a snapshot not yet handed to (or not yet confirmed by) stable storage.

    ``entries[i]`` has index ``offset + i``. A snapshot, when present, precedes the entries.
    """

    def __init__(self, offset: int) -> None:
        self.snapshot: raft_pb2.Snapshot | None = None
        self.entries: list[raft_pb2.Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].Term

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to (i, t) are persisted: drop them, unless the tail was replaced since."""
        gt = self.maybe_term(i)
        if gt is None:
            return
        # Only if the term matches: a newer leader may have overwritten index i meanwhile, and the
        # persisted (i, t) is then not the entry we hold.
        if gt == t and i >= self.offset:
            del self.entries[: i + 1 - self.offset]
            self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, snap: raft_pb2.Snapshot) -> None:
        self.offset = snap.metadata.index + 1
        self.entries = []
        self.snapshot = snap

    def truncate_and_append(self, ents: list[raft_pb2.Entry]) -> None:
        after = ents[0].Index
        if after == self.offset + len(self.entries):
            # The common case: ents directly follow our tail.
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replace everything unstable; the stable log from ``after`` on is overwritten when
            # the caller persists these entries.
            self.offset = after
            self.entries = list(ents)
        else:
            # Keep the unstable prefix before ``after`` and replace the rest.
            del self.entries[after - self.offset :]
            self.entries.extend(ents)

    def slice(self, lo: int, hi: int) -> list[raft_pb2.Entry]:
        if lo < self.offset or hi > self.offset + len(self.entries):
            raise AssertionError(
                f"unstable.slice[{lo},{hi}) out of bound [{self.offset},"
                f"{self.offset + len(self.entries)}]"
            )
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """Storage plus Unstable, with the append/truncate/commit rules of Raft."""

    def __init__(self, storage: Storage, max_applying_ents_size: int = NO_LIMIT) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Everything before the first stored entry is in the snapshot, hence committed and
        # applied (the application restores its snapshot before starting Raft).
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1
        self.max_applying_ents_size = max_applying_ents_size

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)})"
        )

    # -- indexes and terms ----------------------------------------------------------------

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, i: int) -> int:
        """Term of entry ``i``; raises CompactedError / UnavailableError outside the log.

        The valid range is [first_index()-1, last_index()]: the entry just before the first one
        is compacted, but its term is still known (snapshot metadata) for matching appends.
        """
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        if i + 1 < self.first_index():
            raise CompactedError(f"term of {i} compacted")
        if i > self.last_index():
            raise UnavailableError(f"term of {i} unavailable")
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        """Term of ``i``, or 0 when it is not in the log (0 matches no real entry)."""
        try:
            return self.term(i)
        except (CompactedError, UnavailableError):
            return 0

    def match_term(self, i: int, t: int) -> bool:
        try:
            return self.term(i) == t
        except StorageError:
            return False

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """The election restriction (paper 5.4.1): is a candidate's log at least as up to date?"""
        last_term = self.last_term()
        return term > last_term or (term == last_term and lasti >= self.last_index())

    # -- appending ------------------------------------------------------------------------

    def find_conflict(self, ents: list[raft_pb2.Entry]) -> int:
        """Index of the first entry of ``ents`` that is not in our log (0 if all are).

        A conflict is either a different term at an existing index, or an index past our end.
        """
        for e in ents:
            if not self.match_term(e.Index, e.Term):
                return e.Index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (i, t) with i <= index and t <= term in our log: where it may match.

        Used for fast log backtracking: a rejection carries this hint so the leader can skip a
        whole term of mismatching entries instead of probing one index per round trip.
        """
        while index > 0:
            try:
                our_term = self.term(index)
            except StorageError:
                # Unknown (compacted): it may match, let the leader probe here.
                return index, 0
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: list[raft_pb2.Entry]
    ) -> int | None:
        """Apply a MsgApp: entries ``ents`` following (index, log_term).

        Returns the index of the last new entry, or None when our log does not contain
        (index, log_term) (the append is rejected).
        """
        if not self.match_term(index, log_term):
            return None
        lastnewi = index + len(ents)
        ci = self.find_conflict(ents)
        if ci != 0:
            if ci <= self.committed:
                raise AssertionError(
                    f"entry {ci} conflicts with committed entry [committed({self.committed})]"
                )
            self.append(ents[ci - (index + 1) :])
        # The leader's commit index may be ahead of what this message proves we hold.
        self.commit_to(min(committed, lastnewi))
        return lastnewi

    def append(self, ents: list[raft_pb2.Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].Index - 1
        if after < self.committed:
            raise AssertionError(f"append after {after} would truncate committed {self.committed}")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    # -- committing and applying ----------------------------------------------------------

    def commit_to(self, tocommit: int) -> None:
        # Never decrease commit.
        if self.committed < tocommit:
            if self.last_index() < tocommit:
                raise AssertionError(
                    f"tocommit({tocommit}) is out of range [lastIndex({self.last_index()})]. "
                    "Was the raft log corrupted, truncated, or lost?"
                )
            self.committed = tocommit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to ``max_index`` if that entry is of ``term`` (the leader's current term).

        This is the commit rule of paper 5.4.2: a leader only commits entries from its own term by
        counting replicas; older entries are committed indirectly, as a prefix of such an entry.
        """
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if self.committed < i or i < self.applied:
            raise AssertionError(
                f"applied({i}) is out of range [prevApplied({self.applied}), "
                f"committed({self.committed})]"
            )
        self.applied = i
        self.applying = max(self.applying, i)

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def persisted_index(self) -> int:
        """The last index that is both durable and part of this log.

        Stable entries at or beyond ``unstable.offset`` are being overwritten, so they do not
        count. While an incoming snapshot is not persisted, nothing is.
        """
        if self.unstable.snapshot is not None:
            return 0
        if self.unstable.entries:
            return self.unstable.offset - 1
        return self.last_index()

    def has_next_or_in_progress_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def next_unstable_ents(self) -> list[raft_pb2.Entry]:
        return list(self.unstable.entries)

    def has_next_unstable_ents(self) -> bool:
        return bool(self.unstable.entries)

    def _max_appliable_index(self) -> int:
        # Apply only durable entries: a crash right after applying must not leave the state
        # machine ahead of the log it restarts from.
        return min(self.committed, self.persisted_index())

    def has_next_committed_ents(self) -> bool:
        if self.has_next_or_in_progress_snapshot():
            return False
        return self.applying < self._max_appliable_index()

    def next_committed_ents(self) -> list[raft_pb2.Entry]:
        """Committed, durable entries not yet handed to the application (size-limited)."""
        if self.has_next_or_in_progress_snapshot():
            return []
        lo, hi = self.applying + 1, self._max_appliable_index() + 1
        if lo >= hi:
            return []
        return self.slice(lo, hi, self.max_applying_ents_size)

    def accept_applying(self, i: int) -> None:
        self.applying = i

    # -- reading --------------------------------------------------------------------------

    def snapshot(self) -> raft_pb2.Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def restore(self, snap: raft_pb2.Snapshot) -> None:
        """Replace the log with a snapshot (the leader sent one because we fell behind)."""
        self.committed = snap.metadata.index
        self.unstable.restore(snap)

    def entries(self, i: int, max_size: int = NO_LIMIT) -> list[raft_pb2.Entry]:
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def all_entries(self) -> list[raft_pb2.Entry]:
        """The whole available log (tests and debugging)."""
        return self.entries(self.first_index())

    def slice(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[raft_pb2.Entry]:
        """Entries [lo, hi), from storage then unstable, limited to ``max_size`` bytes."""
        self._check_out_of_bounds(lo, hi)
        if lo == hi:
            return []
        ents: list[raft_pb2.Entry] = []
        if lo < self.unstable.offset:
            stored = self.storage.entries(lo, min(hi, self.unstable.offset), max_size)
            # Storage returned fewer entries than asked: the size limit was hit.
            if len(stored) < min(hi, self.unstable.offset) - lo:
                return stored
            ents = list(stored)
        if hi > self.unstable.offset:
            ents.extend(self.unstable.slice(max(lo, self.unstable.offset), hi))
        return limit_size(ents, max_size)

    def _check_out_of_bounds(self, lo: int, hi: int) -> None:
        if lo > hi:
            raise AssertionError(f"invalid slice {lo} > {hi}")
        fi = self.first_index()
        if lo < fi:
            raise CompactedError(f"slice from {lo} is compacted (first {fi})")
        length = self.last_index() + 1 - fi
        if hi > fi + length:
            raise AssertionError(f"slice[{lo},{hi}) out of bound [{fi},{self.last_index()}]")


def payload_size(ents: list[raft_pb2.Entry]) -> int:
    """Bytes of entry data: what counts against MaxUncommittedEntriesSize."""
    return sum(len(e.Data) for e in ents)
