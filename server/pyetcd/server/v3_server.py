"""The v3 request surface (etcd's ``v3_server.go``): KV, leases, alarms and auth as clients ask.

Reads are served here from the applied state (after a ReadIndex barrier unless serializable),
with the auth checks etcd makes where it serves them; writes become proposals that carry the
caller's identity and are checked again at apply. The member's Raft side is reached only through
:class:`RaftKV`: propose, wait for a linearizable point, forward to the leader. The services in
``api/`` talk to this object (see ``server.v3api``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any, Protocol

from pyetcd.backend import contract
from pyetcd.mvcc import WatchableStore
from pyetcd.proto.etcdserverpb import raft_internal_pb2, rpc_pb2
from pyetcd.server import errors
from pyetcd.server.auth.store import AuthStore, hash_password
from pyetcd.server.auth.tokens import AuthInfo
from pyetcd.server.auth_apply import AuthApplier
from pyetcd.server.config import ServerConfig
from pyetcd.server.idutil import Generator
from pyetcd.server.kv_apply import KVApplier, RangeResult, apply_range, is_txn_readonly
from pyetcd.server.lessor import Lessor, NotPrimaryError
from pyetcd.server.metrics import ServerMetrics

log = logging.getLogger(__name__)

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest
NOSPACE = rpc_pb2.NOSPACE
KV_OVERHEAD = 256
"""etcd's per-request cost estimate on top of key and value (etcdserver/quota.go)."""
OP_LEASE_RENEW = "lease_renew"
OP_LEASE_TTL = "lease_ttl"


class RaftKV(Protocol):
    """What the request surface needs of the member."""

    cfg: ServerConfig
    store: WatchableStore
    lessor: Lessor
    auth: AuthStore
    applier: AuthApplier
    kv_applier: KVApplier
    metrics: ServerMetrics
    alarms: set[tuple[int, int]]
    idgen: Generator
    member_id: int
    cluster_id: int
    applied_index: int

    @property
    def lead(self) -> int: ...

    @property
    def term(self) -> int: ...

    @property
    def is_leader(self) -> bool: ...

    @property
    def backend(self) -> contract.Backend: ...

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader: ...

    async def propose(self, req: InternalRaftRequest, ai: AuthInfo | None = None) -> Any: ...

    async def linearizable_barrier(self) -> None: ...

    async def commit_backend(self) -> int: ...

    async def forward(self, op: str, body: bytes) -> bytes: ...

    def wait_applied(self, index: int) -> asyncio.Future[None]: ...

    def lease_renew_local(self, lease_id: int) -> int: ...

    def lease_time_to_live_local(
        self, req: rpc_pb2.LeaseTimeToLiveRequest
    ) -> rpc_pb2.LeaseTimeToLiveResponse: ...

    def sole_voter(self) -> bool: ...


