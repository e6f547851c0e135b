"""The etcd server of one member: proposals through the Raft log, apply, and the work around it.

Every write becomes an ``InternalRaftRequest`` entry proposed to the Raft node (``RawNode``); a
follower's Raft forwards it to the leader. The Raft loop (``raftnode.RaftNode``, etcd's raftNode)
persists each ``Ready`` and hands its committed entries here to apply to the MVCC store, the
lessor and the alarm list, while the WAL's fsync runs. Proposers are woken by request id when
their entry is applied. The backend is committed in batches by its own loop (every
``backend_batch_interval`` or ``backend_batch_limit`` writes); replaying the log after
``meta/consistent_index`` makes that safe across crashes.

Linearizable reads wait for a ReadIndex (one Raft round for every read queued meanwhile) and
then for the applied index to reach it; serializable reads are served from the applied state.
Membership changes are ConfChange entries, checked at apply time as etcd does; a lagging member
receives a snapshot built from the current applied state (the backend's bytes) through the
transport. The request surface clients see is ``v3_server.V3Server``; the apply chain is
``apply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyetcd import __version__, logutil, mvcc
from pyetcd.backend import contract
from pyetcd.backend.bbolt import BoltBackend
from pyetcd.fileutil import fsync_dir
from pyetcd.mvcc import WatchableStore
from pyetcd.panic import panic, panic_on_invariant
from pyetcd.proto.etcdserverpb import raft_internal_pb2, rpc_pb2
from pyetcd.proto.leasepb import lease_pb2
from pyetcd.proto.membershippb import membership_pb2
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.walpb import record_pb2
from pyetcd.raft.confchange import ConfChangeError
from pyetcd.raft.raft import NONE, ProposalDroppedError, StateType
from pyetcd.raft.rawnode import SnapshotStatus
from pyetcd.raft.storage import CompactedError, StorageError
from pyetcd.server import bootstrap, errors, storage
from pyetcd.server import compactor as compactor_mod
from pyetcd.server.apply import chain as apply_chain
from pyetcd.server.auth.store import AuthStore
from pyetcd.server.auth.tokens import AuthInfo, token_provider
from pyetcd.server.config import ServerConfig
from pyetcd.server.idutil import Generator
from pyetcd.server.kv_apply import (
    mvcc_error,
)
from pyetcd.server.lessor import LEASE_REVOKE_RATE, Lessor
from pyetcd.server.membership import (
    Cluster,
    Member,
    MembershipError,
    change_context,
    promote_context,
    ready_to_add_voter,
    ready_to_promote,
    ready_to_remove_voter,
    validate_change,
)
from pyetcd.server.metrics import (
    FuncCounters,
    FuncGauges,
    LabelGauge,
    PeerCollector,
    ServerMetrics,
)
from pyetcd.server.raftnode import RaftNode, restore_raft
from pyetcd.server.v2store import v2_store_json
from pyetcd.server.v3_server import OP_LEASE_RENEW, OP_LEASE_TTL
from pyetcd.server.v3api import CLUSTER_VERSION, member_pb
from pyetcd.transport import (
    PeerRequestError,
    PeerTLS,
    Transport,
    TransportError,
)

log = logging.getLogger(__name__)

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest
NOSPACE = rpc_pb2.NOSPACE
LEASE_EXPIRY_INTERVAL = 0.5
MAX_PENDING_REVOKES = 16
"""etcd's `maxPendingRevokes`: expired leases revoked concurrently."""
# etcd retries a ReadIndex that got no answer every 500 ms (readIndexRetryTime).
READ_INDEX_RETRY = 0.5
# A learner may be promoted once its log matches 90% of the leader's (etcd's readyPercent).
LEARNER_READY_PERCENT = 0.9
# etcd's HealthInterval: a peer counts as active if its stream was up for this long.
HEALTH_INTERVAL = 5.0

ErrTimeoutLeaderTransfer = errors.EtcdError(
    "etcdserver: request timed out, leader transfer took too long", errors.UNAVAILABLE
)

_CC_KIND = {
    raft_pb2.ConfChangeAddNode: "add",
    raft_pb2.ConfChangeAddLearnerNode: "add_learner",
    raft_pb2.ConfChangeRemoveNode: "remove",
    raft_pb2.ConfChangeUpdateNode: "update",
}

# Peer request operations (forwarded to the leader).
OP_PROMOTE = "member_promote"


class _ProposalDroppedError(Exception):
    """Raft did not take a proposal (no leader, a transfer, too much uncommitted): retry."""


