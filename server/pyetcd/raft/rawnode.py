"""``RawNode``: the Ready/Advance interface over the Raft state machine (etcd-io/raft rawnode.go).

The caller's loop, per iteration:

1. ``tick()`` on its clock; ``step(msg)`` for each message from peers; ``propose``/``read_index``
   etc. for client requests.
2. If ``has_ready()``: ``rd = ready()``, then, in this order:
   a. persist ``rd.snapshot`` (if any), ``rd.entries`` and ``rd.hard_state`` (fsync if
      ``rd.must_sync``);
   b. send ``rd.messages`` (they may acknowledge what (a) persisted, so never before it);
   c. apply ``rd.snapshot`` and ``rd.committed_entries`` to the state machine, calling
      ``apply_conf_change`` for each EntryConfChange; serve ``rd.read_states`` once applied;
   d. ``advance(rd)``.

The server (``pyetcd.server.etcdserver``) drives it this way, with the WAL and the peer transport
as the persistence and the network.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.raft import (
    NONE,
    Config,
    Raft,
    SoftState,
    StateType,
    is_empty_hard_state,
    msg_from,
    set_from,
)
from pyetcd.raft.read_only import ReadState
from pyetcd.raft.tracker import Progress, ProgressState

Message = raft_pb2.Message

# Messages Raft generates for itself; they must never arrive from the network.
_LOCAL_MSGS = frozenset(
    {
        raft_pb2.MsgHup,
        raft_pb2.MsgBeat,
        raft_pb2.MsgUnreachable,
        raft_pb2.MsgSnapStatus,
        raft_pb2.MsgCheckQuorum,
    }
)
_RESPONSE_MSGS = frozenset(
    {
        raft_pb2.MsgAppResp,
        raft_pb2.MsgVoteResp,
        raft_pb2.MsgHeartbeatResp,
        raft_pb2.MsgUnreachable,
        raft_pb2.MsgReadIndexResp,
        raft_pb2.MsgPreVoteResp,
    }
)


class StepLocalMsgError(Exception):
    """A local-only message type arrived through ``step`` from the network."""


class StepPeerNotFoundError(Exception):
    """A response from a node that is not in the configuration."""


class SnapshotStatus(enum.Enum):
    FINISH = "finish"
    FAILURE = "failure"


@dataclass
class Ready:
    """Everything the caller must do before ``advance``; fields are empty when there is nothing."""

    # Leader or role changed (None: unchanged).
    soft_state: SoftState | None = None
    # To persist before sending messages (None: unchanged).
    hard_state: raft_pb2.HardState | None = None
    # To persist (append; they may overwrite a conflicting stored tail).
    entries: list[raft_pb2.Entry] = field(default_factory=list)
    # To persist and apply (a follower that fell behind the leader's compaction).
    snapshot: raft_pb2.Snapshot | None = None
    # Committed and locally durable: apply in order.
    committed_entries: list[raft_pb2.Entry] = field(default_factory=list)
    # To send, after persisting the above.
    messages: list[raft_pb2.Message] = field(default_factory=list)
    # ReadIndex answers: serve each read once applied >= index.
    read_states: list[ReadState] = field(default_factory=list)
    # Whether the hard state and entries must be fsynced (term/vote changed or new entries).
    must_sync: bool = False


@dataclass
class Status:
    """A copy of the node's state for reporting (etcd's raft.Status)."""

    id: int
    hard_state: raft_pb2.HardState
    soft_state: SoftState
    applied: int
    lead_transferee: int
    voters: list[int]
    learners: list[int]
    # Only on the leader: its view of every member.
    progress: dict[int, Progress]

    @property
    def lead(self) -> int:
        return self.soft_state.lead

    @property
    def raft_state(self) -> StateType:
        return self.soft_state.raft_state


class RawNode:
    """A Raft member driven by its caller: no threads, no clock, no I/O."""

    def __init__(self, config: Config) -> None:
        self.raft = Raft(config)
        self._prev_soft_state = self.raft.soft_state()
        self._prev_hard_state = self.raft.hard_state()

    def bootstrap(self, peers: Sequence[int], learners: Sequence[int] = ()) -> None:
        """Start a new cluster: the initial membership as committed ConfChange entries of term 1.

        Only for an empty storage. The entries are handed out in the first Ready, to persist and
        to apply (``apply_conf_change``) like any conf change, so that the WAL records them, as
        etcd does on first start; a member that joins later replays them from the leader's log.
        """
        if not peers:
            raise ValueError("must provide at least one peer to bootstrap")
        r = self.raft
        if r.raft_log.storage.last_index() != 0:
            raise ValueError("can't bootstrap a nonempty storage")
        # The bootstrap entries are of term 1, so our term must be at least 1.
        r.become_follower(1, NONE)
        self._prev_soft_state = r.soft_state()
        # Nothing is persisted yet: the first Ready carries a hard state to persist.
        self._prev_hard_state = raft_pb2.HardState()
        changes = [
            raft_pb2.ConfChange(type=raft_pb2.ConfChangeAddNode, node_id=p) for p in peers
        ] + [
            raft_pb2.ConfChange(type=raft_pb2.ConfChangeAddLearnerNode, node_id=p) for p in learners
        ]
        ents = []
        for i, cc in enumerate(changes):
            ents.append(
                raft_pb2.Entry(
                    Type=raft_pb2.EntryConfChange,
                    Term=1,
                    Index=i + 1,
                    Data=cc.SerializeToString(),
                )
            )
        r.raft_log.append(ents)
        r.raft_log.committed = len(ents)
        # Apply them now, so that the configuration is known before the first Ready is
        # processed; applying them again from committed_entries is idempotent.
        for cc in changes:
            r.apply_conf_change(cc)

    # -- inputs ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance the logical clock by one tick (heartbeat_tick/election_tick are in ticks)."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (with pre-vote if configured)."""
        self.raft.step(Message(type=raft_pb2.MsgHup))

    def propose(self, data: bytes) -> None:
        """Propose a normal entry; raises ProposalDroppedError if it cannot be taken now.

        Being taken does not mean being committed: the caller recognizes its entry when it shows
        up in committed_entries (etcd puts a request id in the data).
        """
        m = Message(type=raft_pb2.MsgProp, entries=[raft_pb2.Entry(Data=data)])
        set_from(m, self.raft.id)
        self.raft.step(m)

    def propose_many(self, data: Sequence[bytes]) -> None:
        """Propose normal entries as one message: taken or dropped together."""
        m = Message(type=raft_pb2.MsgProp, entries=[raft_pb2.Entry(Data=d) for d in data])
        set_from(m, self.raft.id)
        self.raft.step(m)

    def propose_conf_change(self, cc: raft_pb2.ConfChange) -> None:
        """Propose a single-step membership change (ConfChange v1)."""
        m = Message(
            type=raft_pb2.MsgProp,
            entries=[raft_pb2.Entry(Type=raft_pb2.EntryConfChange, Data=cc.SerializeToString())],
        )
        set_from(m, self.raft.id)
        self.raft.step(m)

    def apply_conf_change(self, cc: raft_pb2.ConfChange) -> raft_pb2.ConfState:
        """Apply a committed conf change to the configuration; returns the new ConfState."""
        return self.raft.apply_conf_change(cc)

    def step(self, m: raft_pb2.Message) -> None:
        """Deliver a message from a peer."""
        if m.type in _LOCAL_MSGS:
            raise StepLocalMsgError(f"local message {m.type} received from the network")
        if (
            m.type in _RESPONSE_MSGS
            and msg_from(m) not in self.raft.trk.progress
            and msg_from(m) != NONE
        ):
            raise StepPeerNotFoundError(f"response from unknown peer {msg_from(m)}")
        self.raft.step(m)

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read point; answered by a ReadState with ``ctx`` in a Ready."""
        self.raft.step(Message(type=raft_pb2.MsgReadIndex, entries=[raft_pb2.Entry(Data=ctx)]))

    def transfer_leadership(self, transferee: int) -> None:
        """Ask the leader (this node or, forwarded, the known leader) to hand over leadership."""
        m = Message(type=raft_pb2.MsgTransferLeader)
        set_from(m, transferee)
        self.raft.step(m)

    def report_unreachable(self, node_id: int) -> None:
        """The transport failed to deliver to ``node_id``: stop optimistic replication to it."""
        m = Message(type=raft_pb2.MsgUnreachable)
        set_from(m, node_id)
        self.raft.step(m)

    def report_snapshot(self, node_id: int, status: SnapshotStatus) -> None:
        """The transport finished (or failed) sending a MsgSnap to ``node_id``."""
        m = Message(type=raft_pb2.MsgSnapStatus, reject=status == SnapshotStatus.FAILURE)
        set_from(m, node_id)
        self.raft.step(m)

    # -- outputs --------------------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self.raft
        if r.soft_state() != self._prev_soft_state:
            return True
        hs = r.hard_state()
        if not is_empty_hard_state(hs) and hs != self._prev_hard_state:
            return True
        log = r.raft_log
        return bool(
            log.unstable.snapshot is not None
            or r.msgs
            or log.has_next_unstable_ents()
            or log.has_next_committed_ents()
            or r.read_states
        )

    def ready(self) -> Ready:
        """Collect the work for the caller; the caller must ``advance`` with it afterwards."""
        r = self.raft
        log = r.raft_log
        rd = Ready(
            entries=log.next_unstable_ents(),
            committed_entries=log.next_committed_ents(),
            messages=r.msgs,
            read_states=r.read_states,
        )
        soft = r.soft_state()
        if soft != self._prev_soft_state:
            rd.soft_state = soft
            self._prev_soft_state = soft
        hs = r.hard_state()
        if hs != self._prev_hard_state:
            rd.hard_state = hs
        if log.unstable.snapshot is not None:
            rd.snapshot = log.unstable.snapshot
        rd.must_sync = bool(rd.entries) or (
            hs.vote != self._prev_hard_state.vote or hs.term != self._prev_hard_state.term
        )
        # Accept: messages and read states are the caller's now.
        r.msgs = []
        r.read_states = []
        if rd.committed_entries:
            log.accept_applying(rd.committed_entries[-1].Index)
        return rd

    def advance(self, rd: Ready) -> None:
        """The caller persisted, sent and applied ``rd``."""
        r = self.raft
        if rd.hard_state is not None:
            self._prev_hard_state = rd.hard_state
        r.reduce_uncommitted_size(rd.committed_entries)
        if rd.snapshot is not None:
            r.raft_log.stable_snap_to(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            r.raft_log.stable_to(last.Index, last.Term)
            r.on_entries_persisted(last.Index, last.Term)
        if rd.committed_entries:
            r.raft_log.applied_to(rd.committed_entries[-1].Index)
        elif rd.snapshot is not None:
            r.raft_log.applied_to(rd.snapshot.metadata.index)

    def status(self) -> Status:
        r = self.raft
        progress: dict[int, Progress] = {}
        if r.state == StateType.LEADER:
            progress = {i: pr.copy() for i, pr in r.trk.progress.items()}
        return Status(
            id=r.id,
            hard_state=r.hard_state(),
            soft_state=r.soft_state(),
            applied=r.raft_log.applied,
            lead_transferee=r.lead_transferee,
            voters=r.trk.voter_nodes(),
            learners=r.trk.learner_nodes(),
            progress=progress,
        )


__all__ = [
    "Config",
    "ProgressState",
    "RawNode",
    "Ready",
    "SnapshotStatus",
    "Status",
    "StepLocalMsgError",
    "StepPeerNotFoundError",
]
