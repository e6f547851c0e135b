"""The Raft loop of one member: etcd's raftNode (etcdserver/raft.go).

It drives the Raft state machine (``RawNode``): ticks it, steps the peers' messages into it, and
takes each ``Ready``: the entries, hard state and snapshot go to the WAL in a worker thread (what
is proposed while one fsync runs goes into the next Ready: group commit), the committed entries
go to the server to apply meanwhile, the persisted entries become visible to Raft through its
``MemoryStorage``, and the messages go out through the peer transport, a follower's only once
what they acknowledge is durable. It tracks the leader for the server and hands back what is
the server's to decide (apply, snapshots, what a change of role means) through
:class:`ReadyHandler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from pyetcd.panic import panic_on_invariant
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.walpb import record_pb2
from pyetcd.raft.raft import NONE, ProposalDroppedError, StateType
from pyetcd.raft.raft import Config as RaftConfig
from pyetcd.raft.rawnode import RawNode, Ready, SnapshotStatus, StepPeerNotFoundError
from pyetcd.raft.storage import MemoryStorage, StorageError
from pyetcd.server import errors
from pyetcd.server.config import ServerConfig
from pyetcd.server.metrics import ServerMetrics
from pyetcd.server.storage import Storage

log = logging.getLogger("pyetcd.server.etcdserver")
# Raft's own lines, as etcd's raft logger (a zap logger named "raft") writes them.
raft_log = logging.getLogger("raft")


class ReadyHandler(Protocol):
    """What the Raft loop hands to the server: etcd's apply channel, and its role changes."""

    def on_role_change(self, was_leader: bool, is_leader: bool) -> None: ...

    def apply_entries(self, entries: list[raft_pb2.Entry]) -> None: ...

    async def apply_snapshot(self, snap: raft_pb2.Snapshot) -> None: ...

    def send_snapshot(self, msg: raft_pb2.Message) -> None:
        """Send a lagging peer the current applied state (the MsgSnap Raft asked for)."""


class PeerSender(Protocol):
    """The transport's side the Raft loop uses."""

    def send(self, msgs: list[raft_pb2.Message]) -> list[raft_pb2.Message]:
        """Send; returns the messages that could not leave (no stream to their peer)."""
        ...


def restore_raft(
    cfg: ServerConfig, st: Storage, learner_by_member: Mapping[int, bool]
) -> tuple[RawNode, MemoryStorage, raft_pb2.ConfState]:
    """The Raft node over a MemoryStorage holding what the WAL and snap files hold, and the
    configuration of its snapshot. ``learner_by_member`` (each applied member: is it a learner)
    stands in for the configuration of a snapshot written without a ConfState."""
    raft_storage = MemoryStorage()
    conf_state = raft_pb2.ConfState()
    if st.snapshot is not None:
        snap = raft_pb2.Snapshot()
        snap.CopyFrom(st.snapshot)
        if not snap.metadata.conf_state.voters:
            snap.metadata.conf_state.voters.extend(
                sorted(i for i, learner in learner_by_member.items() if not learner)
            )
            snap.metadata.conf_state.learners.extend(
                sorted(i for i, learner in learner_by_member.items() if learner)
            )
        raft_storage.apply_snapshot(snap)
        conf_state.CopyFrom(snap.metadata.conf_state)
    raft_storage.append(st.entries)
    raft_storage.set_hard_state(st.hard_state)
    raw = RawNode(
        RaftConfig(
            id=st.member_id,
            storage=raft_storage,
            election_tick=cfg.election_ticks,
            heartbeat_tick=1,
            pre_vote=cfg.pre_vote,
            check_quorum=True,
            max_size_per_msg=1 << 20,
            max_inflight_msgs=512,
            # Bounded memory for proposals a slow quorum has not committed yet.
            max_uncommitted_entries_size=1 << 30,
            rng=random.Random(),
        )
    )
    return raw, raft_storage, conf_state


