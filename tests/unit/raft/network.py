"""A simulated cluster of RawNodes: a fake clock (tick counts) and a network the test controls.

Each ``Member`` owns a ``MemoryStorage`` (its disk) and a durable state machine (``applied``: the
history of applied entries, so that snapshots can carry it and safety can be compared). A member's
RawNode is driven exactly as the server drives it: take a Ready, persist it into the storage, hand
its messages to the network, apply, advance. Crashing a member drops its RawNode and whatever it
had not handed out; restarting builds a new RawNode from the storage alone.

The network holds messages in flight. The test decides when they are delivered, and may drop,
duplicate, reorder or delay them, partition the members or isolate one. Every Ready is checked
against the Raft safety properties as it is processed (``SafetyViolationError`` is raised at once):

- election safety: at most one leader per term;
- leader completeness: a new leader's log holds every entry applied anywhere;
- state machine safety: no two members apply different entries at the same index;
- leader append-only: a leader never rewrites its log within its term;
- log matching (``check_log_matching``): same index and term implies identical prefixes.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.raft import Config, ProposalDroppedError, StateType, msg_from
from pyetcd.raft.rawnode import RawNode, Ready, SnapshotStatus, StepPeerNotFoundError
from pyetcd.raft.read_only import ReadOnlyOption, ReadState
from pyetcd.raft.storage import CompactedError, MemoryStorage

Message = raft_pb2.Message

# (term, type, data) of an applied entry; its index is its position + 1 in the history.
AppliedEntry = tuple[int, int, bytes]


class SafetyViolationError(AssertionError):
    """A Raft safety property was broken."""


def encode_history(history: list[AppliedEntry]) -> bytes:
    return json.dumps([[t, ty, d.hex()] for t, ty, d in history]).encode()


def decode_history(data: bytes) -> list[AppliedEntry]:
    return [(t, ty, bytes.fromhex(d)) for t, ty, d in json.loads(data)]


@dataclass
class Member:
    id: int
    storage: MemoryStorage
    node: RawNode | None
    # The durable state machine: every entry applied so far, in index order.
    applied: list[AppliedEntry] = field(default_factory=list)
    conf_state: raft_pb2.ConfState = field(default_factory=raft_pb2.ConfState)
    read_states: list[ReadState] = field(default_factory=list)
    # Every Ready handed out (for assertions on what was persisted or sent).
    readies: list[Ready] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.node is not None

    @property
    def raw(self) -> RawNode:
        if self.node is None:
            raise AssertionError(f"member {self.id} is crashed")
        return self.node

    def applied_data(self) -> list[bytes]:
        """Data of applied normal entries, without the leaders' empty entries."""
        return [d for _, ty, d in self.applied if ty == raft_pb2.EntryNormal and d]

    def log_entries(self) -> list[raft_pb2.Entry]:
        """The member's current log: in-memory if alive, else what its storage holds."""
        if self.node is not None:
            return self.node.raft.raft_log.all_entries()
        return self.storage.entries(self.storage.first_index(), self.storage.last_index() + 1)


