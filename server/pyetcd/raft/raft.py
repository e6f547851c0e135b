"""The Raft state machine (etcd-io/raft raft.go): follower, pre-candidate, candidate, leader.

Pure and deterministic: input is ``step(message)`` and ``tick()``; output is appended to
``msgs`` (messages to send), the unstable log (entries to persist) and ``read_states``. Time is a
count of ticks, randomness comes from the injected ``Config.rng``. ``RawNode`` wraps this into the
Ready/Advance interface.

Persistence contract (enforced by RawNode's Ready ordering): the caller persists the hard state
and entries of a Ready before sending its messages, so a vote or an acknowledgement is never
sent before it is durable. The leader counts itself towards a commit only once its own entries
are persisted (``on_entries_persisted``), and entries are handed out for applying only once
durable locally.

Features, as etcd configures them: randomized election timeouts, pre-vote, check-quorum with the
leader lease on votes, pipelined replication bounded by MaxInflightMsgs and batched by
MaxSizePerMsg, the current-term commit rule, heartbeats carrying the commit index, ReadIndex
(safe and lease-based), leadership transfer, snapshots, learners and single-step conf changes.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft import confchange, quorum
from pyetcd.raft.log import RaftLog, payload_size
from pyetcd.raft.read_only import ReadOnly, ReadOnlyOption, ReadState
from pyetcd.raft.storage import (
    NO_LIMIT,
    SnapshotTemporarilyUnavailableError,
    Storage,
    StorageError,
    is_empty_snap,
)
from pyetcd.raft.tracker import Config as TrackerConfig
from pyetcd.raft.tracker import Progress, ProgressMap, ProgressState, ProgressTracker

Message = raft_pb2.Message
Entry = raft_pb2.Entry
Snapshot = raft_pb2.Snapshot

# The id meaning "no node" (no leader, no vote).
NONE = 0

# Context of the MsgVote of a leadership transfer: it bypasses the leader lease of the voters.
CAMPAIGN_TRANSFER = b"CampaignTransfer"


class StateType(enum.Enum):
    FOLLOWER = "StateFollower"
    CANDIDATE = "StateCandidate"
    LEADER = "StateLeader"
    PRE_CANDIDATE = "StatePreCandidate"


class CampaignType(enum.Enum):
    PRE_ELECTION = "CampaignPreElection"
    ELECTION = "CampaignElection"
    TRANSFER = "CampaignTransfer"


class ProposalDroppedError(Exception):
    """The proposal was not appended: no leader known, a transfer is in progress, or removed."""


@dataclass(frozen=True)
class SoftState:
    """Volatile state worth reporting (not persisted): who leads, and our role."""

    lead: int = NONE
    raft_state: StateType = StateType.FOLLOWER


@dataclass
class Config:
    """Parameters of a Raft member. The defaults are etcd's (server/etcdserver/raft.go)."""

    id: int
    storage: Storage
    # An election is started after [election_tick, 2*election_tick) ticks without a leader.
    election_tick: int = 10
    heartbeat_tick: int = 1
    # The index the application has already applied (on restart).
    applied: int = 0
    # Bytes of entries per MsgApp (at least one entry is always sent).
    max_size_per_msg: int = 1 << 20
    # Bytes of committed entries per Ready; 0 means max_size_per_msg.
    max_committed_size_per_ready: int = 0
    # Bytes of uncommitted entry payload a leader accepts before dropping proposals; 0: no limit.
    max_uncommitted_entries_size: int = 0
    # MsgApps in flight per follower in REPLICATE state.
    max_inflight_msgs: int = 512
    max_inflight_bytes: int = 0
    check_quorum: bool = True
    pre_vote: bool = True
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    disable_proposal_forwarding: bool = False
    # A leader removed from (or demoted in) the configuration steps down.
    step_down_on_removal: bool = True
    rng: random.Random = field(default_factory=random.Random)

    def validate(self) -> None:
        if self.id == NONE:
            raise ValueError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")
        if self.read_only_option == ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise ValueError("lease-based reads need check_quorum")


def msg_from(m: Message) -> int:
    """The sender of ``m`` (``from`` is a Python keyword, so it is not an attribute name)."""
    sender: int = getattr(m, "from")
    return sender


def set_from(m: Message, node_id: int) -> None:
    setattr(m, "from", node_id)


