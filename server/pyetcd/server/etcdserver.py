"""The etcd server of one member: proposals through the Raft log, apply, and the work around it.

Every write becomes an ``InternalRaftRequest`` entry. The Raft loop hands entries to the WAL in a
worker thread (all proposals that arrived during the previous fsync share the next one: group
commit), applies committed entries to the MVCC store, the lessor and the alarm list on the event
loop, and wakes the proposers with their results. The backend is committed in batches by its own
loop (every ``backend_batch_interval`` or ``backend_batch_limit`` writes); replaying the WAL after
``meta/consistent_index`` makes that safe across crashes.

Reads are served from the applied state without a Raft round: with a single voter every
acknowledged write has been applied, so the applied state is linearizable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyetcd import __version__, mvcc
from pyetcd.backend import contract
from pyetcd.mvcc import WatchableStore
from pyetcd.proto.etcdserverpb import raft_internal_pb2, rpc_pb2
from pyetcd.proto.leasepb import lease_pb2
from pyetcd.proto.membershippb import membership_pb2
from pyetcd.proto.raftpb import raft_pb2
from pyetcd.proto.walpb import record_pb2
from pyetcd.raft.single_node import Ready, SingleNodeRaft
from pyetcd.server import compactor as compactor_mod
from pyetcd.server import errors, storage
from pyetcd.server.config import ServerConfig
from pyetcd.server.idutil import Generator
from pyetcd.server.kv_apply import (
    KVApplier,
    RangeResult,
    apply_range,
    is_txn_readonly,
    mvcc_error,
)
from pyetcd.server.lessor import Lessor, lease_bucket_key
from pyetcd.server.membership import Cluster, Member
from pyetcd.server.metrics import FuncGauges, ServerMetrics
from pyetcd.server.v2store import v2_store_json

log = logging.getLogger(__name__)

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest
NOSPACE = rpc_pb2.NOSPACE
# etcd's per-request cost estimate on top of key and value (etcdserver/quota.go).
KV_OVERHEAD = 256
# The cluster version a cluster of this build agrees on: major.minor.0, as etcd decides it.
CLUSTER_VERSION = ".".join(__version__.split(".")[:2]) + ".0"
REQUEST_TIMEOUT = 7.0  # etcd: 5 s + 2 x election timeout with defaults
LEASE_EXPIRY_INTERVAL = 0.5


class EtcdServer:
    """One member: owns the storage, the Raft log, the applied state and the background loops."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.metrics = ServerMetrics()
        st = storage.open_storage(cfg)
        self._st = st
        self.backend = st.backend
        self.wal = st.wal
        self.member_id = st.member_id
        self.cluster_id = st.cluster_id
        self.lessor = Lessor(min_ttl=cfg.min_lease_ttl)
        self.lessor.restore(
            [lease_pb2.Lease.FromString(v) for _, v in self.backend.range(contract.LEASE, b"\x00")],
            time.monotonic(),
        )
        self._sync_wake: asyncio.Event | None = None
        self._compaction_wake: asyncio.Event | None = None
        self.store = WatchableStore(
            self.backend,
            compaction_batch_limit=cfg.experimental_compaction_batch_limit,
            on_lease_change=self._on_lease_change,
            on_sync_needed=self._wake_sync,
        )
        for key, lease_id in self.store.leased_keys():
            if lease_id in self.lessor:
                self.lessor.attach(lease_id, key)
        self.alarms: set[tuple[int, int]] = {
            _alarm_key(rpc_pb2.AlarmMember.FromString(k))
            for k, _ in self.backend.range(contract.ALARM, b"\x00")
        }
        self.members: dict[int, Member] = {
            m.id: m for m in storage.members_from_backend(self.backend)
        }
        self.kv_applier = KVApplier(self.store, self.lessor)
        self.idgen = Generator(self.member_id, time.time())
        self.applied_index = st.consistent_index
        self.applied_term = 0
        self.raft = SingleNodeRaft(
            st.member_id, st.hard_state, st.last_index, st.last_term, st.consistent_index
        )
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._deadlines: deque[tuple[float, int]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._raft_wake: asyncio.Event | None = None
        self._backend_wake: asyncio.Event | None = None
        self._wal_executor = ThreadPoolExecutor(1, thread_name_prefix="wal")
        self._backend_executor = ThreadPoolExecutor(1, thread_name_prefix="backend")
        self._commit_lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._snapshot_at = st.snapshot_index
        self._replay(st.entries)
        self.raft.campaign()
        self._register_metrics()

    # ----- lifecycle -----

    def _register_metrics(self) -> None:
        m = self.metrics
        m.has_leader.set(1)
        m.is_leader.set(1)
        m.is_learner.set(0)
        m.quota_backend_bytes.set(self.cfg.quota_backend_bytes)
        m.server_id.labels(server_id=f"{self.member_id:x}").set(1)
        m.version.labels(server_version=__version__).set(1)
        m.add_collector(
            FuncGauges(
                {
                    "etcd_mvcc_db_total_size_in_bytes": (
                        "Total size of the underlying database physically allocated in bytes.",
                        self.backend.size,
                    ),
                    "etcd_mvcc_db_total_size_in_use_in_bytes": (
                        "Total size of the underlying database logically in use in bytes.",
                        self.backend.size_in_use,
                    ),
                    "etcd_debugging_mvcc_current_revision": (
                        "The current revision of store.",
                        lambda: self.store.current_revision,
                    ),
                    "etcd_debugging_mvcc_compact_revision": (
                        "The revision of the last compaction in store.",
                        lambda: self.store.compact_revision,
                    ),
                }
            )
        )

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._raft_wake = asyncio.Event()
        self._backend_wake = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._sync_wake = asyncio.Event()
        self._compaction_wake = asyncio.Event()
        self.lessor.promote(time.monotonic(), extend=self.cfg.election_timeout / 1000)
        loop = asyncio.get_running_loop()
        for coro in (
            self._raft_loop(),
            self._backend_loop(),
            self._lease_loop(),
            self._watch_sync_loop(),
            self._compaction_loop(),
            self._timeout_loop(),
        ):
            self._tasks.append(loop.create_task(coro))
        self._raft_wake.set()
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
            if target is None or target <= self.store.compact_revision:
                continue
            log.info("auto-compacting to revision %d", target)
            try:
                await self.compact(rpc_pb2.CompactionRequest(revision=target))
            except errors.EtcdError as exc:
                log.warning("auto-compaction to %d failed: %s", target, exc)

    async def _publish(self) -> None:
        """Record this member's name and client URLs, and the cluster version, as etcd does
        after it starts (publish, then the leader's cluster-version decision)."""
        if self.backend.get(contract.CLUSTER, storage.CLUSTER_VERSION) != CLUSTER_VERSION.encode():
            set_version = membership_pb2.ClusterVersionSetRequest(ver=CLUSTER_VERSION)
            try:
                await self.propose(InternalRaftRequest(cluster_version_set=set_version))
            except errors.EtcdError as exc:
                log.warning("failed to set the cluster version: %s", exc)
        me = self.members.get(self.member_id)
        urls = tuple(str(u) for u in self.cfg.advertise_client_urls)
        if me is not None and me.name == self.cfg.name and me.client_urls == urls:
            return
        attrs = membership_pb2.Attributes(name=self.cfg.name, client_urls=list(urls))
        req = membership_pb2.ClusterMemberAttrSetRequest(
            member_ID=self.member_id, member_attributes=attrs
        )
        try:
            await self.propose(InternalRaftRequest(cluster_member_attr_set=req))
        except errors.EtcdError as exc:
            log.warning("failed to publish member attributes: %s", exc)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(errors.ErrStopped)
        self._waiters.clear()
        self.backend.close()
        self.wal.close()
        self._wal_executor.shutdown()
        self._backend_executor.shutdown()

    # ----- the Raft loop: persist, apply, advance -----

    def _wake_raft(self) -> None:
        if self._raft_wake is not None:
            self._raft_wake.set()

    async def _raft_loop(self) -> None:
        assert self._raft_wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._raft_wake.wait()
            self._raft_wake.clear()
            while self.raft.has_ready():
                rd = self.raft.ready()
                persist = None
                if rd.entries or rd.hard_state is not None:
                    persist = loop.run_in_executor(self._wal_executor, self._persist, rd)
                if rd.committed_entries:
                    self._apply_entries(rd.committed_entries)
                if persist is not None:
                    try:
                        await persist
                    except Exception:
                        # etcd panics when the WAL cannot be written: a member that cannot
                        # persist must not acknowledge anything more.
                        log.critical("failed to write the WAL; stopping", exc_info=True)
                        raise SystemExit(1) from None
                self.raft.advance(rd)
            self.metrics.proposals_committed.set(self.raft.commit)
            if self.applied_index - self._snapshot_at >= self.cfg.snapshot_count:
                await self._snapshot()

    def _persist(self, rd: Ready) -> None:
        hs = rd.hard_state
        hs_pb = (
            raft_pb2.HardState(term=hs.term, vote=hs.vote, commit=hs.commit)
            if hs is not None
            else raft_pb2.HardState()
        )
        self.wal.save(hs_pb, rd.entries)
        if rd.must_sync:
            start = time.perf_counter()
            self.wal.sync()
            self.metrics.wal_fsync.observe(time.perf_counter() - start)

    def _replay(self, entries: list[raft_pb2.Entry]) -> None:
        todo = [e for e in entries if e.Index > self.applied_index]
        if todo:
            log.info("replaying %d WAL entries after index %d", len(todo), self.applied_index)
            self._apply_entries(todo)

    def _apply_entries(self, entries: list[raft_pb2.Entry]) -> None:
        for entry in entries:
            if entry.Index <= self.applied_index:
                continue
            result: Any = None
            req_id = 0
            if entry.Type == raft_pb2.EntryConfChange:
                self._apply_conf_change(raft_pb2.ConfChange.FromString(entry.Data))
            elif entry.Data:
                req = InternalRaftRequest.FromString(entry.Data)
                req_id = req.header.ID or req.ID
                try:
                    result = self._apply_request(req)
                except errors.EtcdError as exc:
                    result = exc
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
        if (
            self._backend_wake is not None
            and self.backend.pending_writes() >= self.cfg.backend_batch_limit
        ):
            self._backend_wake.set()

    def _apply_conf_change(self, cc: raft_pb2.ConfChange) -> None:
        if (
            cc.type in (raft_pb2.ConfChangeAddNode, raft_pb2.ConfChangeAddLearnerNode)
            and cc.context
        ):
            member = Member.from_json(cc.context.decode())
            self.members[member.id] = member
            storage.save_member(self.backend, member)

    # ----- the backend's batched commits -----

    async def _backend_loop(self) -> None:
        assert self._backend_wake is not None
        interval = self.cfg.backend_batch_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._backend_wake.wait(), interval)
            self._backend_wake.clear()
            await self.commit_backend()

    async def commit_backend(self) -> None:
        """Commit the backend's current batch; serialised with other commits and defrag."""
        assert self._commit_lock is not None
        async with self._commit_lock:
            pending = self.backend.prepare_commit()
            if pending is None:
                return
            start = time.perf_counter()
            await asyncio.get_running_loop().run_in_executor(self._backend_executor, pending.write)
            self.backend.finish_commit(pending)
            self.metrics.backend_commit.observe(time.perf_counter() - start)

    # ----- Raft snapshots: bound the WAL -----

    async def _snapshot(self) -> None:
        await self.commit_backend()
        index, term = self.applied_index, self.applied_term
        conf = raft_pb2.ConfState(voters=sorted(self.members))
        # The members as etcd's v2 store JSON, so upstream etcd can also boot from this dir.
        cluster = Cluster(self.cluster_id, dict(self.members))
        snap = raft_pb2.Snapshot(
            data=v2_store_json(cluster),
            metadata=raft_pb2.SnapshotMetadata(conf_state=conf, index=index, term=term),
        )
        walsnap = record_pb2.Snapshot(index=index, term=term, conf_state=conf)

        def save() -> None:
            # The WAL record first: on boot only a .snap that the WAL records is used, so a
            # crash between the two leaves a usable older snapshot rather than an orphan.
            self.wal.save_snapshot(walsnap)
            self._st.snapshotter.save_snap(snap)
            self.wal.release_lock_to(index)
            self.wal.purge(5)
            self._st.snapshotter.purge(5)

        await asyncio.get_running_loop().run_in_executor(self._wal_executor, save)
        self._snapshot_at = index
        log.info("saved snapshot at index %d", index)

    # ----- proposals -----

    async def propose(self, req: raft_internal_pb2.InternalRaftRequest) -> Any:
        if self._stopped:
            raise errors.ErrStopped
        req_id = self.idgen.next()
        req.header.ID = req_id
        data = req.SerializeToString()
        if len(data) > self.cfg.max_request_bytes:
            raise errors.ErrRequestTooLarge
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._waiters[req_id] = fut
        # One timer for all proposals (the sweep below) instead of one per request.
        self._deadlines.append((time.monotonic() + REQUEST_TIMEOUT, req_id))
        self.raft.propose(data)
        self._wake_raft()
        return await fut

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

    def _apply_request(self, req: raft_internal_pb2.InternalRaftRequest) -> Any:
        if req.HasField("put"):
            self._check_space_applied()
            self.metrics.put_total.inc()
            return self._in_txn(lambda tx: self.kv_applier.put(tx, req.put))
        if req.HasField("delete_range"):
            self.metrics.delete_total.inc()
            return self._in_txn(lambda tx: self.kv_applier.delete_range(tx, req.delete_range))
        if req.HasField("txn"):
            if not is_txn_readonly(req.txn):
                self._check_space_applied()
            self.metrics.txn_total.inc()
            return self._in_txn(lambda tx: self.kv_applier.txn(tx, req.txn))
        if req.HasField("compaction"):
            return self._apply_compaction(req.compaction)
        if req.HasField("lease_grant"):
            self._check_space_applied()
            return self._apply_lease_grant(req.lease_grant)
        if req.HasField("lease_revoke"):
            return self._apply_lease_revoke(req.lease_revoke)
        if req.HasField("alarm"):
            return self._apply_alarm(req.alarm)
        if req.HasField("cluster_member_attr_set"):
            return self._apply_member_attributes(req.cluster_member_attr_set)
        if req.HasField("cluster_version_set"):
            self.backend.put(
                contract.CLUSTER, storage.CLUSTER_VERSION, req.cluster_version_set.ver.encode()
            )
            return None
        return None

    def _apply_member_attributes(self, req: membership_pb2.ClusterMemberAttrSetRequest) -> None:
        member = self.members.get(req.member_ID)
        if member is None:
            return
        attrs = req.member_attributes
        updated = member.with_attributes(attrs.name, attrs.client_urls)
        self.members[member.id] = updated
        storage.save_member(self.backend, updated)

    def _in_txn(self, fn: Callable[[mvcc.WriteTxn], Any]) -> Any:
        tx = self.store.write()
        try:
            resp = fn(tx)
            resp.header.revision = tx.rev
        finally:
            tx.end()
        return resp

    def _check_space_applied(self) -> None:
        if any(a[1] == NOSPACE for a in self.alarms):
            raise errors.ErrNoSpace

    # ----- KV -----

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=self.store.current_revision if revision is None else revision,
            raft_term=self.raft.term,
        )

    def range(self, req: rpc_pb2.RangeRequest) -> RangeResult:
        self.metrics.range_total.inc()
        return apply_range(self.store, req)

    def _check_quota(self, cost: int) -> None:
        if self.backend.size() + cost > self.cfg.quota_backend_bytes:
            raise errors.ErrNoSpace

    async def _propose_capped(self, req: InternalRaftRequest, cost: int) -> Any:
        try:
            self._check_quota(cost)
        except errors.EtcdError:
            await self._raise_nospace()
            raise
        return await self.propose(req)

    async def _raise_nospace(self) -> None:
        if (self.member_id, NOSPACE) in self.alarms:
            return
        areq = rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=self.member_id, alarm=NOSPACE
        )
        await self.propose(InternalRaftRequest(alarm=areq))

    async def put(self, req: rpc_pb2.PutRequest) -> rpc_pb2.PutResponse:
        cost = len(req.key) + len(req.value) + KV_OVERHEAD
        resp: rpc_pb2.PutResponse = await self._propose_capped(InternalRaftRequest(put=req), cost)
        return resp

    async def delete_range(self, req: rpc_pb2.DeleteRangeRequest) -> rpc_pb2.DeleteRangeResponse:
        resp: rpc_pb2.DeleteRangeResponse = await self.propose(
            InternalRaftRequest(delete_range=req)
        )
        return resp

    async def txn(self, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        if is_txn_readonly(req):
            return self._read_txn(req)
        cost = req.ByteSize() + KV_OVERHEAD
        resp: rpc_pb2.TxnResponse = await self._propose_capped(InternalRaftRequest(txn=req), cost)
        return resp

    def _read_txn(self, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        self.metrics.txn_total.inc()
        tx = self.store.write()
        try:
            resp = self.kv_applier.txn(tx, req)
            resp.header.revision = tx.rev
        finally:
            tx.end()
        return resp

    async def compact(self, req: rpc_pb2.CompactionRequest) -> rpc_pb2.CompactionResponse:
        resp, done = await self.propose(InternalRaftRequest(compaction=req))
        if req.physical:
            # etcd answers a physical compaction once its deletions are committed.
            await done
            await self.commit_backend()
        assert isinstance(resp, rpc_pb2.CompactionResponse)
        return resp

    def _apply_compaction(self, req: rpc_pb2.CompactionRequest) -> Any:
        try:
            job = self.store.compact(req.revision)
        except mvcc.MVCCError as exc:
            raise mvcc_error(exc) from None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finished(_job: mvcc.Compaction) -> None:
            if not done.done():
                done.set_result(None)

        job.add_done_callback(finished)
        if self._compaction_wake is not None:
            self._compaction_wake.set()
        if self._backend_wake is not None:
            # etcd force-commits the scheduled compaction so that a crash resumes it.
            self._backend_wake.set()
        return rpc_pb2.CompactionResponse(header=self.header()), done

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

    async def lease_grant(self, req: rpc_pb2.LeaseGrantRequest) -> rpc_pb2.LeaseGrantResponse:
        while req.ID == 0:
            req.ID = self.idgen.next() & ((1 << 63) - 1)
        resp: rpc_pb2.LeaseGrantResponse = await self._propose_capped(
            InternalRaftRequest(lease_grant=req), KV_OVERHEAD
        )
        return resp

    def _apply_lease_grant(self, req: rpc_pb2.LeaseGrantRequest) -> rpc_pb2.LeaseGrantResponse:
        lease = self.lessor.grant(req.ID, req.TTL, time.monotonic())
        self.backend.put(contract.LEASE, lease_bucket_key(req.ID), self.lessor.to_record(lease))
        return rpc_pb2.LeaseGrantResponse(header=self.header(), ID=req.ID, TTL=lease.ttl)

    async def lease_revoke(self, req: rpc_pb2.LeaseRevokeRequest) -> rpc_pb2.LeaseRevokeResponse:
        resp: rpc_pb2.LeaseRevokeResponse = await self.propose(
            InternalRaftRequest(lease_revoke=req)
        )
        return resp

    def _apply_lease_revoke(self, req: rpc_pb2.LeaseRevokeRequest) -> rpc_pb2.LeaseRevokeResponse:
        keys = self.lessor.revoke(req.ID)
        if keys:
            tx = self.store.write()
            try:
                for key in sorted(keys):
                    tx.delete_range(key, b"")
            finally:
                tx.end()
        self.backend.delete(contract.LEASE, lease_bucket_key(req.ID))
        return rpc_pb2.LeaseRevokeResponse(header=self.header())

    def lease_renew(self, lease_id: int) -> int:
        return self.lessor.renew(lease_id, time.monotonic())

    def lease_time_to_live(
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

    def lease_leases(self) -> rpc_pb2.LeaseLeasesResponse:
        resp = rpc_pb2.LeaseLeasesResponse(header=self.header())
        for lease_id in self.lessor.leases():
            resp.leases.add(ID=lease_id)
        return resp

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(LEASE_EXPIRY_INTERVAL)
            for lease_id in self.lessor.expired(time.monotonic(), limit=1000):
                self.metrics.lease_expired.inc()
                try:
                    await self.lease_revoke(rpc_pb2.LeaseRevokeRequest(ID=lease_id))
                except errors.EtcdError as exc:
                    if exc != errors.ErrLeaseNotFound:
                        log.warning("failed to revoke expired lease %x: %s", lease_id, exc)

    # ----- alarms -----

    async def alarm(self, req: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        if req.action == rpc_pb2.AlarmRequest.GET:
            return self._alarm_list(req.alarm)
        resp: rpc_pb2.AlarmResponse = await self.propose(InternalRaftRequest(alarm=req))
        return resp

    def _alarm_list(self, alarm: int = 0) -> rpc_pb2.AlarmResponse:
        # etcd's alarm responses carry no header.
        resp = rpc_pb2.AlarmResponse()
        for member_id, kind in sorted(self.alarms):
            if alarm in (0, kind):
                resp.alarms.add(memberID=member_id, alarm=kind)
        return resp

    def _apply_alarm(self, req: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        resp = rpc_pb2.AlarmResponse()
        key = (req.memberID, req.alarm)
        record = rpc_pb2.AlarmMember(memberID=req.memberID, alarm=req.alarm).SerializeToString()
        if req.action == rpc_pb2.AlarmRequest.ACTIVATE:
            if req.alarm != rpc_pb2.NONE and key not in self.alarms:
                self.alarms.add(key)
                self.backend.put(contract.ALARM, record, b"")
                resp.alarms.add(memberID=req.memberID, alarm=req.alarm)
        elif req.action == rpc_pb2.AlarmRequest.DEACTIVATE:
            targets = [a for a in self.alarms if a[0] == req.memberID and a[1] == req.alarm]
            for member_id, kind in targets:
                self.alarms.discard((member_id, kind))
                rec = rpc_pb2.AlarmMember(memberID=member_id, alarm=kind).SerializeToString()  # type: ignore[arg-type]
                self.backend.delete(contract.ALARM, rec)
                resp.alarms.add(memberID=member_id, alarm=kind)
        return resp

    def alarm_errors(self) -> list[str]:
        return [f"memberID:{m} alarm:{rpc_pb2.AlarmType.Name(a)} " for m, a in sorted(self.alarms)]  # type: ignore[arg-type]

    # ----- maintenance -----

    def status(self) -> rpc_pb2.StatusResponse:
        resp = rpc_pb2.StatusResponse(
            header=self.header(),
            version=__version__,
            dbSize=self.backend.size(),
            leader=self.member_id,
            raftIndex=self.raft.commit,
            raftTerm=self.raft.term,
            raftAppliedIndex=self.applied_index,
            dbSizeInUse=self.backend.size_in_use(),
            isLearner=False,
        )
        resp.errors.extend(self.alarm_errors())
        return resp

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

    def member_list(self) -> list[Member]:
        return sorted(self.members.values(), key=lambda m: m.id)

    def is_healthy(self) -> tuple[bool, str]:
        if self.alarms:
            kinds = sorted({rpc_pb2.AlarmType.Name(a) for _, a in self.alarms})  # type: ignore[arg-type]
            return False, "ALARM " + ",".join(kinds)
        return True, ""


def _alarm_key(a: rpc_pb2.AlarmMember) -> tuple[int, int]:
    return (a.memberID, a.alarm)
