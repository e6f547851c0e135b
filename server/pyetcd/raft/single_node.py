"""A Raft log for a cluster of one voter, behind the same ready/advance interface as a full Raft.

With a single voter every entry that is durable in the local log is committed, so this state
machine only has to hand out entries to persist, then hand them back as committed once the caller
says they are persisted. The server's loop is written against this interface (propose, ready,
advance), so the multi-member Raft replaces this class without changing the loop.

Pure: no I/O, no clock, no asyncio. The caller persists ``Ready.entries`` and ``Ready.hard_state``
(fsync), applies ``Ready.committed_entries``, then calls ``advance``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyetcd.proto.raftpb import raft_pb2

ENTRY_NORMAL = raft_pb2.EntryNormal
ENTRY_CONF_CHANGE = raft_pb2.EntryConfChange


@dataclass(frozen=True)
class HardState:
    term: int = 0
    vote: int = 0
    commit: int = 0


@dataclass
class Ready:
    """Work for the caller: entries to persist, a hard state to persist, entries to apply."""

    entries: list[raft_pb2.Entry] = field(default_factory=list)
    hard_state: HardState | None = None
    committed_entries: list[raft_pb2.Entry] = field(default_factory=list)
    must_sync: bool = False


class SingleNodeRaft:
    """The one-voter case of Raft: leader from the first tick, commit on persist."""

    def __init__(
        self,
        node_id: int,
        hard_state: HardState,
        last_index: int,
        last_term: int,
        applied: int,
    ) -> None:
        self.id = node_id
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.commit = max(hard_state.commit, applied)
        self.last_index = last_index
        self.last_term = last_term
        # Entries after the persisted log that the caller has not persisted yet.
        self._unstable: list[raft_pb2.Entry] = []
        # Entries persisted in this process that are committed but not yet handed out to apply;
        # after a restart the caller replays the log itself from its applied index.
        self._to_apply: list[raft_pb2.Entry] = []
        self.applied = applied
        self._persisted_hs = hard_state
        self.leader = 0

    @property
    def is_leader(self) -> bool:
        return self.leader == self.id

    def campaign(self) -> None:
        """Become leader of a new term and append the empty entry that commits the old ones."""
        self.term += 1
        self.vote = self.id
        self.leader = self.id
        # Everything in a single voter's durable log is committed (it was its own quorum).
        self.commit = self.last_index
        self._append(ENTRY_NORMAL, b"")

    def _append(self, entry_type: int, data: bytes) -> int:
        self.last_index += 1
        self.last_term = self.term
        entry = raft_pb2.Entry(Term=self.term, Index=self.last_index, Type=entry_type, Data=data)  # type: ignore[arg-type]
        self._unstable.append(entry)
        return self.last_index

    def propose(self, data: bytes) -> int:
        """Append a normal entry; returns its index."""
        return self._append(ENTRY_NORMAL, data)

    def propose_conf_change(self, data: bytes) -> int:
        return self._append(ENTRY_CONF_CHANGE, data)

    def has_ready(self) -> bool:
        return bool(self._unstable or self._to_apply) or self._hard_state() != self._persisted_hs

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.commit)

    def ready(self) -> Ready:
        hs = self._hard_state()
        changed = hs != self._persisted_hs
        entries = self._unstable
        must_sync = bool(entries) or (
            changed and (hs.term != self._persisted_hs.term or hs.vote != self._persisted_hs.vote)
        )
        return Ready(
            entries=list(entries),
            hard_state=hs if changed or entries else None,
            committed_entries=list(self._to_apply),
            must_sync=must_sync,
        )

    def advance(self, rd: Ready) -> None:
        """The caller persisted ``rd.entries``/``rd.hard_state`` and applied the committed ones."""
        if rd.committed_entries:
            self.applied = rd.committed_entries[-1].Index
            del self._to_apply[: len(rd.committed_entries)]
        if rd.hard_state is not None:
            self._persisted_hs = rd.hard_state
        if rd.entries:
            del self._unstable[: len(rd.entries)]
            # Durable on the only voter: committed.
            self.commit = rd.entries[-1].Index
            self._to_apply.extend(rd.entries)