def vote_resp_type(t: raft_pb2.MessageType.ValueType) -> raft_pb2.MessageType.ValueType:
    if t == raft_pb2.MsgVote:
        return raft_pb2.MsgVoteResp
    if t == raft_pb2.MsgPreVote:
        return raft_pb2.MsgPreVoteResp
    raise AssertionError(f"not a vote message: {t}")


def is_empty_hard_state(hs: raft_pb2.HardState) -> bool:
    return hs.term == 0 and hs.vote == 0 and hs.commit == 0


_VOTE_TYPES = frozenset(
    {raft_pb2.MsgVote, raft_pb2.MsgVoteResp, raft_pb2.MsgPreVote, raft_pb2.MsgPreVoteResp}
)


class Raft:
    """One member's Raft state machine."""

    def __init__(self, c: Config) -> None:
        c.validate()
        self.id = c.id
        max_committed = c.max_committed_size_per_ready or c.max_size_per_msg
        self.raft_log = RaftLog(c.storage, max_committed)
        hs, cs = c.storage.initial_state()

        self.term = 0
        self.vote = NONE
        self.read_states: list[ReadState] = []
        self.trk = ProgressTracker(c.max_inflight_msgs, c.max_inflight_bytes)
        self.msgs: list[Message] = []
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.lead = NONE
        # Set while leadership is being transferred: proposals are dropped meanwhile.
        self.lead_transferee = NONE
        # A conf change may be proposed only once the last one (at this index) is applied.
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(c.read_only_option)
        # ReadIndex requests received before this leader committed an entry of its term.
        self.pending_read_index_messages: list[Message] = []
        # Ticks since the last election timeout reset (leader: since the last check-quorum).
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.heartbeat_timeout = c.heartbeat_tick
        self.election_timeout = c.election_tick
        self.randomized_election_timeout = 0
        self.max_msg_size = c.max_size_per_msg
        self.max_uncommitted_size = c.max_uncommitted_entries_size or NO_LIMIT
        self.disable_proposal_forwarding = c.disable_proposal_forwarding
        self.step_down_on_removal = c.step_down_on_removal
        self.rng = c.rng

        cfg, prs = confchange.restore(self.trk, self.raft_log.last_index(), cs)
        self.switch_to_config(cfg, prs)
        if not is_empty_hard_state(hs):
            self.load_state(hs)
        if c.applied > 0:
            self.raft_log.applied_to(c.applied)
        self.become_follower(self.term, NONE)

    def __repr__(self) -> str:
        return f"Raft(id={self.id}, term={self.term}, state={self.state.value}, lead={self.lead})"

    # -- state snapshots ------------------------------------------------------------------

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.state)

    def hard_state(self) -> raft_pb2.HardState:
        return raft_pb2.HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def load_state(self, hs: raft_pb2.HardState) -> None:
        if hs.commit < self.raft_log.committed or hs.commit > self.raft_log.last_index():
            raise AssertionError(
                f"{self.id:x} state.commit {hs.commit} is out of range "
                f"[{self.raft_log.committed}, {self.raft_log.last_index()}]"
            )
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    # -- sending --------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        if msg_from(m) == NONE:
            set_from(m, self.id)
        if m.type in _VOTE_TYPES:
            # Votes carry the term they are about (a pre-vote is for the next term).
            if m.term == 0:
                raise AssertionError(f"term should be set when sending {m.type}")
        else:
            if m.term != 0:
                raise AssertionError(f"term should not be set when sending {m.type}")
            # Proposals and read requests are forwarded to the leader as if local: no term.
            if m.type not in (raft_pb2.MsgProp, raft_pb2.MsgReadIndex):
                m.term = self.term
        self.msgs.append(m)

    def send_append(self, to: int) -> None:
        self.maybe_send_append(to, send_if_empty=True)

    def maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send a MsgApp (or a MsgSnap if the entries are compacted) to ``to``.

        Returns whether a message was sent. An empty MsgApp still carries the commit index and
        probes the follower, hence ``send_if_empty``.
        """
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        last_index, next_index = pr.next - 1, pr.next
        failed = False
        last_term = 0
        ents: list[Entry] = []
        try:
            last_term = self.raft_log.term(last_index)
        except StorageError:
            failed = True
        # A full window in REPLICATE still sends an empty MsgApp: if all messages in flight were
        # lost, its answer is what frees the window.
        if not failed and (pr.state != ProgressState.REPLICATE or not pr.inflights.full()):
            try:
                ents = self.raft_log.entries(next_index, self.max_msg_size)
            except StorageError:
                failed = True
        if not ents and not send_if_empty:
            return False
        if failed:
            # The entries the follower needs were compacted: send a snapshot instead.
            if not pr.recent_active:
                return False
            try:
                snapshot = self.raft_log.snapshot()
            except SnapshotTemporarilyUnavailableError:
                return False
            if is_empty_snap(snapshot):
                raise AssertionError("need non-empty snapshot")
            pr.become_snapshot(snapshot.metadata.index)
            self.send(Message(type=raft_pb2.MsgSnap, to=to, snapshot=snapshot))
            return True
        pr.update_on_entries_send(len(ents), payload_size(ents), next_index)
        self.send(
            Message(
                type=raft_pb2.MsgApp,
                to=to,
                index=last_index,
                logTerm=last_term,
                entries=ents,
                commit=self.raft_log.committed,
            )
        )
        return True

    def send_heartbeat(self, to: int, ctx: bytes) -> None:
        # Never tell a follower to commit beyond what it is known to hold: it might not have the
        # entries, and committing an index it does not have would be a lie.
        commit = min(self.trk.progress[to].match, self.raft_log.committed)
        self.send(Message(type=raft_pb2.MsgHeartbeat, to=to, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        for i in sorted(self.trk.progress):
            if i != self.id:
                self.send_append(i)

    def bcast_heartbeat(self) -> None:
        self.bcast_heartbeat_with_ctx(self.read_only.last_pending_request_ctx())

    def bcast_heartbeat_with_ctx(self, ctx: bytes) -> None:
        for i in sorted(self.trk.progress):
            if i != self.id:
                self.send_heartbeat(i, ctx)

    def send_timeout_now(self, to: int) -> None:
        self.send(Message(type=raft_pb2.MsgTimeoutNow, to=to))

    # -- log ------------------------------------------------------------------------------

    def maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum of voters holds, if of the current term."""
        return self.raft_log.maybe_commit(self.trk.committed(), self.term)

    def append_entry(self, es: list[Entry]) -> bool:
        li = self.raft_log.last_index()
        for i, e in enumerate(es):
            e.Term = self.term
            e.Index = li + 1 + i
        if not self.increase_uncommitted_size(es):
            return False
        self.raft_log.append(es)
        # The leader acknowledges its own entries once they are persisted (on_entries_persisted),
        # like a follower does: counting them earlier would let a crash lose a "committed" entry.
        return True

    def on_entries_persisted(self, index: int, term: int) -> None:
        """The caller persisted the log up to (index, term): a leader acknowledges itself."""
        if self.state != StateType.LEADER:
            return
        if self.raft_log.term_or_zero(index) != term:
            return
        pr = self.trk.progress.get(self.id)
        if pr is None:
            return
        if pr.maybe_update(index) and self.maybe_commit():
            self.release_pending_read_index_messages()
            self.bcast_append()

    def increase_uncommitted_size(self, ents: list[Entry]) -> bool:
        s = payload_size(ents)
        # Always accept one proposal when nothing is uncommitted, however large, so that a big
        # entry cannot be stuck forever; empty entries (leader no-op) always pass.
        if (
            self.uncommitted_size > 0
            and s > 0
            and self.uncommitted_size + s > (self.max_uncommitted_size)
        ):
            return False
        self.uncommitted_size += s
        return True

    def reduce_uncommitted_size(self, ents: list[Entry]) -> None:
        s = payload_size(ents)
        self.uncommitted_size = max(0, self.uncommitted_size - s)

    # -- roles ----------------------------------------------------------------------------

    def reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.trk.reset_votes()
        last = self.raft_log.last_index()
        persisted = self.raft_log.persisted_index()
        for i, pr in list(self.trk.progress.items()):
            self.trk.progress[i] = Progress(
                match=persisted if i == self.id else 0,
                next=last + 1,
                inflights=self.trk.new_inflights(),
                is_learner=pr.is_learner,
            )
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(self.read_only.option)
        self.pending_read_index_messages = []

    def become_follower(self, term: int, lead: int) -> None:
        self.reset(term)
        self.lead = lead
        self.state = StateType.FOLLOWER

    def become_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self.reset(self.term + 1)
        self.vote = self.id
        self.state = StateType.CANDIDATE

    def become_pre_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # Unlike a candidate, a pre-candidate changes neither its term nor its vote: a failed
        # pre-vote leaves no trace that could disrupt the cluster.
        self.trk.reset_votes()
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE

    def become_leader(self) -> None:
        if self.state == StateType.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self.reset(self.term)
        self.lead = self.id
        self.state = StateType.LEADER
        pr = self.trk.progress[self.id]
        pr.become_replicate()
        pr.recent_active = True
        # There may be an unapplied conf change in the log; refuse new ones until everything
        # up to here is applied (cheaper than scanning the tail).
        self.pending_conf_index = self.raft_log.last_index()
        # The empty entry of the new term: committing it commits every older entry (the commit
        # rule only counts replicas of current-term entries).
        if not self.append_entry([Entry(Type=raft_pb2.EntryNormal)]):
            raise AssertionError("empty entry was dropped")

    def promotable(self) -> bool:
        """May this node become leader? Only voters, and not while installing a snapshot."""
        pr = self.trk.progress.get(self.id)
        return (
            pr is not None
            and not pr.is_learner
            and not self.raft_log.has_next_or_in_progress_snapshot()
        )

    # -- timers ---------------------------------------------------------------------------

    def tick(self) -> None:
        if self.state == StateType.LEADER:
            self.tick_heartbeat()
        else:
            self.tick_election()

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def reset_randomized_election_timeout(self) -> None:
        # Randomized in [election_timeout, 2*election_timeout) so that split votes are unlikely.
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )

    def tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(type=raft_pb2.MsgHup))

    def tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(type=raft_pb2.MsgCheckQuorum))
            # A transfer not finished within an election timeout is abandoned.
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(type=raft_pb2.MsgBeat))

    # -- elections ------------------------------------------------------------------------

    def has_unapplied_conf_changes(self) -> bool:
        if self.raft_log.applied >= self.raft_log.committed:
            return False
        ents = self.raft_log.slice(self.raft_log.applied + 1, self.raft_log.committed + 1)
        return any(e.Type == raft_pb2.EntryConfChange for e in ents)

    def hup(self, t: CampaignType) -> None:
        if self.state == StateType.LEADER:
            return
        if not self.promotable():
            return
        # A committed but unapplied conf change could change who may vote: wait for it.
        if self.has_unapplied_conf_changes():
            return
        self.campaign(t)

    def campaign(self, t: CampaignType) -> None:
        if t == CampaignType.PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = raft_pb2.MsgPreVote
            # Pre-votes ask about the next term without moving to it.
            term = self.term + 1
        else:
            self.become_candidate()
            vote_msg = raft_pb2.MsgVote
            term = self.term
        # Our own vote counts at once: the caller persists it (HardState.vote) before sending the
        # vote requests of this Ready.
        _, _, res = self.poll(self.id, vote_resp_type(vote_msg), True)
        if res == quorum.VoteResult.WON:
            # A single-voter cluster wins right away.
            if t == CampaignType.PRE_ELECTION:
                self.campaign(CampaignType.ELECTION)
            else:
                self.become_leader()
            return
        last_index, last_term = self.raft_log.last_index(), self.raft_log.last_term()
        ctx = CAMPAIGN_TRANSFER if t == CampaignType.TRANSFER else b""
        for i in sorted(self.trk.config.voters):
            if i == self.id:
                continue
            self.send(
                Message(
                    type=vote_msg,
                    to=i,
                    term=term,
                    index=last_index,
                    logTerm=last_term,
                    context=ctx,
                )
            )

    def poll(
        self, node_id: int, t: raft_pb2.MessageType.ValueType, granted: bool
    ) -> tuple[int, int, quorum.VoteResult]:
        self.trk.record_vote(node_id, granted)
        return self.trk.tally_votes()

    # -- step -----------------------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Process one message. Raises ProposalDroppedError for a proposal that cannot be taken."""
        frm = msg_from(m)
        if m.term == 0:
            # A local message (or a forwarded proposal / read request).
            pass
        elif m.term > self.term:
            if m.type in (raft_pb2.MsgVote, raft_pb2.MsgPreVote):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # Leader lease: we heard from a leader within the minimum election timeout,
                    # so this candidate cannot be legitimate; do not even update our term
                    # (thesis 4.2.3). This keeps a removed or partitioned node from disrupting.
                    return
            if m.type == raft_pb2.MsgPreVote:
                # Never change our term in response to a pre-vote.
                pass
            elif m.type == raft_pb2.MsgPreVoteResp and not m.reject:
                # A granted pre-vote carries the future term we asked about; our term moves only
                # once we win the pre-vote and campaign for real.
                pass
            elif m.type in (raft_pb2.MsgApp, raft_pb2.MsgHeartbeat, raft_pb2.MsgSnap):
                self.become_follower(m.term, frm)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (
                raft_pb2.MsgHeartbeat,
                raft_pb2.MsgApp,
            ):
                # A leader of an older term: maybe we advanced our term while partitioned and
                # our votes are being ignored (leader lease). Tell it our term so it steps down
                # and the cluster can make progress at our term.
                self.send(Message(type=raft_pb2.MsgAppResp, to=frm))
            elif m.type == raft_pb2.MsgPreVote:
                # Reject explicitly: a pre-candidate with an older term must learn ours, or a
                # cluster mixing pre-vote with higher-term nodes could deadlock.
                self.send(
                    Message(type=raft_pb2.MsgPreVoteResp, to=frm, term=self.term, reject=True)
                )
            # Other stale messages are ignored.
            return

        if m.type == raft_pb2.MsgHup:
            self.hup(CampaignType.PRE_ELECTION if self.pre_vote else CampaignType.ELECTION)
        elif m.type in (raft_pb2.MsgVote, raft_pb2.MsgPreVote):
            self._step_vote_request(m, frm)
        elif self.state == StateType.LEADER:
            self._step_leader(m, frm)
        elif self.state in (StateType.CANDIDATE, StateType.PRE_CANDIDATE):
            self._step_candidate(m, frm)
        else:
            self._step_follower(m, frm)

    def _step_vote_request(self, m: Message, frm: int) -> None:
        can_vote = (
            # A repeat of the vote we already cast,
            self.vote == frm
            # or we have not voted and know no leader in this term,
            or (self.vote == NONE and self.lead == NONE)
            # or a pre-vote for a future term (it binds nothing).
            or (m.type == raft_pb2.MsgPreVote and m.term > self.term)
        )
        # Election restriction: only a candidate whose log is at least as up to date as ours.
        # Learners answer too: a learner promoted by a config it has not applied yet must be able
        # to vote; candidates only count votes of members that are voters in their config.
        if can_vote and self.raft_log.is_up_to_date(m.index, m.logTerm):
            self.send(Message(type=vote_resp_type(m.type), to=frm, term=m.term))
            if m.type == raft_pb2.MsgVote:
                # Only real votes are recorded, and granting one resets our election timer.
                self.election_elapsed = 0
                self.vote = frm
        else:
            self.send(Message(type=vote_resp_type(m.type), to=frm, term=self.term, reject=True))

    def _step_leader(self, m: Message, frm: int) -> None:
        t = m.type
        # Messages that need no progress of the sender.
        if t == raft_pb2.MsgBeat:
            self.bcast_heartbeat()
            return
        if t == raft_pb2.MsgCheckQuorum:
            if not self.trk.quorum_active():
                # Check-quorum: we did not hear from a quorum for an election timeout; another
                # leader may exist. Stop serving (and stop taking proposals) as leader.
                self.become_follower(self.term, NONE)
            for i, other in self.trk.progress.items():
                if i != self.id:
                    other.recent_active = False
            return
        if t == raft_pb2.MsgProp:
            self._step_leader_propose(m)
            return
        if t == raft_pb2.MsgReadIndex:
            # Postpone until this leader committed an entry of its term: before that its commit
            # index may be behind the previous leader's, and a read at it could be stale.
            if not self.committed_entry_in_current_term():
                self.pending_read_index_messages.append(m)
                return
            self.send_read_index_response(m)
            return

        pr = self.trk.progress.get(frm)
        if pr is None:
            return
        if t == raft_pb2.MsgAppResp:
            self._handle_append_response(m, frm, pr)
        elif t == raft_pb2.MsgHeartbeatResp:
            pr.recent_active = True
            pr.msg_app_flow_paused = False
            # The heartbeat carried the commit index; entries may still be missing (or the
            # follower is probing): this is the retry path for lost MsgApps.
            if pr.match < self.raft_log.last_index() or pr.state == ProgressState.PROBE:
                self.send_append(frm)
            if self.read_only.option != ReadOnlyOption.SAFE or not m.context:
                return
            acks = self.read_only.recv_ack(frm, m.context)
            if acks is None:
                return
            if quorum.vote_result(self.trk.config.voters, acks) != quorum.VoteResult.WON:
                return
            for rs in self.read_only.advance(m.context):
                resp = self.response_to_read_index_req(rs.req, rs.index)
                if resp is not None:
                    self.send(resp)
        elif t == raft_pb2.MsgSnapStatus:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                # The snapshot did not arrive: forget it before probing, or we would probe from
                # the snapshot index as if it had been applied.
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for the follower's MsgAppResp (success) or a heartbeat (failure) before the
            # next MsgApp.
            pr.msg_app_flow_paused = True
        elif t == raft_pb2.MsgUnreachable:
            # Optimistic replication to an unreachable node most likely lost a MsgApp.
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
        elif t == raft_pb2.MsgTransferLeader:
            self._step_leader_transfer(frm, pr)

    def _step_leader_propose(self, m: Message) -> None:
        if not m.entries:
            raise AssertionError("stepped empty MsgProp")
        if self.id not in self.trk.progress:
            # Removed from the configuration while leader: take no new proposals.
            raise ProposalDroppedError("leader is not a member")
        if self.lead_transferee != NONE:
            raise ProposalDroppedError("leadership transfer in progress")
        li = self.raft_log.last_index()
        ents: list[Entry] = []
        for i, e in enumerate(m.entries):
            if e.Type == raft_pb2.EntryConfChangeV2:
                raise ProposalDroppedError("ConfChangeV2 (joint consensus) is not supported")
            if e.Type == raft_pb2.EntryConfChange:
                if self.pending_conf_index > self.raft_log.applied:
                    # One change at a time: the previous one is not applied yet. Keep the slot
                    # (the proposer waits on it) but make it a no-op.
                    ents.append(Entry(Type=raft_pb2.EntryNormal))
                    continue
                self.pending_conf_index = li + i + 1
            # Fresh entries: the message's own objects may be shared by a retransmission.
            ents.append(Entry(Type=e.Type, Data=e.Data))
        if not self.append_entry(ents):
            raise ProposalDroppedError("too many uncommitted entries")
        self.bcast_append()

    def _step_leader_transfer(self, transferee: int, pr: Progress) -> None:
        if pr.is_learner:
            return
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return  # already in progress
            self.abort_leader_transfer()
        if transferee == self.id:
            return
        # The transfer must finish within an election timeout (tick_heartbeat aborts it).
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.raft_log.last_index():
            self.send_timeout_now(transferee)
        else:
            # Catch the transferee up first; MsgTimeoutNow follows its acknowledgement.
            self.send_append(transferee)

    def _handle_append_response(self, m: Message, frm: int, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            # rejectHint/logTerm: where the follower's log may match (fast backtracking).
            next_probe_idx = m.rejectHint
            if m.logTerm > 0:
                # Skip all our entries with a term above the follower's at the hint: they cannot
                # match either.
                next_probe_idx, _ = self.raft_log.find_conflict_by_term(m.rejectHint, m.logTerm)
            if pr.maybe_decr_to(m.index, next_probe_idx):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self.send_append(frm)
            return
        old_paused = pr.is_paused()
        if not (
            pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE)
        ):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self.raft_log.first_index():
            # The follower caught up (from the snapshot or otherwise) to where our log starts.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self.maybe_commit():
            # An entry of our term is committed: pending reads may now be served.
            self.release_pending_read_index_messages()
            self.bcast_append()
        elif old_paused:
            # The follower may lack the latest commit index, tell it.
            self.send_append(frm)
        # Flow control freed slots: send as many (size-limited) MsgApps as allowed.
        while self.maybe_send_append(frm, send_if_empty=False):
            pass
        if frm == self.lead_transferee and pr.match == self.raft_log.last_index():
            self.send_timeout_now(frm)

    def _step_candidate(self, m: Message, frm: int) -> None:
        # Only count answers to our current candidacy: a candidate can still receive stale
        # MsgPreVoteResp of its pre-candidacy in this term.
        my_vote_resp = (
            raft_pb2.MsgPreVoteResp
            if self.state == StateType.PRE_CANDIDATE
            else raft_pb2.MsgVoteResp
        )
        t = m.type
        if t == raft_pb2.MsgProp:
            raise ProposalDroppedError(f"no leader at term {self.term}")
        if t == raft_pb2.MsgApp:
            # Only a leader of our term sends these (higher terms were handled in step).
            self.become_follower(m.term, frm)
            self.handle_append_entries(m, frm)
        elif t == raft_pb2.MsgHeartbeat:
            self.become_follower(m.term, frm)
            self.handle_heartbeat(m, frm)
        elif t == raft_pb2.MsgSnap:
            self.become_follower(m.term, frm)
            self.handle_snapshot(m, frm)
        elif t == my_vote_resp:
            _, _, res = self.poll(frm, t, not m.reject)
            if res == quorum.VoteResult.WON:
                if self.state == StateType.PRE_CANDIDATE:
                    self.campaign(CampaignType.ELECTION)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif res == quorum.VoteResult.LOST:
                # A pre-vote response may carry a future term; keep ours.
                self.become_follower(self.term, NONE)

    def _step_follower(self, m: Message, frm: int) -> None:
        t = m.type
        if t == raft_pb2.MsgProp:
            if self.lead == NONE:
                raise ProposalDroppedError(f"no leader at term {self.term}")
            if self.disable_proposal_forwarding:
                raise ProposalDroppedError("proposal forwarding is disabled")
            self._forward_to_leader(m)
        elif t == raft_pb2.MsgApp:
            self.election_elapsed = 0
            self.lead = frm
            self.handle_append_entries(m, frm)
        elif t == raft_pb2.MsgHeartbeat:
            self.election_elapsed = 0
            self.lead = frm
            self.handle_heartbeat(m, frm)
        elif t == raft_pb2.MsgSnap:
            self.election_elapsed = 0
            self.lead = frm
            self.handle_snapshot(m, frm)
        elif t == raft_pb2.MsgTransferLeader:
            if self.lead != NONE:
                self._forward_to_leader(m)
        elif t == raft_pb2.MsgTimeoutNow:
            # A transfer never uses pre-vote: the leader asked for it, nothing is partitioned.
            self.hup(CampaignType.TRANSFER)
        elif t == raft_pb2.MsgReadIndex:
            if self.lead != NONE:
                self._forward_to_leader(m)
        elif t == raft_pb2.MsgReadIndexResp:
            if len(m.entries) != 1:
                return
            self.read_states.append(ReadState(m.index, m.entries[0].Data))

    def _forward_to_leader(self, m: Message) -> None:
        fwd = Message()
        fwd.CopyFrom(m)
        fwd.to = self.lead
        fwd.term = 0
        self.send(fwd)

    # -- follower handlers ----------------------------------------------------------------

    def handle_append_entries(self, m: Message, frm: int) -> None:
        if m.index < self.raft_log.committed:
            # Everything up to our commit index matches the leader's log by definition.
            self.send(Message(type=raft_pb2.MsgAppResp, to=frm, index=self.raft_log.committed))
            return
        lastnewi = self.raft_log.maybe_append(m.index, m.logTerm, m.commit, list(m.entries))
        if lastnewi is not None:
            self.send(Message(type=raft_pb2.MsgAppResp, to=frm, index=lastnewi))
            return
        # Our log does not contain (index, logTerm). Hint at the largest (index, term) where it
        # may match: an index <= m.index with a term <= m.logTerm. The leader can then skip a
        # whole uncommitted tail of ours instead of probing index by index.
        hint_index = min(m.index, self.raft_log.last_index())
        hint_index, hint_term = self.raft_log.find_conflict_by_term(hint_index, m.logTerm)
        self.send(
            Message(
                type=raft_pb2.MsgAppResp,
                to=frm,
                index=m.index,
                reject=True,
                rejectHint=hint_index,
                logTerm=hint_term,
            )
        )

    def handle_heartbeat(self, m: Message, frm: int) -> None:
        self.raft_log.commit_to(m.commit)
        self.send(Message(type=raft_pb2.MsgHeartbeatResp, to=frm, context=m.context))

    def handle_snapshot(self, m: Message, frm: int) -> None:
        snap = m.snapshot
        if self.restore(snap):
            self.send(Message(type=raft_pb2.MsgAppResp, to=frm, index=self.raft_log.last_index()))
        else:
            self.send(Message(type=raft_pb2.MsgAppResp, to=frm, index=self.raft_log.committed))

    def restore(self, snap: raft_pb2.Snapshot) -> bool:
        """Install a snapshot from the leader; False if it brings nothing new."""
        meta = snap.metadata
        if meta.index <= self.raft_log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            # Defense in depth: only followers install snapshots.
            self.become_follower(self.term + 1, NONE)
            return False
        cs = meta.conf_state
        if self.id not in set(cs.voters) | set(cs.learners):
            # We would not be in our own configuration; refuse rather than corrupt the tracker.
            return False
        if self.raft_log.match_term(meta.index, meta.term):
            # We already have the snapshot's last entry: just fast-forward the commit index.
            self.raft_log.commit_to(meta.index)
            return False
        own = Snapshot()
        own.CopyFrom(snap)
        self.raft_log.restore(own)
        self.trk = ProgressTracker(self.trk.max_inflight, self.trk.max_inflight_bytes)
        cfg, prs = confchange.restore(self.trk, self.raft_log.last_index(), cs)
        self.switch_to_config(cfg, prs)
        return True

    # -- configuration --------------------------------------------------------------------

    def apply_conf_change(self, cc: raft_pb2.ConfChange) -> raft_pb2.ConfState:
        cfg, prs = confchange.Changer(self.trk, self.raft_log.last_index()).simple(cc)
        return self.switch_to_config(cfg, prs)

    def switch_to_config(self, cfg: TrackerConfig, prs: ProgressMap) -> raft_pb2.ConfState:
        self.trk.config = cfg
        self.trk.progress = prs
        cs = self.trk.conf_state()
        own = prs.get(self.id)
        self.is_learner = own is not None and own.is_learner
        if (own is None or self.is_learner) and self.state == StateType.LEADER:
            # Removed or demoted while leader.
            if self.step_down_on_removal:
                self.become_follower(self.term, NONE)
            return cs
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        if self.maybe_commit():
            # Fewer voters may mean a smaller quorum: entries may be committed now.
            self.bcast_append()
        else:
            # Probe newly added members right away instead of waiting for a heartbeat.
            for i in sorted(self.trk.progress):
                if i != self.id:
                    self.maybe_send_append(i, send_if_empty=False)
        if self.lead_transferee != NONE and self.lead_transferee not in cfg.voters:
            self.abort_leader_transfer()
        return cs

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    # -- ReadIndex ------------------------------------------------------------------------

    def committed_entry_in_current_term(self) -> bool:
        return self.raft_log.term_or_zero(self.raft_log.committed) == self.term

    def send_read_index_response(self, m: Message) -> None:
        if self.trk.is_singleton():
            # The only voter: no one else can be leader, the commit index is current.
            resp = self.response_to_read_index_req(m, self.raft_log.committed)
            if resp is not None:
                self.send(resp)
            return
        if self.read_only.option == ReadOnlyOption.SAFE:
            ctx = m.entries[0].Data
            self.read_only.add_request(self.raft_log.committed, m)
            # We acknowledge our own leadership.
            self.read_only.recv_ack(self.id, ctx)
            self.bcast_heartbeat_with_ctx(ctx)
        else:
            resp = self.response_to_read_index_req(m, self.raft_log.committed)
            if resp is not None:
                self.send(resp)

    def response_to_read_index_req(self, req: Message, read_index: int) -> Message | None:
        frm = msg_from(req)
        if frm in (NONE, self.id):
            self.read_states.append(ReadState(read_index, req.entries[0].Data))
            return None
        return Message(
            type=raft_pb2.MsgReadIndexResp, to=frm, index=read_index, entries=req.entries
        )

    def release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages:
            return
        if not self.committed_entry_in_current_term():
            return
        msgs, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in msgs:
            self.send_read_index_response(m)