class EtcdServer:
    """One member: owns the storage, the Raft node, the applied state and the background loops."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.metrics = ServerMetrics()
        # First: a peer certificate problem stops the member before it touches its data.
        self.peer_tls = PeerTLS.of(cfg.peer_tls, cfg.tls_options)
        existing = None
        if not storage.has_wal(cfg):
            existing = bootstrap.fetch_existing_cluster(cfg, self.peer_tls)
            bootstrap.refuse_if_bootstrapped(cfg, self.peer_tls)
        # A joining member talks to the members it was told about until the log it receives
        # lists them (etcd adds them as transport "remotes").
        self._remotes: dict[int, tuple[str, ...]] = (
            {i: m.peer_urls for i, m in existing.members.items()} if existing else {}
        )
        st = storage.open_storage(cfg, existing)
        self._st = st
        self.wal = st.wal
        self.member_id = st.member_id
        self.cluster_id = st.cluster_id
        self.lessor = Lessor(min_ttl=cfg.min_lease_ttl)
        self._sync_wake: asyncio.Event | None = None
        self._compaction_wake: asyncio.Event | None = None
        self.backend: BoltBackend = st.backend
        self.store = WatchableStore(
            self.backend,
            compaction_batch_limit=cfg.experimental_compaction_batch_limit,
            on_lease_change=self._on_lease_change,
            on_sync_needed=self._wake_sync,
        )
        self.alarms: set[tuple[int, int]] = set()
        self.members: dict[int, Member] = {}
        self.removed: set[int] = set()
        self.applied_index = 0
        self.applied_term = 0
        self._load_state_machine()
        # An --auth-token that cannot be used stops the member here (AuthOptionsError).
        self.auth = AuthStore(
            self.backend, token_provider(cfg.auth_token, cfg.auth_token_ttl), cfg.bcrypt_cost
        )
        # etcd's apply chain (auth, quota, backend); its checks and KV applier also serve the
        # reads that need no Raft.
        self.applier, backend_applier = apply_chain(self)
        self.kv_applier = backend_applier.kv
        self.idgen = Generator(self.member_id, time.time())

        raw, self.raft_storage, self.conf_state = restore_raft(
            cfg, st, {i: m.is_learner for i, m in self.members.items()}
        )
        self._snapshot_at = st.snapshot_index
        # The Raft loop (etcd's raftNode); the server proposes through its RawNode.
        self.node = RaftNode(cfg, st, raw, self.raft_storage, metrics=self.metrics, handler=self)
        self.raw = raw

        self._waiters: dict[int, asyncio.Future[Any]] = {}
        # Normal entries proposed in this loop iteration: (request id, data, deadline).
        self._batch: list[tuple[int, bytes, float]] = []
        self._deadlines: deque[tuple[float, int]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backend_wake: asyncio.Event | None = None
        self._read_wake: asyncio.Event | None = None
        self._read_waiters: list[asyncio.Future[None]] = []
        self._applied_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._applied_seq = 0
        self._backend_executor = ThreadPoolExecutor(1, thread_name_prefix="backend")
        self._commit_lock: asyncio.Lock | None = None
        # The backend commit whose write runs on the backend executor, if any.
        self._pending_commit: contract.PendingCommit | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        # Set when the member must stop by itself; ``exit_reason`` says why.
        self.exit_event: asyncio.Event | None = None
        # Set once this member's attributes are published (etcd's ReadyNotify).
        self.published = asyncio.Event()
        self.exit_reason = ""
        self.exit_code = 0
        self.transport = Transport(
            self.member_id, self.cluster_id, self, st.snapshotter.dir, tls=self.peer_tls
        )
        self.node.transport = self.transport
        self._boot()
        if not self.members and not self._remotes and cfg.initial_cluster_state == "existing":
            # Restarted before the log told it who the members are: ask the peers again.
            with contextlib.suppress(storage.StorageError):
                fetched = bootstrap.fetch_existing_cluster(cfg, self.peer_tls, attempts=1)
                if fetched is not None:
                    self._remotes = {i: m.peer_urls for i, m in fetched.members.items()}
        self._register_metrics()

    # ----- start-up -----

    def _load_state_machine(self) -> None:
        """(Re)build the applied state from the backend: MVCC, leases, alarms, members."""
        backend = self.backend
        self.lessor.restore(
            [lease_pb2.Lease.FromString(v) for _, v in backend.range(contract.LEASE, b"\x00")],
            time.monotonic(),
        )
        for key, lease_id in self.store.leased_keys():
            if lease_id in self.lessor:
                self.lessor.attach(lease_id, key)
        self.alarms = {
            _alarm_key(rpc_pb2.AlarmMember.FromString(k))
            for k, _ in backend.range(contract.ALARM, b"\x00")
        }
        self.members = {m.id: m for m in storage.members_from_backend(backend)}
        self.removed = {
            int(k, 16) for k, _ in backend.range(contract.MEMBERS_REMOVED, b"\x00") if k
        }
        ci, _ = storage.read_consistent_index(backend)
        self.applied_index = ci

    def _boot(self) -> None:
        """Replay the log into the state machine, then, as the only voter, become leader.

        Runs before the loop starts, so nothing is served before the replay is done.
        """
        self.node.drain_sync()
        if self.raw.raft.trk.voter_nodes() == [self.member_id]:
            # A single voter elects itself at once instead of waiting for an election timeout.
            self.raw.campaign()
            self.node.drain_sync()

    def _register_metrics(self) -> None:
        m = self.metrics
        m.quota_backend_bytes.set(self.cfg.quota_backend_bytes)
        m.server_id.labels(server_id=f"{self.member_id:x}").set(1)
        m.version.labels(server_version=__version__).set(1)
        self._update_role_metrics()
        m.add_collector(
            FuncGauges(
                {
                    "etcd_mvcc_db_total_size_in_bytes": (
                        "Total size of the underlying database physically allocated in bytes.",
                        # Through self: the backend object changes when a snapshot arrives.
                        lambda: self.backend.size(),  # noqa: PLW0108
                    ),
                    "etcd_mvcc_db_total_size_in_use_in_bytes": (
                        "Total size of the underlying database logically in use in bytes.",
                        lambda: self.backend.size_in_use(),  # noqa: PLW0108
                    ),
                    "etcd_debugging_mvcc_current_revision": (
                        "The current revision of store.",
                        lambda: self.store.current_revision,
                    ),
                    "etcd_debugging_mvcc_compact_revision": (
                        "The revision of the last compaction in store.",
                        lambda: self.store.compact_revision,
                    ),
                    "etcd_debugging_auth_revision": (
                        "The current revision of auth store.",
                        lambda: self.auth.revision,
                    ),
                    "etcd_debugging_mvcc_keys_total": (
                        "Total number of keys.",
                        lambda: self.store.key_count,
                    ),
                    "etcd_debugging_mvcc_watch_stream_total": (
                        "Total number of watch streams.",
                        lambda: self.store.stream_count,
                    ),
                    "etcd_debugging_mvcc_watcher_total": (
                        "Total number of watchers.",
                        lambda: self.store.watcher_count,
                    ),
                    "etcd_debugging_mvcc_slow_watcher_total": (
                        "Total number of unsynced slow watchers.",
                        lambda: self.store.slow_watcher_count,
                    ),
                    # A gauge in etcd, despite its name.
                    "etcd_disk_wal_write_bytes_total": (
                        "Total number of bytes written in WAL.",
                        lambda: self.wal.bytes_written,
                    ),
                }
            )
        )
        lessor = self.lessor
        m.add_collector(
            FuncCounters(
                {
                    "etcd_debugging_lease_granted_total": (
                        "The total number of granted leases.",
                        lambda: lessor.granted,
                    ),
                    "etcd_debugging_lease_revoked_total": (
                        "The total number of revoked leases.",
                        lambda: lessor.revoked,
                    ),
                    "etcd_debugging_lease_renewed_total": (
                        "The number of renewed leases seen by the leader.",
                        lambda: lessor.renewed,
                    ),
                }
            )
        )
        m.add_collector(
            LabelGauge(
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster "
                "version",
                "cluster_version",
                self._cluster_version,
            )
        )
        m.add_collector(PeerCollector(self.transport.metrics, self.member_id))

    def _cluster_version(self) -> str | None:
        """The cluster version as etcd's label shows it (major.minor), once decided."""
        raw = self.backend.get(contract.CLUSTER, storage.CLUSTER_VERSION)
        if not raw:
            return None
        return ".".join(raw.decode().split(".")[:2])

    def _update_role_metrics(self) -> None:
        m = self.metrics
        m.has_leader.set(1 if self.lead != NONE else 0)
        m.is_leader.set(1 if self.is_leader else 0)
        m.is_learner.set(1 if self.is_learner else 0)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._backend_wake = asyncio.Event()
        self._read_wake = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._sync_wake = asyncio.Event()
        self._compaction_wake = asyncio.Event()
        self.exit_event = asyncio.Event()
        if self.is_leader:
            self.lessor.promote(time.monotonic(), extend=self.cfg.election_timeout / 1000)
        await self.transport.listen(str(u) for u in self.cfg.listen_peer_urls)
        self._update_peers()
        self.node.start()
        loop = asyncio.get_running_loop()
        loops = {
            "raft loop": self._raft_loop(),
            "tick loop": self.node.tick_loop(),
            "read index loop": self._read_loop(),
            "backend loop": self._backend_loop(),
            "lease loop": self._lease_loop(),
            "watch sync loop": self._watch_sync_loop(),
            "compaction loop": self._compaction_loop(),
            "timeout loop": self._timeout_loop(),
        }
        for name, coro in loops.items():
            task = loop.create_task(coro, name=name)
            task.add_done_callback(self._watch_task)
            self._tasks.append(task)
        self._sync_wake.set()
        self._compaction_wake.set()
        self._tasks.append(loop.create_task(self._publish()))
        compactor = self._make_compactor()
        if compactor is not None:
            self._tasks.append(loop.create_task(self._auto_compaction_loop(compactor)))

    def _make_compactor(self) -> compactor_mod.Periodic | compactor_mod.Revision | None:
        now = time.monotonic()
        if self.cfg.auto_compaction_mode == "revision":
            if self.cfg.compaction_retention_revisions > 0:
                return compactor_mod.Revision(self.cfg.compaction_retention_revisions, now)
        elif self.cfg.compaction_retention_seconds > 0:
            return compactor_mod.Periodic(self.cfg.compaction_retention_seconds, now)
        return None

    async def _auto_compaction_loop(
        self, compactor: compactor_mod.Periodic | compactor_mod.Revision
    ) -> None:
        tick = 1.0
        if isinstance(compactor, compactor_mod.Periodic):
            tick = min(tick, compactor.sample_every)
        while True:
            await asyncio.sleep(tick)
            target = compactor.tick(time.monotonic(), self.store.current_revision)
            if target is None or target <= self.store.compact_revision or not self.is_leader:
                # etcd runs the compactor on the leader only.
                continue
            log.info("auto-compacting to revision %d", target)
            try:
                await self.propose(
                    InternalRaftRequest(compaction=rpc_pb2.CompactionRequest(revision=target))
                )
            except errors.EtcdError as exc:
                log.warning("auto-compaction to %d failed: %s", target, exc)

    def _attributes_text(self) -> str:
        """etcd's ``fmt.Sprintf("%+v", s.attributes)``: ``{Name:m0 ClientURLs:[http://...]}``."""
        urls = " ".join(str(u) for u in self.cfg.advertise_client_urls)
        return f"{{Name:{self.cfg.name} ClientURLs:[{urls}]}}"

    def _request_timeout(self) -> float:
        """etcd's ``ReqTimeout``: 5 s plus two election timeouts (in whole ticks), seconds."""
        return 5.0 + 2 * self.cfg.election_ticks * self.cfg.heartbeat_interval / 1000

    async def _publish(self) -> None:
        """Record this member's name and client URLs, and the cluster version, as etcd does
        after it starts (publish, then the leader's cluster-version decision); retried until it
        goes through, as etcd's publish is."""
        while not self._stopped:
            try:
                await self._publish_once()
                # etcd's words: scripts and tools wait for this line (then "ready to serve").
                log.info(
                    "published local member to cluster through raft",
                    extra=logutil.fields(
                        {
                            "local-member-id": f"{self.member_id:x}",
                            "local-member-attributes": self._attributes_text(),
                            # etcd 3.5 still publishes through the v2 store path (publish).
                            "request-path": f"/0/members/{self.member_id:x}/attributes",
                            "cluster-id": f"{self.cluster_id:x}",
                            "publish-timeout": logutil.go_duration(self._request_timeout()),
                        }
                    ),
                )
                self.published.set()
                return
            except errors.EtcdError as exc:
                log.warning(
                    "failed to publish local member to cluster through raft",
                    extra=logutil.fields(
                        {
                            "local-member-id": f"{self.member_id:x}",
                            "local-member-attributes": self._attributes_text(),
                            "publish-timeout": logutil.go_duration(self._request_timeout()),
                            "error": str(exc),
                        }
                    ),
                )
                await asyncio.sleep(0.5)

    async def _publish_once(self) -> None:
        if self.backend.get(contract.CLUSTER, storage.CLUSTER_VERSION) != CLUSTER_VERSION.encode():
            set_version = membership_pb2.ClusterVersionSetRequest(ver=CLUSTER_VERSION)
            await self.propose(InternalRaftRequest(cluster_version_set=set_version))
        me = self.members.get(self.member_id)
        urls = tuple(str(u) for u in self.cfg.advertise_client_urls)
        if me is not None and me.name == self.cfg.name and me.client_urls == urls:
            return
        attrs = membership_pb2.Attributes(name=self.cfg.name, client_urls=list(urls))
        req = membership_pb2.ClusterMemberAttrSetRequest(
            member_ID=self.member_id, member_attributes=attrs
        )
        await self.propose(InternalRaftRequest(cluster_member_attr_set=req))

    async def stop(self) -> None:
        if self._stopped:
            return
        if self.is_leader and len(self.raw.raft.trk.voter_nodes()) > 1:
            # etcd hands leadership over before it stops, so the cluster does not wait for an
            # election timeout.
            with contextlib.suppress(Exception):
                await self._transfer_leadership_on_stop()
        self._stopped = True
        self.node.stopped = True
        self.node.release_advanced()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transport.stop()
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(errors.ErrStopped)
        self._waiters.clear()
        for rfut in self._read_waiters:
            if not rfut.done():
                rfut.set_exception(errors.ErrStopped)
        # A cancelled task does not stop the write it handed to an executor thread: let those
        # writes finish before their files close.
        self.node.wal_executor.shutdown(wait=True)
        self._backend_executor.shutdown(wait=True)
        pending, self._pending_commit = self._pending_commit, None
        try:
            if pending is not None and pending.written:
                self.backend.finish_commit(pending)
            if pending is None or pending.written:
                self.backend.close()
        except contract.BackendError as exc:
            # The WAL holds everything applied; the next start replays what the backend lacks.
            log.error("closing the backend: %s", exc)
        self.wal.close()

    async def _transfer_leadership_on_stop(self) -> None:
        status = self.raw.status()
        candidates = [
            (pr.match, i)
            for i, pr in status.progress.items()
            if i != self.member_id and not pr.is_learner and self.transport.active_since(i)
        ]
        if not candidates:
            return
        _, transferee = max(candidates)
        log.info("transferring leadership to %x before stopping", transferee)
        await self.move_leader(transferee, wait=self.cfg.election_timeout / 1000 * 2)

    # ----- roles -----

    @property
    def term(self) -> int:
        return self.node.term

    @property
    def committed_index(self) -> int:
        return self.node.committed_index

    @property
    def is_leader(self) -> bool:
        return self.node.is_leader

    @property
    def is_learner(self) -> bool:
        return self.node.is_learner

    @property
    def lead(self) -> int:
        return self.node.lead

    def on_role_change(self, was_leader: bool, is_leader: bool) -> None:
        if is_leader and not was_leader and self._loop is not None:
            # Leases restart their clocks on a new leader (etcd's lessor.Promote).
            self.lessor.promote(time.monotonic(), extend=self.cfg.election_timeout / 1000)
        elif was_leader and not is_leader:
            self.lessor.demote()
        self._update_role_metrics()

    # ----- the Raft loop's rounds -----

    async def _raft_loop(self) -> None:
        while True:
            await self.node.next_round()
            if self.applied_index - self._snapshot_at >= self.cfg.snapshot_count:
                await self._snapshot()

    def send_snapshot(self, msg: raft_pb2.Message) -> None:
        self._spawn(self._send_merged_snapshot(msg))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)
        return task

    def _spawn_watched(self, coro: Any, name: str) -> None:
        """A task whose failure (anything but the errors it handles) stops the member."""
        task = self._spawn(coro)
        task.set_name(name)
        task.add_done_callback(self._watch_task)

    # ----- apply -----

    def apply_entries(self, entries: list[raft_pb2.Entry]) -> None:
        for entry in entries:
            result: Any = None
            req_id = 0
            live = entry.Index > self.applied_index
            if entry.Type == raft_pb2.EntryConfChange:
                cc = raft_pb2.ConfChange.FromString(entry.Data)
                req_id = cc.id
                result = self._apply_conf_change(cc, live)
            elif live and entry.Data:
                req = InternalRaftRequest.FromString(entry.Data)
                req_id = req.header.ID or req.ID
                try:
                    result = self.applier.apply(req, entry.Index)
                except errors.EtcdError as exc:
                    result = exc
            if live:
                self.applied_index = entry.Index
                self.applied_term = entry.Term
            if req_id:
                fut = self._waiters.pop(req_id, None)
                if fut is not None and not fut.done():
                    if isinstance(result, errors.EtcdError):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        storage.write_consistent_index(self.backend, self.applied_index)
        self.metrics.proposals_applied.set(self.applied_index)
        self._wake_applied()
        if (
            self._backend_wake is not None
            and self.backend.pending_writes() >= self.cfg.backend_batch_limit
        ):
            self._backend_wake.set()

    def _apply_conf_change(self, cc: raft_pb2.ConfChange, live: bool) -> Any:
        """Apply a membership change to the members (if ``live``) and to Raft.

        A replayed change (already in the backend) is applied to Raft only if the backend shows
        it took effect: etcd refuses some changes at apply time, and Raft must skip those.
        """
        kind = _CC_KIND.get(cc.type, "")
        member, is_promote = change_context(cc.context)
        if live:
            try:
                validate_change(
                    self.members,
                    self.removed,
                    change_type=kind,
                    node_id=cc.node_id,
                    context=member,
                    is_promote=is_promote,
                )
            except MembershipError as exc:
                log.warning("rejected membership change for %x: %s", cc.node_id, exc.reason)
                return _membership_error(exc.reason)
            self._apply_membership(kind, cc.node_id, member, is_promote)
        elif not self._took_effect(kind, cc.node_id, is_promote):
            return None
        # etcd panics when Raft cannot take a committed change: the server checked it before
        # proposing and again above, so a refusal here means the two disagree.
        try:
            self.conf_state = self.raw.apply_conf_change(cc)
        except ConfChangeError as exc:
            panic(f"applying the membership change for {cc.node_id:x}: {exc}")
        if self._loop is not None:
            self._update_peers()
        if cc.node_id == self.member_id and kind == "remove" and live:
            log.warning("the member has been permanently removed from the cluster")
            if self._loop is not None:
                # Stop a little later, as etcd does (stopWithDelay, 10 ticks): as leader, this
                # member still tells the others that its removal is committed.
                self._loop.call_later(10 * self.cfg.heartbeat_seconds, self.on_removed)
        self._update_role_metrics()
        return self.member_list()

    def _took_effect(self, kind: str, node_id: int, is_promote: bool) -> bool:
        in_raft = node_id in set(self.conf_state.voters) | set(self.conf_state.learners)
        known = node_id in self.members or node_id in self.removed
        if kind in ("add", "add_learner"):
            if is_promote:
                return node_id in set(self.conf_state.learners)
            return not in_raft and known
        if kind == "remove":
            return in_raft
        return True

    def _apply_membership(
        self, kind: str, node_id: int, member: Member | None, is_promote: bool
    ) -> None:
        if kind in ("add", "add_learner"):
            if is_promote:
                current = self.members[node_id]
                updated = Member(
                    current.id, current.peer_urls, current.name, current.client_urls, False
                )
            elif member is not None:
                updated = Member(
                    node_id,
                    member.peer_urls,
                    member.name,
                    member.client_urls,
                    kind == "add_learner",
                )
            else:
                updated = Member(node_id, (), is_learner=kind == "add_learner")
            self.members[node_id] = updated
            storage.save_member(self.backend, updated)
            log.info(
                "added member",
                extra=logutil.fields(
                    {
                        "cluster-id": f"{self.cluster_id:x}",
                        "local-member-id": f"{self.member_id:x}",
                        "added-peer-id": f"{node_id:x}",
                        "added-peer-peer-urls": [str(u) for u in updated.peer_urls],
                        "added-peer-is-learner": updated.is_learner,
                    }
                ),
            )
        elif kind == "remove":
            gone = self.members.pop(node_id, None)
            self.removed.add(node_id)
            self.backend.delete(contract.MEMBERS, f"{node_id:x}".encode())
            self.backend.put(contract.MEMBERS_REMOVED, f"{node_id:x}".encode(), b"removed")
            log.info(
                "removed member",
                extra=logutil.fields(
                    {
                        "cluster-id": f"{self.cluster_id:x}",
                        "local-member-id": f"{self.member_id:x}",
                        "removed-remote-peer-id": f"{node_id:x}",
                        "removed-remote-peer-urls": [str(u) for u in gone.peer_urls]
                        if gone is not None
                        else [],
                        "removed-remote-peer-is-learner": gone is not None and gone.is_learner,
                    }
                ),
            )
        elif kind == "update" and member is not None:
            current = self.members[node_id]
            updated = Member(
                node_id, member.peer_urls, current.name, current.client_urls, current.is_learner
            )
            self.members[node_id] = updated
            storage.save_member(self.backend, updated)
            log.info(
                "updated member",
                extra=logutil.fields(
                    {
                        "cluster-id": f"{self.cluster_id:x}",
                        "local-member-id": f"{self.member_id:x}",
                        "updated-remote-peer-id": f"{node_id:x}",
                        "updated-remote-peer-urls": [str(u) for u in updated.peer_urls],
                    }
                ),
            )

    def _update_peers(self) -> None:
        peers = {i: urls for i, urls in self._remotes.items() if i not in self.removed}
        peers.update((i, m.peer_urls) for i, m in self.members.items())
        peers.pop(self.member_id, None)
        self.transport.set_peers(peers)

    async def apply_snapshot(self, snap: raft_pb2.Snapshot) -> None:
        """Install the backend that came with a snapshot from the leader (etcd's
        applySnapshot): swap ``<index>.snap.db`` in as ``db`` and rebuild the state machine."""
        index = snap.metadata.index
        db_path = self._st.snapshotter.db_path_for(index)
        if not os.path.exists(db_path):  # noqa: ASYNC240 (one stat, on the apply path)
            log.error("snapshot at index %d arrived without its backend file %s", index, db_path)
            raise SystemExit(1)
        assert self._commit_lock is not None
        async with self._commit_lock:
            path = self.backend.path
            self.backend.close()
            os.replace(db_path, path)
            fsync_dir(os.path.dirname(path))
            self.backend = BoltBackend.open(path)
            self._st.backend = self.backend
            for bucket in contract.ALL_BUCKETS:
                self.backend.create_bucket(bucket)
            self.store.reopen(self.backend)
            self._load_state_machine()
            self.auth.recover(self.backend)
        # Whatever the backend holds is applied; entries up to the snapshot are in it.
        self.applied_index = max(self.applied_index, index)
        self.applied_term = snap.metadata.term
        self.conf_state.CopyFrom(snap.metadata.conf_state)
        self._snapshot_at = index
        self._update_peers()
        self._update_role_metrics()
        self._wake_applied()
        self._wake_sync()
        log.info("applied snapshot at index %d (revision %d)", index, self.store.current_revision)

    def compaction_scheduled(self) -> None:
        if self._compaction_wake is not None:
            self._compaction_wake.set()
        if self._backend_wake is not None:
            # etcd force-commits the scheduled compaction so that a crash resumes it.
            self._backend_wake.set()

    # ----- waiting for the applied index -----

    def wait_applied(self, index: int) -> asyncio.Future[None]:
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        if self.applied_index >= index:
            fut.set_result(None)
            return fut
        self._applied_seq += 1
        heapq.heappush(self._applied_waiters, (index, self._applied_seq, fut))
        return fut

    def _wake_applied(self) -> None:
        waiters = self._applied_waiters
        while waiters and waiters[0][0] <= self.applied_index:
            _, _, fut = heapq.heappop(waiters)
            if not fut.done():
                fut.set_result(None)

    # ----- the backend's batched commits -----

    async def _backend_loop(self) -> None:
        assert self._backend_wake is not None
        interval = self.cfg.backend_batch_interval
        while True:
            # asyncio.timeout, not wait_for: 3.11's wait_for can lose the cancellation that
            # stops this loop, and the member would never finish stopping.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._backend_wake.wait()
            self._backend_wake.clear()
            await self.commit_backend()

    async def commit_backend(self) -> int:
        """Commit the backend's current batch; serialised with other commits and defrag.

        Returns the applied index the committed state reflects."""
        assert self._commit_lock is not None
        async with self._commit_lock:
            return await self._commit_backend_locked()

    async def _commit_backend_locked(self) -> int:
        # Applies run on this loop, so the batch taken here holds exactly what is applied now.
        index = self.applied_index
        pending = self.backend.prepare_commit()
        if pending is None:
            return index
        start = time.perf_counter()
        self._pending_commit = pending
        await asyncio.get_running_loop().run_in_executor(self._backend_executor, pending.write)
        self._pending_commit = None
        self.backend.finish_commit(pending)
        self.metrics.backend_commit.observe(time.perf_counter() - start)
        return index

    # ----- Raft snapshots: bound the WAL and the in-memory log -----

    async def _snapshot(self) -> None:
        await self.commit_backend()
        raft_applied = self.raw.raft.raft_log.applied
        index = min(self.applied_index, raft_applied)
        if index <= self._snapshot_at:
            return
        try:
            term = self.raft_storage.term(index)
        except StorageError:
            return
        conf = raft_pb2.ConfState()
        conf.CopyFrom(self.conf_state)
        # The members as etcd's v2 store JSON, so upstream etcd can also boot from this dir.
        data = v2_store_json(Cluster(self.cluster_id, dict(self.members)))
        snap = self.raft_storage.create_snapshot(index, conf, data)
        walsnap = record_pb2.Snapshot(index=index, term=term, conf_state=conf)
        compact_to = index - self.cfg.snapshot_catchup_entries
        if compact_to > self.raft_storage.first_index():
            with contextlib.suppress(CompactedError):
                self.raft_storage.compact(compact_to)

        def save() -> None:
            # The WAL record first: on boot only a .snap that the WAL records is used, so a
            # crash between the two leaves a usable older snapshot rather than an orphan.
            self.wal.save_snapshot(walsnap)
            self._st.snapshotter.save_snap(snap)
            self.wal.release_lock_to(index)
            self.wal.purge(self.cfg.max_wals or 5)
            self._st.snapshotter.purge(self.cfg.max_snapshots or 5)

        await asyncio.get_running_loop().run_in_executor(self.node.wal_executor, save)
        self._snapshot_at = index
        log.info("saved snapshot at index %d", index)

    async def _send_merged_snapshot(self, msg: raft_pb2.Message) -> None:
        """Send the current applied state to a lagging member (etcd's
        createMergedSnapshotMessage): the stored Raft snapshot may predate the member's own
        addition, so its metadata and the backend are taken from what is applied now."""
        assert self._commit_lock is not None
        async with self._commit_lock:
            index = await self._commit_backend_locked()
            reader = self.backend.snapshot()
        try:
            index = min(index, self.raw.raft.raft_log.applied, self.raw.raft.raft_log.last_index())
            term = self.raw.raft.raft_log.term(index)
        except StorageError:
            reader.close()
            self.raw.report_snapshot(msg.to, SnapshotStatus.FAILURE)
            self.node.wake()
            return
        merged = raft_pb2.Snapshot(
            data=v2_store_json(Cluster(self.cluster_id, dict(self.members))),
            metadata=raft_pb2.SnapshotMetadata(conf_state=self.conf_state, index=index, term=term),
        )
        out = raft_pb2.Message()
        out.CopyFrom(msg)
        out.snapshot.CopyFrom(merged)
        self.transport.send_snapshot(out, reader.size, reader.read, reader.close)

    # ----- the transport's handler -----

    def process(self, msg: raft_pb2.Message) -> None:
        """A Raft message from a peer; a removed member's are dropped."""
        if self._stopped or getattr(msg, "from") in self.removed:
            return
        self.node.step(msg)

    def report_unreachable(self, peer_id: int) -> None:
        self.node.report_unreachable(peer_id)

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        self.node.report_snapshot(peer_id, ok)

    def peer_lost(self, peer_id: int) -> None:
        self.node.peer_lost(peer_id)

    def is_removed(self, member_id: int) -> bool:
        return member_id in self.removed

    def on_removed(self) -> None:
        self._exit("the member has been permanently removed from the cluster")

    def _exit(self, reason: str, code: int = 0) -> None:
        if self.exit_event is not None and not self.exit_event.is_set():
            self.exit_reason = reason
            self.exit_code = code
            self.exit_event.set()

    def _watch_task(self, task: asyncio.Task[None]) -> None:
        """A loop the member cannot run without ended: stop the member (etcd panics)."""
        if task.cancelled() or self._stopped:
            return
        exc = task.exception()
        if exc is None:
            return
        panic_on_invariant(exc, task.get_name())
        log.critical("%s failed", task.get_name(), exc_info=exc)
        self._exit(f"{task.get_name()} failed: {exc!r}", code=1)

    def members_json(self) -> list[str]:
        return [m.to_json() for m in self.member_list()]

    async def handle_request(self, op: str, body: bytes) -> bytes:
        try:
            if op == OP_LEASE_RENEW:
                req = rpc_pb2.LeaseKeepAliveRequest.FromString(body)
                ttl = self.lease_renew_local(req.ID)
                return rpc_pb2.LeaseKeepAliveResponse(ID=req.ID, TTL=ttl).SerializeToString()
            if op == OP_LEASE_TTL:
                ttl_req = rpc_pb2.LeaseTimeToLiveRequest.FromString(body)
                return self.lease_time_to_live_local(ttl_req).SerializeToString()
            if op == OP_PROMOTE:
                promote = rpc_pb2.MemberPromoteRequest.FromString(body)
                members = await self._promote_local(promote.ID)
                resp = rpc_pb2.MemberPromoteResponse()
                for m in members:
                    resp.members.add().CopyFrom(member_pb(m))
                return resp.SerializeToString()
        except errors.EtcdError as exc:
            raise PeerRequestError(exc.message, exc.code) from None
        raise PeerRequestError(f"unknown peer request {op!r}")

    async def forward(self, op: str, body: bytes) -> bytes:
        """Send a request to the leader and return its answer (errors as etcd's)."""
        await self.node.wait_leader()
        try:
            return await self.transport.request(self.lead, op, body)
        except PeerRequestError as exc:
            raise errors.EtcdError(exc.message, exc.code) from None
        except (TransportError, OSError, TimeoutError):
            raise errors.ErrTimeoutDueToConnectionLost from None

    # ----- proposals -----

    async def propose(
        self, req: raft_internal_pb2.InternalRaftRequest, ai: AuthInfo | None = None
    ) -> Any:
        if self._stopped:
            raise errors.ErrStopped
        req_id = self.idgen.next()
        req.header.ID = req_id
        if ai is not None:
            # Checked at apply in every member against the auth store of that moment.
            req.header.username = ai.username
            req.header.auth_revision = ai.revision
        data = req.SerializeToString()
        if len(data) > self.cfg.max_request_bytes:
            raise errors.ErrRequestTooLarge
        return await self._propose_data(req_id, data)

    async def _propose_data(self, req_id: int, entry: bytes | Callable[[], None]) -> Any:
        """Propose ``entry`` (a normal entry's data, batched, or a step of its own) and wait
        for its result at apply; a dropped proposal is retried until etcd's request timeout."""
        assert self._loop is not None
        deadline = time.monotonic() + errors.REQUEST_TIMEOUT
        while True:
            await self.node.wait_leader()
            fut: asyncio.Future[Any] = self._loop.create_future()
            self._waiters[req_id] = fut
            if isinstance(entry, bytes):
                if not self._batch:
                    self._loop.call_soon(self._propose_batch)
                self._batch.append((req_id, entry, deadline))
            else:
                try:
                    entry()
                except ProposalDroppedError:
                    fut.set_exception(_ProposalDroppedError())
                else:
                    # One timer for all proposals (the sweep below) instead of one per request.
                    self._deadlines.append((deadline, req_id))
                    self.node.wake()
            try:
                return await fut
            except _ProposalDroppedError:
                # No leader right now, or leadership is moving: wait a tick and retry.
                self._waiters.pop(req_id, None)
                if time.monotonic() >= deadline:
                    raise errors.ErrTimeout from None
                await asyncio.sleep(self.cfg.heartbeat_seconds)

    def _propose_batch(self) -> None:
        """Step every entry proposed in one loop iteration as one MsgProp: Raft's per-message
        work (and a follower's forward to the leader) is paid per batch, not per request."""
        batch, self._batch = self._batch, []
        if self._stopped:
            return  # stop() has failed every waiter
        try:
            self.raw.propose_many([data for _, data, _ in batch])
        except ProposalDroppedError:
            for req_id, _, _ in batch:
                fut = self._waiters.get(req_id)
                if fut is not None and not fut.done():
                    fut.set_exception(_ProposalDroppedError())
            return
        self._deadlines.extend((deadline, req_id) for req_id, _, deadline in batch)
        self.node.wake()

    async def _timeout_loop(self) -> None:
        """Fail proposals that were not applied within etcd's request timeout."""
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            deadlines = self._deadlines
            while deadlines and deadlines[0][0] <= now:
                _, req_id = deadlines.popleft()
                fut = self._waiters.pop(req_id, None)
                if fut is not None and not fut.done():
                    self.metrics.proposals_failed.inc()
                    fut.set_exception(errors.ErrTimeout)

    # ----- linearizable reads -----

    async def linearizable_barrier(self) -> None:
        """Return once everything committed before the call is applied here (ReadIndex)."""
        r = self.raw.raft
        if (
            r.state == StateType.LEADER
            and r.trk.is_singleton()
            and r.committed_entry_in_current_term()
        ):
            # The only voter: its commit index is current; no one else can be leader.
            await self.wait_applied(r.raft_log.committed)
            return
        assert self._loop is not None and self._read_wake is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._read_waiters.append(fut)
        self._read_wake.set()
        await fut

    async def _read_loop(self) -> None:
        """etcd's linearizableReadLoop: one ReadIndex serves every read queued before it."""
        assert self._read_wake is not None and self._loop is not None
        while True:
            await self._read_wake.wait()
            self._read_wake.clear()
            waiters, self._read_waiters = self._read_waiters, []
            if not waiters:
                continue
            try:
                index = await self._read_index()
                await self.wait_applied(index)
            except errors.EtcdError as exc:
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def _read_index(self) -> int:
        assert self._loop is not None
        deadline = time.monotonic() + errors.REQUEST_TIMEOUT
        while True:
            await self.node.wait_leader()
            ctx = self.idgen.next().to_bytes(8, "big")
            fut = self.node.read_index(ctx)
            try:
                async with asyncio.timeout(READ_INDEX_RETRY):
                    return await fut
            except TimeoutError:
                # Lost (leader change, dropped message): ask again, as etcd does.
                self.node.forget_read(ctx)
                if time.monotonic() >= deadline:
                    raise errors.ErrTimeout from None

    # ----- KV -----

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=self.store.current_revision if revision is None else revision,
            raft_term=self.term,
        )

    async def _compaction_loop(self) -> None:
        assert self._compaction_wake is not None
        while True:
            await self._compaction_wake.wait()
            self._compaction_wake.clear()
            # Bounded steps, with the loop free in between for requests and commits.
            while self.store.compaction_step():
                await asyncio.sleep(0)

    def _wake_sync(self) -> None:
        if self._sync_wake is not None:
            self._sync_wake.set()

    async def _watch_sync_loop(self) -> None:
        assert self._sync_wake is not None
        while True:
            await self._sync_wake.wait()
            self._sync_wake.clear()
            while self.store.sync_step():
                await asyncio.sleep(0)
            if self.store.needs_sync:
                # Slow watchers: retry soon, as etcd's syncWatchersLoop does every 100 ms.
                await asyncio.sleep(0.1)
                self._sync_wake.set()

    # ----- leases -----

    def _on_lease_change(self, key: bytes, old: int, new: int) -> None:
        # The old lease may already be gone: revoking removes the lease before its keys.
        if old and old in self.lessor:
            self.lessor.detach(old, key)
        if new:
            self.lessor.attach(new, key)

    def lease_renew_local(self, lease_id: int) -> int:
        if not self.is_leader:
            raise errors.ErrNotLeader
        return self.lessor.renew(lease_id, time.monotonic())

    def lease_time_to_live_local(
        self, req: rpc_pb2.LeaseTimeToLiveRequest
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        resp = rpc_pb2.LeaseTimeToLiveResponse(header=self.header(), ID=req.ID)
        info = self.lessor.time_to_live(req.ID, time.monotonic())
        if info is None:
            resp.TTL = -1
            return resp
        resp.TTL = info.remaining
        resp.grantedTTL = info.granted
        if req.keys:
            resp.keys.extend(sorted(info.keys))
        return resp

    async def _lease_loop(self) -> None:
        # As etcd: at most leaseRevokeRate a second, with up to maxPendingRevokes proposals in
        # flight. One at a time, each waiting for its own commit, reached a third of the rate.
        slots = asyncio.Semaphore(MAX_PENDING_REVOKES)
        per_tick = int(LEASE_REVOKE_RATE * LEASE_EXPIRY_INTERVAL)
        while True:
            await asyncio.sleep(LEASE_EXPIRY_INTERVAL)
            if not self.is_leader:
                # Only the leader revokes expired leases (its lessor is the primary).
                continue
            for lease_id in self.lessor.expired(time.monotonic(), limit=per_tick):
                self.metrics.lease_expired.inc()
                await slots.acquire()
                self._spawn_watched(self._revoke_expired(lease_id, slots), "lease revoke")

    async def _revoke_expired(self, lease_id: int, slots: asyncio.Semaphore) -> None:
        try:
            # With auth on, as root (etcd's WithRoot), so that any lease can expire.
            revoke = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
            await self.propose(InternalRaftRequest(lease_revoke=revoke), self._as_root())
        except errors.EtcdError as exc:
            # Not revoked now: the lessor reports it again after expiredLeaseRetryInterval.
            if exc != errors.ErrLeaseNotFound:
                log.warning("failed to revoke expired lease %x: %s", lease_id, exc)
        finally:
            slots.release()

    # ----- auth -----

    def _as_root(self) -> AuthInfo | None:
        """The identity of the member's own proposals that need root while auth is on."""
        return AuthInfo("root", self.auth.revision) if self.auth.enabled else None

    def sole_voter(self) -> bool:
        """No leader known, and this member is the only voter (it answers for the cluster)."""
        return self.lead == NONE and len(self.raw.raft.trk.voter_nodes()) <= 1

    # ----- alarms -----

    def alarm_errors(self) -> list[str]:
        return [f"memberID:{m} alarm:{rpc_pb2.AlarmType.Name(a)} " for m, a in sorted(self.alarms)]  # type: ignore[arg-type]

    # ----- maintenance -----

    def status(self) -> rpc_pb2.StatusResponse:
        resp = rpc_pb2.StatusResponse(
            header=self.header(),
            version=__version__,
            dbSize=self.backend.size(),
            leader=self.lead,
            raftIndex=self.committed_index,
            raftTerm=self.term,
            raftAppliedIndex=self.applied_index,
            dbSizeInUse=self.backend.size_in_use(),
            isLearner=self.is_learner,
        )
        if self.lead == NONE:
            resp.errors.append(errors.ErrNoLeader.message)
        resp.errors.extend(self.alarm_errors())
        return resp

    async def move_leader(self, transferee: int, wait: float = errors.REQUEST_TIMEOUT) -> None:
        """etcd's MoveLeader: hand leadership to ``transferee`` and wait until it leads."""
        if not self.is_leader:
            raise errors.ErrNotLeader
        target = self.members.get(transferee)
        if target is None or target.is_learner:
            raise errors.ErrBadLeaderTransferee
        log.info("leadership transfer from %x to %x starting", self.member_id, transferee)
        self.raw.transfer_leadership(transferee)
        self.node.wake()
        deadline = time.monotonic() + wait
        while self.lead != transferee:
            if time.monotonic() >= deadline:
                raise ErrTimeoutLeaderTransfer
            await asyncio.sleep(self.cfg.heartbeat_seconds)
        log.info("leadership transfer from %x to %x finished", self.member_id, transferee)

    async def defragment(self) -> None:
        assert self._commit_lock is not None
        await self.commit_backend()
        async with self._commit_lock:
            # Applies run on this loop, so the backend is quiet while defrag holds the loop.
            self.backend.defrag()

    async def hash(self) -> int:
        await self.commit_backend()
        return self.backend.hash()

    def hash_kv(self, revision: int) -> tuple[int, int, int, int]:
        """(hash, compact revision, hashed revision, current revision) as etcd's HashKV."""
        try:
            h, current = self.store.hash_kv(revision)
        except mvcc.MVCCError as exc:
            raise mvcc_error(exc) from None
        return h.hash, h.compact_revision, h.revision, current

    async def snapshot(self) -> contract.SnapshotReader:
        await self.commit_backend()
        return self.backend.snapshot()

    def is_healthy(self) -> tuple[bool, str]:
        if self.alarms:
            kinds = sorted({rpc_pb2.AlarmType.Name(a) for _, a in self.alarms})  # type: ignore[arg-type]
            return False, "ALARM " + ",".join(kinds)
        if self.lead == NONE:
            return False, "RAFT NO LEADER"
        return True, ""

    # ----- membership -----

    def member_list(self) -> list[Member]:
        return sorted(self.members.values(), key=lambda m: m.id)

    async def _configure(self, cc: raft_pb2.ConfChange) -> list[Member]:
        """Propose a conf change and wait until it is applied (etcd's configure)."""
        if self._stopped:
            raise errors.ErrStopped
        cc.id = self.idgen.next()
        try:
            # The previous change answered at apply; Raft must count it applied too.
            await asyncio.wait_for(
                self.node.wait_raft_applied(self.applied_index), errors.REQUEST_TIMEOUT
            )
        except TimeoutError:
            raise errors.ErrTimeout from None
        if self._stopped:
            raise errors.ErrStopped
        result = await self._propose_data(cc.id, lambda: self.raw.propose_conf_change(cc))
        if isinstance(result, errors.EtcdError):
            raise result
        if result is None:
            # Raft refused to apply it (a change raced another); etcd's answer is a timeout.
            raise errors.ErrTimeout
        members: list[Member] = result
        return members

    def _connected_voters(self) -> int:
        """Voters this member has been connected to for HealthInterval, itself included
        (etcd's numConnectedSince)."""
        since = time.monotonic() - HEALTH_INTERVAL
        count = 0
        for i, m in self.members.items():
            if m.is_learner:
                continue
            active = self.transport.active_since(i)
            if i == self.member_id or (active is not None and active <= since):
                count += 1
        return count

    def _voter_count(self) -> int:
        return sum(1 for m in self.members.values() if not m.is_learner)

    async def member_add(
        self, peer_urls: list[str], is_learner: bool
    ) -> tuple[Member, list[Member]]:
        member = Member.new(
            "",
            peer_urls,
            self.cfg.initial_cluster_token,
            now_unix=int(time.time()),
            is_learner=is_learner,
        )
        if self.cfg.strict_reconfig_check:
            if not is_learner and not ready_to_add_voter(self.members):
                raise errors.ErrMemberNotEnoughStarted
            # etcd 3.5's isConnectedToQuorumAfterAddingNewMemberSince: counting the new
            # member as down, the voters connected for HealthInterval still make a quorum.
            voters = self._voter_count()
            if voters > 1 and self._connected_voters() < (voters + 1) // 2 + 1:
                raise errors.ErrUnhealthy
        cc = raft_pb2.ConfChange(
            type=raft_pb2.ConfChangeAddLearnerNode if is_learner else raft_pb2.ConfChangeAddNode,
            node_id=member.id,
            context=member.to_json().encode(),
        )
        members = await self._configure(cc)
        return member, members

    async def member_remove(self, member_id: int) -> list[Member]:
        if self.cfg.strict_reconfig_check:
            target = self.members.get(member_id)
            if target is not None and not target.is_learner:
                if not ready_to_remove_voter(self.members, member_id):
                    raise errors.ErrMemberNotEnoughStarted
                # A member that is down is safe to remove: it is not part of the active quorum.
                down = (
                    member_id != self.member_id and self.transport.active_since(member_id) is None
                )
                if not down and self._connected_voters() - 1 < 1 + (self._voter_count() - 1) // 2:
                    raise errors.ErrUnhealthy
        cc = raft_pb2.ConfChange(type=raft_pb2.ConfChangeRemoveNode, node_id=member_id)
        return await self._configure(cc)

    async def member_update(self, member_id: int, peer_urls: list[str]) -> list[Member]:
        current = self.members.get(member_id)
        urls = tuple(sorted(peer_urls))
        member = Member(
            member_id,
            urls,
            current.name if current else "",
            current.client_urls if current else (),
            current.is_learner if current else False,
        )
        cc = raft_pb2.ConfChange(
            type=raft_pb2.ConfChangeUpdateNode,
            node_id=member_id,
            context=member.to_json().encode(),
        )
        return await self._configure(cc)

    async def member_promote(self, member_id: int) -> list[Member]:
        """etcd's PromoteMember: the leader decides whether the learner is ready; a follower
        forwards the request to it."""
        try:
            return await self._promote_local(member_id)
        except errors.EtcdError as exc:
            if exc != errors.ErrNotLeader:
                raise
        body = rpc_pb2.MemberPromoteRequest(ID=member_id).SerializeToString()
        await self.forward(OP_PROMOTE, body)
        # Applied on the leader: answer with the member list once it is applied here too.
        await self.linearizable_barrier()
        return self.member_list()

    async def _promote_local(self, member_id: int) -> list[Member]:
        status = self.raw.status()
        if not status.progress:
            raise errors.ErrNotLeader
        learner = status.progress.get(member_id)
        if learner is not None:
            leader_match = status.progress[self.member_id].match
            if learner.match < leader_match * LEARNER_READY_PERCENT:
                raise errors.ErrLearnerNotReady
        if self.cfg.strict_reconfig_check and not ready_to_promote(self.members, member_id):
            raise errors.ErrMemberNotEnoughStarted
        current = self.members.get(member_id)
        context = (
            promote_context(current)
            if current is not None
            else (Member(member_id, ()).to_json()[:-1] + ',"isPromote":true}').encode()
        )
        cc = raft_pb2.ConfChange(
            type=raft_pb2.ConfChangeAddNode, node_id=member_id, context=context
        )
        return await self._configure(cc)


_MEMBERSHIP_ERRORS = {
    "member ID already exist": errors.ErrMemberExist,
    "Peer URLs already exists": errors.ErrPeerURLExist,
    "member not found": errors.ErrMemberNotFound,
    # etcd's gRPC layer reports a removed ID as not found (v3rpc toGRPCErrorMap).
    "member already removed": errors.ErrMemberNotFound,
    "can only promote a learner member": errors.ErrMemberNotLearner,
    "too many learner members in cluster": errors.ErrTooManyLearners,
}


def _membership_error(reason: str) -> errors.EtcdError:
    return _MEMBERSHIP_ERRORS.get(
        reason, errors.EtcdError("etcdserver: " + reason, errors.PRECONDITION)
    )


def _alarm_key(a: rpc_pb2.AlarmMember) -> tuple[int, int]:
    return (a.memberID, a.alarm)
