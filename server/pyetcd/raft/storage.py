"""The stable side of the Raft log: what the caller has persisted, as Raft reads it back.

``Storage`` is the read interface Raft needs (etcd-io/raft's Storage). ``MemoryStorage`` keeps the
persisted entries, hard state and latest snapshot in memory; the server backs it with the WAL and
snap files (it replays them into a MemoryStorage at start, and appends to both as it persists each
Ready), exactly as etcd does. Index 0 of the entry list is a dummy entry carrying the index and term
of the last compacted entry (the snapshot), so that term lookups for "the entry just before the
first one" keep working after compaction; log matching needs that term.
"""

from __future__ import annotations

from typing import Protocol

from pyetcd.proto.raftpb import raft_pb2

NO_LIMIT = (1 << 64) - 1


class StorageError(Exception):
    """Base of the errors Storage reports to Raft."""


class CompactedError(StorageError):
    """The requested index is older than the first available one: it was compacted."""


class UnavailableError(StorageError):
    """The requested index is newer than the last available one."""


class SnapOutOfDateError(StorageError):
    """The snapshot is older than the one already stored."""


class SnapshotTemporarilyUnavailableError(StorageError):
    """The snapshot is being produced; the leader will retry later."""


def entry_size(e: raft_pb2.Entry) -> int:
    """Encoded size of an entry, the unit of MaxSizePerMsg and MaxCommittedSizePerReady."""
    return e.ByteSize()


def limit_size(ents: list[raft_pb2.Entry], max_size: int) -> list[raft_pb2.Entry]:
    """The longest prefix of ``ents`` within ``max_size`` bytes, but never fewer than one entry.

    At least one entry is always returned so that an entry larger than the limit still makes
    progress.
    """
    if not ents:
        return ents
    size = entry_size(ents[0])
    limit = 1
    while limit < len(ents):
        size += entry_size(ents[limit])
        if size > max_size:
            break
        limit += 1
    return ents[:limit]


def is_empty_snap(snap: raft_pb2.Snapshot | None) -> bool:
    return snap is None or snap.metadata.index == 0


class Storage(Protocol):
    """Read access to the persisted log. Raft never writes to it; the caller does."""

    def initial_state(self) -> tuple[raft_pb2.HardState, raft_pb2.ConfState]: ...

    def entries(self, lo: int, hi: int, max_size: int) -> list[raft_pb2.Entry]:
        """Entries [lo, hi), limited to ``max_size`` bytes (at least one entry)."""
        ...

    def term(self, i: int) -> int:
        """Term of entry ``i``, for i in [first_index()-1, last_index()]."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> raft_pb2.Snapshot: ...


class MemoryStorage:
    """An in-memory Storage; also the write side the caller uses to persist each Ready."""

    def __init__(self, conf_state: raft_pb2.ConfState | None = None) -> None:
        self.hard_state = raft_pb2.HardState()
        self._snapshot = raft_pb2.Snapshot()
        if conf_state is not None:
            # Bootstrap membership for an empty log (a cluster created with known voters).
            self._snapshot.metadata.conf_state.CopyFrom(conf_state)
        # ents[0] is the dummy entry at the snapshot's index and term.
        self._ents: list[raft_pb2.Entry] = [raft_pb2.Entry()]

    # -- Storage interface ------------------------------------------------------------------

    def initial_state(self) -> tuple[raft_pb2.HardState, raft_pb2.ConfState]:
        hs = raft_pb2.HardState()
        hs.CopyFrom(self.hard_state)
        cs = raft_pb2.ConfState()
        cs.CopyFrom(self._snapshot.metadata.conf_state)
        return hs, cs

    def _offset(self) -> int:
        return self._ents[0].Index

    def first_index(self) -> int:
        return self._offset() + 1

    def last_index(self) -> int:
        return self._offset() + len(self._ents) - 1

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[raft_pb2.Entry]:
        offset = self._offset()
        if lo <= offset:
            raise CompactedError(f"entry {lo} compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries up to {hi - 1} unavailable (last {self.last_index()})")
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, i: int) -> int:
        offset = self._offset()
        if i < offset:
            raise CompactedError(f"term of {i} compacted (offset {offset})")
        if i - offset >= len(self._ents):
            raise UnavailableError(f"term of {i} unavailable (last {self.last_index()})")
        return self._ents[i - offset].Term

    def snapshot(self) -> raft_pb2.Snapshot:
        return self._snapshot

    # -- write side (the caller persisting a Ready) -----------------------------------------

    def set_hard_state(self, hs: raft_pb2.HardState) -> None:
        self.hard_state = raft_pb2.HardState()
        self.hard_state.CopyFrom(hs)

    def apply_snapshot(self, snap: raft_pb2.Snapshot) -> None:
        """Replace the whole log with a snapshot received from the leader."""
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise SnapOutOfDateError(
                f"snapshot at {snap.metadata.index} is not newer than "
                f"{self._snapshot.metadata.index}"
            )
        self._snapshot = raft_pb2.Snapshot()
        self._snapshot.CopyFrom(snap)
        self._ents = [raft_pb2.Entry(Term=snap.metadata.term, Index=snap.metadata.index)]

    def create_snapshot(
        self, i: int, conf_state: raft_pb2.ConfState | None, data: bytes
    ) -> raft_pb2.Snapshot:
        """Record a snapshot of the applied state at index ``i`` (then ``compact`` to drop the log).

        ``i`` must be an applied index, so the caller's state machine really contains it.
        """
        if i <= self._snapshot.metadata.index:
            raise SnapOutOfDateError(f"snapshot at {i} is not newer than the stored one")
        if i > self.last_index():
            raise UnavailableError(f"snapshot {i} is out of bound lastindex({self.last_index()})")
        snap = raft_pb2.Snapshot(data=data)
        snap.metadata.index = i
        snap.metadata.term = self._ents[i - self._offset()].Term
        if conf_state is not None:
            snap.metadata.conf_state.CopyFrom(conf_state)
        self._snapshot = snap
        return snap

    def compact(self, compact_index: int) -> None:
        """Discard entries up to ``compact_index``; it becomes the new dummy entry."""
        offset = self._offset()
        if compact_index <= offset:
            raise CompactedError(f"already compacted to {offset}")
        if compact_index > self.last_index():
            raise UnavailableError(f"compact {compact_index} is beyond last {self.last_index()}")
        i = compact_index - offset
        head = self._ents[i]
        # A fresh dummy entry: keep only index and term, drop the payload.
        self._ents = [raft_pb2.Entry(Index=head.Index, Term=head.Term), *self._ents[i + 1 :]]

    def append(self, entries: list[raft_pb2.Entry]) -> None:
        """Persist entries; a suffix that conflicts with stored entries replaces them."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].Index
        if last < first:
            # Everything is already compacted (it was in a snapshot we hold).
            return
        if first > entries[0].Index:
            entries = entries[first - entries[0].Index :]
        offset = entries[0].Index - self._offset()
        if offset > len(self._ents):
            raise UnavailableError(
                f"missing log entry [last: {self.last_index()}, append at: {entries[0].Index}]"
            )
        # Truncate a conflicting tail (uncommitted entries of an old leader), then append.
        del self._ents[offset:]
        self._ents.extend(entries)