class V3Server:
    """The request surface of one member."""

    def __init__(self, member: RaftKV) -> None:
        self.member = member

    # ----- who answers (server.v3api.ServingMember) -----

    @property
    def cluster_id(self) -> int:
        return self.member.cluster_id

    @property
    def member_id(self) -> int:
        return self.member.member_id

    @property
    def cfg(self) -> ServerConfig:
        return self.member.cfg

    @property
    def term(self) -> int:
        return self.member.term

    @property
    def store(self) -> WatchableStore:
        return self.member.store

    @property
    def auth(self) -> AuthStore:
        return self.member.auth

    @property
    def alarms(self) -> set[tuple[int, int]]:
        return self.member.alarms

    @property
    def lead(self) -> int:
        return self.member.lead

    @property
    def metrics(self) -> ServerMetrics:
        return self.member.metrics

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader:
        return self.member.header(revision)

    # ----- KV -----

    def range(self, req: rpc_pb2.RangeRequest) -> RangeResult:
        """A Range on the applied state (serializable; see ``linearizable_barrier``)."""
        self.member.metrics.range_total.inc()
        return apply_range(self.member.store, req)

    async def range_linearizable(
        self, req: rpc_pb2.RangeRequest, ai: AuthInfo | None = None
    ) -> RangeResult:
        if not req.serializable:
            await self.member.linearizable_barrier()
        if not self.member.auth.enabled:
            return self.range(req)
        self.member.auth.is_range_permitted(ai, req.key, req.range_end)
        result = self.range(req)
        self._check_auth_revision(ai)
        return result

    def _check_auth_revision(self, ai: AuthInfo | None) -> None:
        """A read served without Raft is refused if the auth store moved on while it ran
        (etcd's doSerialize)."""
        if ai is not None and ai.revision and ai.revision != self.member.auth.revision:
            raise errors.ErrAuthOldRevision

    def _check_quota(self, cost: int) -> None:
        if self.member.backend.size() + cost > self.member.cfg.quota_backend_bytes:
            raise errors.ErrNoSpace

    async def _propose_capped(
        self, req: InternalRaftRequest, cost: int, ai: AuthInfo | None = None
    ) -> Any:
        try:
            self._check_quota(cost)
        except errors.EtcdError:
            await self._raise_nospace()
            raise
        return await self.member.propose(req, ai)

    async def _raise_nospace(self) -> None:
        if (self.member.member_id, NOSPACE) in self.member.alarms:
            return
        areq = rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=self.member.member_id, alarm=NOSPACE
        )
        await self.member.propose(InternalRaftRequest(alarm=areq))

    async def put(self, req: rpc_pb2.PutRequest, ai: AuthInfo | None = None) -> rpc_pb2.PutResponse:
        cost = len(req.key) + len(req.value) + KV_OVERHEAD
        resp: rpc_pb2.PutResponse = await self._propose_capped(
            InternalRaftRequest(put=req), cost, ai
        )
        return resp

    async def delete_range(
        self, req: rpc_pb2.DeleteRangeRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.DeleteRangeResponse:
        resp: rpc_pb2.DeleteRangeResponse = await self.member.propose(
            InternalRaftRequest(delete_range=req), ai
        )
        return resp

    async def txn(self, req: rpc_pb2.TxnRequest, ai: AuthInfo | None = None) -> rpc_pb2.TxnResponse:
        if is_txn_readonly(req):
            if not _txn_serializable(req):
                await self.member.linearizable_barrier()
            if not self.member.auth.enabled:
                return self._read_txn(req)
            self.member.applier.check_txn(ai, req)
            resp = self._read_txn(req)
            self._check_auth_revision(ai)
            return resp
        cost = req.ByteSize() + KV_OVERHEAD
        resp = await self._propose_capped(InternalRaftRequest(txn=req), cost, ai)
        assert isinstance(resp, rpc_pb2.TxnResponse)
        return resp

    def _read_txn(self, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        self.member.metrics.txn_total.inc()
        tx = self.member.store.write()
        try:
            resp = self.member.kv_applier.txn(tx, req)
            resp.header.revision = tx.rev
        finally:
            tx.end()
        return resp

    async def compact(
        self, req: rpc_pb2.CompactionRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.CompactionResponse:
        resp, done = await self.member.propose(InternalRaftRequest(compaction=req), ai)
        if req.physical:
            # etcd answers a physical compaction once its deletions are committed.
            await done
            await self.member.commit_backend()
        assert isinstance(resp, rpc_pb2.CompactionResponse)
        return resp

    async def lease_grant(
        self, req: rpc_pb2.LeaseGrantRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.LeaseGrantResponse:
        while req.ID == 0:
            req.ID = self.member.idgen.next() & ((1 << 63) - 1)
        resp: rpc_pb2.LeaseGrantResponse = await self._propose_capped(
            InternalRaftRequest(lease_grant=req), KV_OVERHEAD, ai
        )
        return resp

    async def lease_revoke(
        self, req: rpc_pb2.LeaseRevokeRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.LeaseRevokeResponse:
        resp: rpc_pb2.LeaseRevokeResponse = await self.member.propose(
            InternalRaftRequest(lease_revoke=req), ai
        )
        return resp

    def check_lease_keys(self, ai: AuthInfo | None, lease_ids: list[int], *, write: bool) -> None:
        """With auth on: the user may write (keep-alive) or read (time-to-live with keys, the
        lease list) every key of these leases; root may do anything (etcd's checkLeaseRenew,
        checkLeaseTimeToLive, checkLeaseLeases)."""
        if not self.member.auth.enabled:
            return
        if ai is None:
            raise errors.ErrUserEmpty
        revision = self.member.auth.revision
        for lease_id in lease_ids:
            lease = self.member.lessor.lookup(lease_id)
            if lease is not None:
                self.member.applier.check_lease_keys(ai, lease.keys, write=write)
        if revision != self.member.auth.revision:
            raise errors.ErrAuthOldRevision

    async def lease_renew(self, lease_id: int, ai: AuthInfo | None = None) -> int:
        """A keep-alive: served by the leader's lessor; a follower forwards it (etcd forwards
        over the peer URL's /leases)."""
        self.check_lease_keys(ai, [lease_id], write=True)
        if self.member.is_leader:
            try:
                return self.member.lessor.renew(lease_id, time.monotonic())
            except NotPrimaryError:
                pass
        body = rpc_pb2.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()
        resp = rpc_pb2.LeaseKeepAliveResponse.FromString(
            await self.member.forward(OP_LEASE_RENEW, body)
        )
        return resp.TTL

    async def lease_time_to_live(
        self, req: rpc_pb2.LeaseTimeToLiveRequest, ai: AuthInfo | None = None
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        """Only the leader knows the remaining TTL; a follower asks it (as etcd does)."""
        if self.member.auth.enabled:
            if ai is None:
                raise errors.ErrUserEmpty
            if req.keys:
                self.check_lease_keys(ai, [req.ID], write=False)
        if self.member.is_leader or self.member.sole_voter():
            return self.member.lease_time_to_live_local(req)
        raw = await self.member.forward(OP_LEASE_TTL, req.SerializeToString())
        resp = rpc_pb2.LeaseTimeToLiveResponse.FromString(raw)
        resp.header.CopyFrom(self.member.header())
        return resp

    def lease_leases(self, ai: AuthInfo | None = None) -> rpc_pb2.LeaseLeasesResponse:
        self.check_lease_keys(ai, self.member.lessor.leases(), write=False)
        resp = rpc_pb2.LeaseLeasesResponse(header=self.member.header())
        for lease_id in self.member.lessor.leases():
            resp.leases.add(ID=lease_id)
        return resp

    def as_root(self) -> AuthInfo | None:
        """The identity of the member's own proposals that need root while auth is on."""
        return AuthInfo("root", self.member.auth.revision) if self.member.auth.enabled else None

    async def auth_info_from_token(self, token: str) -> AuthInfo:
        """Who a token stands for. A simple token names the Raft index that issued it: wait
        (bounded) until this member has applied it, as etcd does."""
        index = self.member.auth.tokens.index_of(token)
        if index > self.member.applied_index:
            try:
                await asyncio.wait_for(self.member.wait_applied(index), errors.REQUEST_TIMEOUT)
            except TimeoutError:
                raise errors.ErrInvalidAuthToken from None
        return self.member.auth.info_from_token(token)

    async def authenticate(self, name: str, password: str) -> rpc_pb2.AuthenticateResponse:
        """Check the password here (bcrypt, off the event loop), then have every member learn
        the token through Raft; again if the auth store changed meanwhile (etcd's loop)."""
        await self.member.linearizable_barrier()
        loop = asyncio.get_running_loop()
        while True:
            checked = await loop.run_in_executor(
                None, self.member.auth.check_password, name, password
            )
            internal = raft_internal_pb2.InternalAuthenticateRequest(
                name=name, simple_token=self.member.auth.tokens.gen_prefix()
            )
            resp = await self.member.propose(InternalRaftRequest(authenticate=internal))
            if checked == self.member.auth.revision:
                assert isinstance(resp, rpc_pb2.AuthenticateResponse)
                return resp
            log.info("revision when password checked became stale; retrying")

    async def auth_request(self, kind: str, req: Any, ai: AuthInfo | None) -> Any:
        """An auth management request (``kind``: its InternalRaftRequest field) through Raft;
        passwords are hashed here, so that neither the log nor the WAL holds them."""
        adding = kind == "auth_user_add" and not req.options.no_password
        if adding or (kind == "auth_user_change_password" and req.password):
            req.hashedPassword = await self._hash(req.password)
            req.password = ""
        return await self.member.propose(InternalRaftRequest(**{kind: req}), ai)

    async def _hash(self, password: str) -> str:
        hashed = await asyncio.get_running_loop().run_in_executor(
            None, hash_password, password, self.member.auth.bcrypt_cost
        )
        return base64.b64encode(hashed).decode()

    async def alarm(self, req: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        if req.action == rpc_pb2.AlarmRequest.GET:
            return self._alarm_list(req.alarm)
        resp: rpc_pb2.AlarmResponse = await self.member.propose(InternalRaftRequest(alarm=req))
        return resp

    def _alarm_list(self, alarm: int = 0) -> rpc_pb2.AlarmResponse:
        # etcd's alarm responses carry no header.
        resp = rpc_pb2.AlarmResponse()
        for member_id, kind in sorted(self.member.alarms):
            if alarm in (0, kind):
                resp.alarms.add(memberID=member_id, alarm=kind)
        return resp


def _txn_serializable(req: rpc_pb2.TxnRequest) -> bool:
    """A read-only Txn is served locally only if every Range in it is serializable (etcd's
    isTxnSerializable)."""
    for branch in (req.success, req.failure):
        for op in branch:
            if op.HasField("request_range"):
                if not op.request_range.serializable:
                    return False
            elif op.HasField("request_txn") and not _txn_serializable(op.request_txn):
                return False
    return True