class RaftNode:
    """Ticks, steps and drains one member's Raft node; knows the leader."""

    def __init__(
        self,
        cfg: ServerConfig,
        st: Storage,
        raw: RawNode,
        raft_storage: MemoryStorage,
        *,
        metrics: ServerMetrics,
        handler: ReadyHandler,
    ) -> None:
        self.cfg = cfg
        self.member_id = st.member_id
        self._st = st
        self.raw = raw
        self.storage = raft_storage
        self.metrics = metrics
        self.handler = handler
        self.transport: PeerSender | None = None
        self.lead = NONE
        self.raft_state = StateType.FOLLOWER
        self.stopped = False
        # One thread writes the WAL and the snap files, in order.
        self.wal_executor = ThreadPoolExecutor(1, thread_name_prefix="wal")
        self._wake: asyncio.Event | None = None
        self._leader_wake: asyncio.Event | None = None
        self._unsent_proposals: list[tuple[float, raft_pb2.Message]] = []
        self._read_states: dict[bytes, asyncio.Future[int]] = {}
        self._advanced: list[asyncio.Future[None]] = []  # wait_raft_applied's waiters

    # ----- roles -----

    @property
    def term(self) -> int:
        return self.raw.raft.term

    @property
    def committed_index(self) -> int:
        return self.raw.raft.raft_log.committed

    @property
    def is_leader(self) -> bool:
        return self.raw.raft.state == StateType.LEADER

    @property
    def is_learner(self) -> bool:
        return self.raw.raft.is_learner

    def voters(self) -> list[int]:
        return list(self.raw.raft.trk.voter_nodes())

    def _on_soft_state(self, rd: Ready) -> None:
        soft = rd.soft_state
        assert soft is not None
        was_leader = self.raft_state == StateType.LEADER
        if soft.lead != self.lead:
            if soft.lead != NONE:
                self.metrics.leader_changes.inc()
                raft_log.info(
                    "raft.node: %x elected leader %x at term %d",
                    self.member_id,
                    soft.lead,
                    self.term,
                )
            else:
                raft_log.info(
                    "raft.node: %x lost leader %x at term %d", self.member_id, self.lead, self.term
                )
        self.lead = soft.lead
        self.raft_state = soft.raft_state
        if self.lead != NONE and self._leader_wake is not None:
            self._leader_wake.set()
        if self.lead != NONE and self._unsent_proposals:
            self._repropose_unsent()
        self.handler.on_role_change(was_leader, soft.raft_state == StateType.LEADER)

    def _repropose_unsent(self) -> None:
        unsent, self._unsent_proposals = self._unsent_proposals, []
        # Only proposals whose proposer still waits: after its timeout the client may have
        # retried, and a late second copy would surprise it.
        fresh_since = time.monotonic() - errors.REQUEST_TIMEOUT
        for since, m in unsent:
            if since < fresh_since:
                continue
            again = raft_pb2.Message(type=raft_pb2.MsgProp, entries=m.entries)
            setattr(again, "from", self.member_id)
            # Dropped again (no leader after all): its proposer times out, as with etcd.
            with contextlib.suppress(ProposalDroppedError):
                self.raw.step(again)

    async def wait_leader(self) -> None:
        """Wait until a leader is known; etcd's `no leader` after two election timeouts."""
        if self.lead != NONE:
            return
        assert self._leader_wake is not None
        deadline = time.monotonic() + 2 * self.cfg.election_timeout / 1000
        while self.lead == NONE:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stopped:
                raise errors.ErrNoLeader
            self._leader_wake.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can lose a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._leader_wake.wait()

    async def wait_raft_applied(self, index: int) -> None:
        """Until Raft itself counts ``index`` applied (``advance``).

        The server applies a Ready's committed entries while that Ready's own entries are
        still being written, so a client can hear that a conf change is done before Raft
        counts it applied; a next change proposed then would be turned into a no-op as racing
        the first (one change at a time), and its proposer would time out.
        """
        loop = asyncio.get_running_loop()
        while self.raw.raft.raft_log.applied < index and not self.stopped:
            fut: asyncio.Future[None] = loop.create_future()
            self._advanced.append(fut)
            await fut

    def release_advanced(self) -> None:
        """Wake every ``wait_raft_applied`` to look again (after an advance, and at stop)."""
        waiters, self._advanced = self._advanced, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # ----- before the loop starts -----

    def drain_sync(self) -> None:
        """Persist and apply what Raft has ready, on this thread: the replay at boot, before
        anything is served."""
        while self.raw.has_ready():
            rd = self.raw.ready()
            if rd.soft_state is not None:
                self._on_soft_state(rd)
            self._persist(rd)
            self._stabilize(rd)
            if rd.committed_entries:
                self.handler.apply_entries(rd.committed_entries)
            # Messages before start (none are expected: no peer has spoken yet) are dropped.
            self.raw.advance(rd)

    def start(self) -> None:
        """Called on the event loop before :meth:`run` and :meth:`tick_loop`."""
        self._wake = asyncio.Event()
        self._leader_wake = asyncio.Event()
        if self.cfg.initial_election_tick_advance and not self.is_leader:
            # etcd fast-forwards a fresh member's election clock to one tick before the timeout
            # so that a new cluster elects a leader quickly.
            for _ in range(max(self.cfg.election_ticks - 1, 0)):
                self.raw.tick()
        self._wake.set()

    # ----- the loop: persist, apply, send, advance -----

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def tick_loop(self) -> None:
        interval = self.cfg.heartbeat_seconds
        while True:
            await asyncio.sleep(interval)
            self.raw.tick()
            self.wake()

    async def next_round(self) -> None:
        """Wait to be woken, then handle every Ready the node has; the server's Raft loop
        calls this forever, looking at what was applied between rounds."""
        assert self._wake is not None
        await self._wake.wait()
        self._wake.clear()
        while self.raw.has_ready():
            await self._handle_ready(self.raw.ready())
        self.metrics.proposals_committed.set(self.committed_index)

    async def _handle_ready(self, rd: Ready) -> None:
        loop = asyncio.get_running_loop()
        if rd.soft_state is not None:
            self._on_soft_state(rd)
        persist = None
        if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
            persist = loop.run_in_executor(self.wal_executor, self._persist, rd)
        # A leader replicates while it writes its own log (Raft thesis 10.2.1, as etcd does):
        # its own entries count towards a commit only once persisted, so nothing is committed
        # early, and the followers' fsyncs overlap the leader's. A follower's answers must
        # wait until what they acknowledge is on disk.
        sent = False
        if rd.messages and self.raft_state == StateType.LEADER:
            self._send(rd.messages)
            sent = True
        # Committed entries are durable here already: apply them while the fsync runs. A
        # snapshot must be on disk before it replaces the state machine.
        if rd.committed_entries and rd.snapshot is None:
            self.handler.apply_entries(rd.committed_entries)
        if persist is not None:
            try:
                await persist
            except Exception:
                # etcd panics when the WAL cannot be written: a member that cannot persist must
                # not acknowledge anything more.
                log.critical("failed to write the WAL; stopping", exc_info=True)
                raise SystemExit(1) from None
        self._stabilize(rd)
        if rd.snapshot is not None:
            await self.handler.apply_snapshot(rd.snapshot)
            if rd.committed_entries:
                self.handler.apply_entries(rd.committed_entries)
        for rs in rd.read_states:
            fut = self._read_states.pop(rs.request_ctx, None)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)
        if rd.messages and not sent:
            self._send(rd.messages)
        self.raw.advance(rd)
        if self._advanced:
            self.release_advanced()

    def _persist(self, rd: Ready) -> None:
        """Write a Ready's snapshot, entries and hard state to disk (runs in the WAL thread)."""
        wal = self._st.wal
        if rd.snapshot is not None:
            meta = rd.snapshot.metadata
            # etcd's SaveSnap: the .snap file, then the WAL record that makes it usable.
            self._st.snapshotter.save_snap(rd.snapshot)
            wal.save_snapshot(
                record_pb2.Snapshot(index=meta.index, term=meta.term, conf_state=meta.conf_state)
            )
        hs = rd.hard_state if rd.hard_state is not None else raft_pb2.HardState()
        wal.save(hs, rd.entries)
        if rd.must_sync and not self.cfg.unsafe_no_fsync:
            start = time.perf_counter()
            wal.sync()
            self.metrics.wal_fsync.observe(time.perf_counter() - start)

    def _stabilize(self, rd: Ready) -> None:
        """What ``_persist`` wrote becomes visible to Raft through its storage (event loop)."""
        if rd.snapshot is not None:
            with contextlib.suppress(StorageError):
                self.storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.storage.append(rd.entries)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)

    def _send(self, msgs: Iterable[raft_pb2.Message]) -> None:
        plain: list[raft_pb2.Message] = []
        for m in msgs:
            if m.type == raft_pb2.MsgSnap:
                self.handler.send_snapshot(m)
            else:
                plain.append(m)
        if plain and self.transport is not None:
            for m in self.transport.send(plain):
                if m.type == raft_pb2.MsgProp:
                    # A proposal forwarded to a leader we have no stream to (it most likely
                    # died) never left this member: propose it again to the next leader
                    # instead of letting its client time out. Never sent, so never duplicated.
                    self._unsent_proposals.append((time.monotonic(), m))

    # ----- linearizable reads -----

    def read_index(self, ctx: bytes) -> asyncio.Future[int]:
        """Ask Raft for the commit index a read tagged ``ctx`` must wait for."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._read_states[ctx] = fut
        self.raw.read_index(ctx)
        self.wake()
        return fut

    def forget_read(self, ctx: bytes) -> None:
        self._read_states.pop(ctx, None)

    # ----- what the peers send -----

    def step(self, msg: raft_pb2.Message) -> None:
        """A Raft message from a peer."""
        if self.stopped:
            return
        # A forwarded proposal that cannot be taken now is simply lost (its proposer times out,
        # as with etcd), and so is a response from a member no longer in the configuration.
        # Anything else Raft raises here is a broken invariant (a commit index past the end of
        # a log that was lost, say): the member stops, as etcd's raft goroutine panics.
        try:
            self.raw.step(msg)
        except (ProposalDroppedError, StepPeerNotFoundError):
            pass
        except Exception as exc:
            panic_on_invariant(exc, f"a {msg.type} message from {getattr(msg, 'from'):x}")
            raise
        self.wake()

    def report_unreachable(self, peer_id: int) -> None:
        if self.stopped:
            return
        self.raw.report_unreachable(peer_id)
        self.wake()

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        if self.stopped:
            return
        self.raw.report_snapshot(peer_id, SnapshotStatus.FINISH if ok else SnapshotStatus.FAILURE)
        self.wake()

    def peer_lost(self, peer_id: int) -> None:
        """The stream to a peer broke. If it is our leader, it most likely died (its process
        closed the connection): bring the election clock to one tick before the timeout, as
        etcd does for a fresh member, instead of waiting a whole timeout after its last
        heartbeat. Pre-vote and the leader lease of the other members keep this from
        disturbing a leader that is in fact alive."""
        if self.stopped or peer_id != self.lead or self.is_leader:
            return
        r = self.raw.raft
        for _ in range(r.election_timeout):
            if r.election_elapsed >= r.election_timeout - 1:
                break
            self.raw.tick()
        self.wake()
