"""What the leader knows about each member: replication progress, flow control, and votes.

``Progress`` is a small state machine per follower (etcd-io/raft tracker/progress.go):

- PROBE: the leader does not know where the follower's log matches; it sends at most one MsgApp
  per heartbeat interval (flow paused after each) and walks ``next`` back on rejection.
- REPLICATE: the follower is known to match up to ``match``; the leader streams entries
  optimistically (``next`` moves ahead at send time), bounded by the ``Inflights`` window
  (MaxInflightMsgs), so that a slow follower does not make the leader buffer unboundedly.
- SNAPSHOT: the follower needs entries the leader compacted; a MsgSnap is in flight and nothing
  else is sent until it is reported done (or failed).

``ProgressTracker`` holds the configuration (voters and learners), the progress of each member and
the votes of the current election. Learners get a Progress (they are replicated to) but are never
in ``voters``, so they neither vote nor count towards a commit.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft import quorum


class ProgressState(enum.Enum):
    PROBE = "StateProbe"
    REPLICATE = "StateReplicate"
    SNAPSHOT = "StateSnapshot"


class Inflights:
    """A window of MsgApp messages sent but not yet acknowledged, by last index (and size).

    Acknowledgements are cumulative, so freeing is "everything up to index". ``full()`` pauses
    replication to the follower until an acknowledgement frees a slot.
    """

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        self.size = size
        self.max_bytes = max_bytes  # 0: no byte limit
        self._buffer: list[tuple[int, int]] = []  # (last index of a MsgApp, its payload bytes)
        self.bytes = 0

    def clone(self) -> Inflights:
        c = Inflights(self.size, self.max_bytes)
        c._buffer = list(self._buffer)
        c.bytes = self.bytes
        return c

    def add(self, index: int, nbytes: int = 0) -> None:
        if self.full():
            raise AssertionError("cannot add into a full inflights window")
        if self._buffer and index <= self._buffer[-1][0]:
            raise AssertionError(f"inflight index {index} is not increasing")
        self._buffer.append((index, nbytes))
        self.bytes += nbytes

    def free_le(self, to: int) -> None:
        """Free the messages whose last index is <= ``to`` (acknowledged)."""
        n = 0
        for idx, nbytes in self._buffer:
            if idx > to:
                break
            n += 1
            self.bytes -= nbytes
        if n:
            del self._buffer[:n]

    def full(self) -> bool:
        return len(self._buffer) >= self.size or (
            self.max_bytes > 0 and self.bytes >= self.max_bytes
        )

    def count(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()
        self.bytes = 0


@dataclass
class Progress:
    """The leader's view of one follower (or learner)."""

    match: int = 0
    next: int = 1
    inflights: Inflights = field(default_factory=lambda: Inflights(256))
    state: ProgressState = ProgressState.PROBE
    # In SNAPSHOT state: the index of the snapshot in flight.
    pending_snapshot: int = 0
    # Heard from within the last election timeout (check-quorum); reset by the leader each time.
    recent_active: bool = False
    # In PROBE: a probe is in flight, wait for its answer (or a heartbeat response) before the
    # next. In REPLICATE: the inflights window is full.
    msg_app_flow_paused: bool = False
    is_learner: bool = False

    def reset_state(self, state: ProgressState) -> None:
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            # The snapshot reached the follower: probe just after it.
            pending = self.pending_snapshot
            self.reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self.reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self.reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def update_on_entries_send(self, entries: int, nbytes: int, next_index: int) -> None:
        """Account for a MsgApp carrying ``entries`` entries starting at ``next_index``."""
        if self.state == ProgressState.REPLICATE:
            if entries > 0:
                last = next_index + entries - 1
                self.optimistic_update(last)
                self.inflights.add(last, nbytes)
            # A full window pauses the flow until an acknowledgement frees a slot.
            self.msg_app_flow_paused = self.inflights.full()
        elif self.state == ProgressState.PROBE:
            # One probe at a time: wait for its answer.
            if entries > 0:
                self.msg_app_flow_paused = True
        else:
            raise AssertionError(f"sending append in state {self.state}")

    def maybe_update(self, n: int) -> bool:
        """An acknowledgement up to ``n``; False if it is stale (not news)."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.msg_app_flow_paused = False
        self.next = max(self.next, n + 1)
        return updated

    def optimistic_update(self, n: int) -> None:
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the MsgApp at index ``rejected``; False if it is stale."""
        if self.state == ProgressState.REPLICATE:
            # Stale if we already know the follower matches beyond ``rejected``.
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        # In PROBE only the latest probe (at next-1) is answered; older rejections are stale.
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), 1)
        self.msg_app_flow_paused = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.SNAPSHOT:
            return True
        return self.msg_app_flow_paused

    def copy(self) -> Progress:
        return Progress(
            match=self.match,
            next=self.next,
            inflights=self.inflights.clone(),
            state=self.state,
            pending_snapshot=self.pending_snapshot,
            recent_active=self.recent_active,
            msg_app_flow_paused=self.msg_app_flow_paused,
            is_learner=self.is_learner,
        )

    def __repr__(self) -> str:
        s = f"{self.state.value} match={self.match} next={self.next}"
        if self.is_learner:
            s += " learner"
        if self.is_paused():
            s += " paused"
        if self.pending_snapshot:
            s += f" pendingSnap={self.pending_snapshot}"
        if not self.recent_active:
            s += " inactive"
        if self.inflights.count():
            s += f" inflight={self.inflights.count()}"
            if self.inflights.full():
                s += "[full]"
        return s