class Network:
    """Members plus the messages in flight between them."""

    def __init__(
        self,
        voters: Iterable[int],
        learners: Iterable[int] = (),
        *,
        seed: int = 0,
        pre_vote: bool = True,
        check_quorum: bool = True,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        max_size_per_msg: int = 1 << 20,
        max_inflight_msgs: int = 256,
        read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE,
        extra_members: Iterable[int] = (),
    ) -> None:
        """Members ``voters`` + ``learners`` start with that configuration; ``extra_members``
        start with an empty one (nodes that will join through a conf change)."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.settings = {
            "pre_vote": pre_vote,
            "check_quorum": check_quorum,
            "election_tick": election_tick,
            "heartbeat_tick": heartbeat_tick,
            "max_size_per_msg": max_size_per_msg,
            "max_inflight_msgs": max_inflight_msgs,
        }
        self.read_only_option = read_only_option
        voters, learners = list(voters), list(learners)
        self.members: dict[int, Member] = {}
        for i in [*voters, *learners]:
            self.add_member(i)
            # Bootstrapped like etcd: the initial membership is a run of ConfChange entries at
            # the head of every initial member's log; members added later replay it.
            self.members[i].raw.bootstrap(voters, learners)
        for i in extra_members:
            self.add_member(i)
        self.in_flight: list[Message] = []
        # Messages matching any of these predicates are lost (targeted faults).
        self.filters: list[Callable[[Message], bool]] = []
        # Directed links that lose every message.
        self.cut: set[tuple[int, int]] = set()
        # Random faults applied at delivery.
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.reorder = False
        # Safety bookkeeping.
        self.leaders_by_term: dict[int, int] = {}
        self.committed: dict[int, AppliedEntry] = {}
        self._leader_logs: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.delivered = 0
        self.dropped = 0
        # Persist and apply the bootstrap entries.
        self.stabilize()

    def config(self, i: int, applied: int = 0) -> Config:
        # Each member draws its election timeouts from its own seeded generator.
        rng = random.Random(self.seed * 1_000_003 + i)
        return Config(
            id=i,
            storage=self.members[i].storage,
            applied=applied,
            rng=rng,
            read_only_option=self.read_only_option,
            **self.settings,  # type: ignore[arg-type]
        )

    # -- accessors --------------------------------------------------------------------------

    def __getitem__(self, i: int) -> Member:
        return self.members[i]

    def alive(self) -> list[Member]:
        return [m for m in self.members.values() if m.alive]

    def leader(self) -> int | None:
        """The live leader of the highest term, if any."""
        best: tuple[int, int] | None = None
        for m in self.alive():
            r = m.raw.raft
            if r.state == StateType.LEADER and (best is None or r.term > best[0]):
                best = (r.term, m.id)
        return best[1] if best else None

    def state(self, i: int) -> StateType:
        return self.members[i].raw.raft.state

    def term(self, i: int) -> int:
        return self.members[i].raw.raft.term

    # -- faults -----------------------------------------------------------------------------

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut every link between members of different groups."""
        sets = [set(g) for g in groups]
        self.heal()
        for a in self.members:
            for b in self.members:
                ga = next((k for k, s in enumerate(sets) if a in s), None)
                gb = next((k for k, s in enumerate(sets) if b in s), None)
                if a != b and ga != gb:
                    self.cut.add((a, b))

    def isolate(self, i: int) -> None:
        for j in self.members:
            if j != i:
                self.cut.add((i, j))
                self.cut.add((j, i))

    def heal(self) -> None:
        self.cut.clear()

    def crash(self, i: int) -> None:
        """Lose the member's memory; its storage (what it persisted) survives."""
        self.members[i].node = None

    def restart(self, i: int) -> None:
        m = self.members[i]
        if m.alive:
            raise AssertionError(f"member {i} is running")
        # Like etcd: restart from the snapshot and replay the log after it; entries the state
        # machine already holds are recognized (consistent index) and not re-applied, but
        # conf changes are re-applied to Raft's configuration.
        snap = m.storage.snapshot()
        m.conf_state = raft_pb2.ConfState()
        m.conf_state.CopyFrom(snap.metadata.conf_state)
        m.node = RawNode(self.config(i, applied=snap.metadata.index))

    def add_member(self, i: int) -> None:
        """A new, empty member (to join through a conf change)."""
        self.members[i] = Member(i, MemoryStorage(), None)
        self.members[i].node = RawNode(self.config(i))

    # -- driving ----------------------------------------------------------------------------

    def tick(self, ids: Iterable[int] | None = None, n: int = 1) -> None:
        targets = list(ids) if ids is not None else list(self.members)
        for _ in range(n):
            for i in targets:
                m = self.members[i]
                if m.alive:
                    m.raw.tick()

    def campaign(self, i: int) -> None:
        self.members[i].raw.campaign()

    def propose(self, i: int, data: bytes) -> bool:
        """Propose on member ``i``; False if the proposal was dropped."""
        try:
            self.members[i].raw.propose(data)
        except ProposalDroppedError:
            return False
        return True

    def process(self, i: int) -> bool:
        """Handle one Ready of member ``i`` the way the server does; False if none."""
        m = self.members[i]
        if not m.alive or not m.raw.has_ready():
            return False
        node = m.raw
        rd = node.ready()
        m.readies.append(rd)
        if rd.soft_state is not None and rd.soft_state.raft_state == StateType.LEADER:
            self._check_new_leader(m)
        # 1. Persist.
        if rd.snapshot is not None:
            m.storage.apply_snapshot(rd.snapshot)
        m.storage.append(rd.entries)
        if rd.hard_state is not None:
            m.storage.set_hard_state(rd.hard_state)
        # 2. Send.
        for msg in rd.messages:
            if msg.type == raft_pb2.MsgSnap:
                self._merge_snapshot(m, msg)
            self.in_flight.append(msg)
        # 3. Apply.
        if rd.snapshot is not None:
            self._apply_snapshot(m, rd.snapshot)
        for e in rd.committed_entries:
            self._apply_entry(m, e)
        m.read_states.extend(rd.read_states)
        # 4. Advance.
        node.advance(rd)
        if node.raft.state == StateType.LEADER:
            self._check_leader_append_only(m)
        return True

    def _merge_snapshot(self, m: Member, msg: Message) -> None:
        """Send the state machine as of now, like etcd's createMergedSnapshotMessage.

        The stored snapshot may predate conf changes (a member added after it would not find
        itself in its ConfState); etcd's transport sends the current applied state instead.
        """
        applied = m.raw.raft.raft_log.applied
        if applied <= msg.snapshot.metadata.index:
            return
        merged = raft_pb2.Snapshot(data=encode_history(m.applied[:applied]))
        merged.metadata.index = applied
        merged.metadata.term = m.raw.raft.raft_log.term(applied)
        merged.metadata.conf_state.CopyFrom(m.conf_state)
        msg.snapshot.CopyFrom(merged)

    def _apply_snapshot(self, m: Member, snap: raft_pb2.Snapshot) -> None:
        history = decode_history(snap.data)
        if len(history) != snap.metadata.index:
            raise SafetyViolationError(f"snapshot at {snap.metadata.index} holds {len(history)}")
        if history[: len(m.applied)] != m.applied:
            raise SafetyViolationError(f"member {m.id}: snapshot contradicts applied entries")
        for idx, entry in enumerate(history, start=1):
            self._record_committed(m.id, idx, entry)
        m.applied = history
        m.conf_state = raft_pb2.ConfState()
        m.conf_state.CopyFrom(snap.metadata.conf_state)

    def _apply_entry(self, m: Member, e: raft_pb2.Entry) -> None:
        entry: AppliedEntry = (e.Term, e.Type, e.Data)
        if e.Index <= len(m.applied):
            # Replay after a restart: must be what the state machine already applied.
            if m.applied[e.Index - 1] != entry:
                raise SafetyViolationError(f"member {m.id} replays a different entry at {e.Index}")
        elif e.Index == len(m.applied) + 1:
            self._record_committed(m.id, e.Index, entry)
            m.applied.append(entry)
        else:
            raise SafetyViolationError(f"member {m.id} applies {e.Index} after {len(m.applied)}")
        if e.Type == raft_pb2.EntryConfChange:
            cc = raft_pb2.ConfChange()
            cc.ParseFromString(e.Data)
            m.conf_state = m.raw.apply_conf_change(cc)

    def _record_committed(self, member: int, index: int, entry: AppliedEntry) -> None:
        seen = self.committed.setdefault(index, entry)
        if seen != entry:
            raise SafetyViolationError(
                f"state machine safety: member {member} applied {entry} at {index}, "
                f"another member applied {seen}"
            )

    def _check_new_leader(self, m: Member) -> None:
        r = m.raw.raft
        prev = self.leaders_by_term.setdefault(r.term, m.id)
        if prev != m.id:
            raise SafetyViolationError(
                f"election safety: {prev} and {m.id} both lead term {r.term}"
            )
        # Leader completeness: every committed (applied anywhere) entry is in the new log.
        log = r.raft_log
        first = log.first_index()
        for idx, (term, _, _) in self.committed.items():
            if idx < first:
                continue  # in the leader's snapshot, which only holds committed entries
            if idx > log.last_index() or log.term(idx) != term:
                raise SafetyViolationError(
                    f"leader completeness: leader {m.id} of term {r.term} lacks committed "
                    f"entry {idx} (term {term})"
                )

    def _check_leader_append_only(self, m: Member) -> None:
        r = m.raw.raft
        key = (m.id, r.term)
        current = [(e.Index, e.Term) for e in r.raft_log.all_entries()]
        before = self._leader_logs.get(key)
        if before is not None:
            first = current[0][0] if current else r.raft_log.first_index()
            kept = [x for x in before if x[0] >= first]
            if current[: len(kept)] != kept:
                raise SafetyViolationError(
                    f"leader append-only: {m.id} rewrote its log in {r.term}"
                )
        self._leader_logs[key] = current

    def block(self, predicate: Callable[[Message], bool]) -> None:
        """Lose every message matching ``predicate`` until ``unblock``."""
        self.filters.append(predicate)

    def unblock(self) -> None:
        self.filters.clear()

    def deliver(self, msg: Message) -> None:
        to, frm = msg.to, msg_from(msg)
        if any(f(msg) for f in self.filters):
            self._lost(msg, unreachable=False)
            return
        target = self.members.get(to)
        if target is None or not target.alive or (frm, to) in self.cut:
            self._lost(msg, unreachable=True)
            return
        self.delivered += 1
        # A proposal without a leader, or a response from a removed member, is simply lost.
        with contextlib.suppress(ProposalDroppedError, StepPeerNotFoundError):
            target.raw.step(msg)
        if msg.type == raft_pb2.MsgSnap:
            self._report_snapshot(msg, SnapshotStatus.FINISH)

    def _lost(self, msg: Message, unreachable: bool) -> None:
        """A message did not arrive; tell the sender what a real transport would tell it."""
        self.dropped += 1
        if msg.type == raft_pb2.MsgSnap:
            # etcd's snapshot sender always reports the outcome of a snapshot transfer.
            self._report_snapshot(msg, SnapshotStatus.FAILURE)
        elif unreachable:
            sender = self.members.get(msg_from(msg))
            if sender is not None and sender.alive:
                sender.raw.report_unreachable(msg.to)

    def _report_snapshot(self, msg: Message, status: SnapshotStatus) -> None:
        sender = self.members.get(msg_from(msg))
        if sender is not None and sender.alive:
            sender.raw.report_snapshot(msg.to, status)

    def deliver_all(self) -> int:
        """Deliver (subject to the random faults) every message now in flight."""
        batch, self.in_flight = self.in_flight, []
        if self.reorder:
            self.rng.shuffle(batch)
        for msg in batch:
            if self.drop_rate and self.rng.random() < self.drop_rate:
                self._lost(msg, unreachable=False)
                continue
            if self.dup_rate and self.rng.random() < self.dup_rate:
                dup = Message()
                dup.CopyFrom(msg)
                self.in_flight.append(dup)
            self.deliver(msg)
        return len(batch)

    def deliver_some(self, k: int) -> None:
        """Deliver ``k`` messages picked at random (the rest stay delayed in flight)."""
        for _ in range(min(k, len(self.in_flight))):
            msg = self.in_flight.pop(self.rng.randrange(len(self.in_flight)))
            if self.drop_rate and self.rng.random() < self.drop_rate:
                self._lost(msg, unreachable=False)
                continue
            if self.dup_rate and self.rng.random() < self.dup_rate:
                dup = Message()
                dup.CopyFrom(msg)
                self.in_flight.append(dup)
            self.deliver(msg)

    def drain(self, ids: Iterable[int] | None = None) -> bool:
        """Process pending Readies; True if any."""
        targets = list(ids) if ids is not None else sorted(self.members)
        worked = False
        for i in targets:
            while self.process(i):
                worked = True
        return worked

    def stabilize(self, max_rounds: int = 10_000) -> None:
        """Process Readies and deliver messages until the cluster is quiet (no ticks)."""
        for _ in range(max_rounds):
            worked = self.drain()
            if not self.in_flight and not worked:
                return
            self.deliver_all()
        raise AssertionError("network did not stabilize")

    def tick_and_stabilize(self, n: int = 1) -> None:
        for _ in range(n):
            self.tick()
            self.stabilize()

    def elect(self, i: int) -> None:
        """Make member ``i`` leader by campaigning, then settle."""
        self.campaign(i)
        self.stabilize()
        if self.leader() != i:
            raise AssertionError(f"{i} did not win the election (leader: {self.leader()})")

    def tick_until_leader(self, max_ticks: int = 500) -> int:
        for _ in range(max_ticks):
            lead = self.leader()
            if lead is not None and all(
                m.raw.raft.lead == lead for m in self.alive() if not self.isolated(m.id)
            ):
                return lead
            self.tick_and_stabilize()
        raise AssertionError("no leader elected")

    def isolated(self, i: int) -> bool:
        return any((i, j) in self.cut for j in self.members if j != i)

    def compact(self, i: int, keep: int = 0) -> int:
        """Snapshot member ``i``'s state machine at its applied index and compact its log,
        keeping ``keep`` entries before that index for slow followers (etcd keeps 5 000)."""
        m = self.members[i]
        # Raft's applied index, not the state machine's: after a restart the log is replayed
        # from the snapshot and conf_state reflects the replay point.
        applied = m.raw.raft.raft_log.applied
        if applied <= m.storage.snapshot().metadata.index:
            return m.storage.snapshot().metadata.index
        m.storage.create_snapshot(applied, m.conf_state, encode_history(m.applied[:applied]))
        compact_to = applied - keep
        if compact_to > m.storage.first_index() - 1:
            with contextlib.suppress(CompactedError):
                m.storage.compact(compact_to)
        return applied

    # -- checks -----------------------------------------------------------------------------

    def check_log_matching(self) -> None:
        """If two logs hold an entry with the same index and term, they are identical up to it."""
        logs = {m.id: {e.Index: e for e in m.log_entries()} for m in self.members.values()}
        ids = sorted(logs)
        for a_pos, a in enumerate(ids):
            for b in ids[a_pos + 1 :]:
                la, lb = logs[a], logs[b]
                common = sorted(set(la) & set(lb), reverse=True)
                top = next((i for i in common if la[i].Term == lb[i].Term), None)
                if top is None:
                    continue
                for i in common:
                    if i <= top and la[i] != lb[i]:
                        raise SafetyViolationError(
                            f"log matching: {a} and {b} agree at {top} but differ at {i}"
                        )

    def check_applied_prefixes(self) -> None:
        """Every member's applied history is a prefix of the longest one."""
        histories = sorted((m.applied for m in self.members.values()), key=len)
        longest = histories[-1]
        for h in histories:
            if longest[: len(h)] != h:
                raise SafetyViolationError("applied histories diverge")