@dataclass
class Config:
    """The membership: who votes, who only learns."""

    voters: set[int] = field(default_factory=set)
    learners: set[int] = field(default_factory=set)

    def clone(self) -> Config:
        return Config(set(self.voters), set(self.learners))

    def __repr__(self) -> str:
        return f"voters={sorted(self.voters)} learners={sorted(self.learners)}"


ProgressMap = dict[int, Progress]


class ProgressTracker:
    """Configuration, per-member progress and the votes of the current election."""

    def __init__(self, max_inflight: int, max_inflight_bytes: int = 0) -> None:
        self.config = Config()
        self.progress: ProgressMap = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes

    def new_inflights(self) -> Inflights:
        return Inflights(self.max_inflight, self.max_inflight_bytes)

    def conf_state(self) -> raft_pb2.ConfState:
        return raft_pb2.ConfState(
            voters=sorted(self.config.voters), learners=sorted(self.config.learners)
        )

    def is_singleton(self) -> bool:
        return len(self.config.voters) == 1

    def committed(self) -> int:
        """The highest index durable on a quorum of voters."""
        prs = self.progress

        def acked(i: int) -> int | None:
            pr = prs.get(i)
            return pr.match if pr is not None else None

        return quorum.committed_index(self.config.voters, acked)

    def visit(self, f: Callable[[int, Progress], None]) -> None:
        # Sorted for determinism: message order must not depend on dict history.
        for i in sorted(self.progress):
            f(i, self.progress[i])

    def quorum_active(self) -> bool:
        """Has a quorum of voters been heard from recently (check-quorum)?"""
        votes = {i: pr.recent_active for i, pr in self.progress.items() if not pr.is_learner}
        return quorum.vote_result(self.config.voters, votes) == quorum.VoteResult.WON

    def voter_nodes(self) -> list[int]:
        return sorted(self.config.voters)

    def learner_nodes(self) -> list[int]:
        return sorted(self.config.learners)

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        # The first answer counts; a duplicate cannot flip it.
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int, quorum.VoteResult]:
        granted = rejected = 0
        for node_id, pr in self.progress.items():
            if pr.is_learner:
                continue
            v = self.votes.get(node_id)
            if v is None:
                continue
            if v:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, quorum.vote_result(self.config.voters, self.votes)
