"""The apply chain: what a committed request does to the member's state, one link per concern.

etcd applies every normal log entry through a chain of appliers (``etcdserver/apply.go``,
``apply_auth.go``, ``quota.go``): the auth link checks that the proposing user may do it, the quota
link refuses what would grow the database while NOSPACE is raised, and the backend link changes
the state (MVCC keys, leases, alarms, compaction, member attributes, the cluster version, the auth
store). The same three links, in the same order, are built by :func:`chain`. Every member applies
the same entries through the same links, so every member answers alike; what a link raises is the
request's answer (an ``EtcdError``), never a member failure.

The links reach the member's state through :class:`MemberState`, a narrow view of the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from google.protobuf.message import Message

from pyetcd import mvcc
from pyetcd.backend import contract
from pyetcd.mvcc import WatchableStore
from pyetcd.proto.etcdserverpb import raft_internal_pb2, rpc_pb2
from pyetcd.proto.membershippb import membership_pb2
from pyetcd.server import errors, storage
from pyetcd.server.auth.store import AuthStore
from pyetcd.server.auth_apply import Applier, AuthApplier
from pyetcd.server.kv_apply import KVApplier, is_txn_readonly, mvcc_error
from pyetcd.server.lessor import Lessor, lease_bucket_key
from pyetcd.server.membership import Member
from pyetcd.server.metrics import ServerMetrics

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest
NOSPACE = rpc_pb2.NOSPACE


class MemberState(Protocol):
    """The member's applied state, as the appliers change it."""

    store: WatchableStore
    lessor: Lessor
    alarms: set[tuple[int, int]]
    members: dict[int, Member]
    auth: AuthStore
    metrics: ServerMetrics

    @property
    def backend(self) -> contract.Backend: ...

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader: ...

    def compaction_scheduled(self) -> None:
        """A compaction was scheduled: run its steps and commit the backend soon."""
        ...


class QuotaApplier:
    """etcd's quotaApplierV3: while a NOSPACE alarm is raised, puts, writing txns and lease
    grants are refused; deletes, compactions and everything else still apply, which is how
    space is reclaimed."""

    def __init__(self, inner: Applier, state: MemberState) -> None:
        self.inner = inner
        # Read at each apply: a snapshot replaces the member's alarms.
        self.state = state

    def apply(self, req: InternalRaftRequest, index: int) -> Any:
        alarms = self.state.alarms
        if alarms and self._grows(req) and any(a[1] == NOSPACE for a in alarms):
            raise errors.ErrNoSpace
        return self.inner.apply(req, index)

    @staticmethod
    def _grows(req: InternalRaftRequest) -> bool:
        if req.HasField("put") or req.HasField("lease_grant"):
            return True
        return req.HasField("txn") and not is_txn_readonly(req.txn)


class BackendApplier:
    """etcd's applierV3backend: the state changes themselves."""

    def __init__(self, state: MemberState) -> None:
        self.state = state
        self.kv = KVApplier(state.store, state.lessor)
        auth = state.auth
        # The auth store's requests; the permission checks ran first. Those that change the
        # store answer an empty response of their type.
        changes: dict[str, tuple[Callable[[Any], None], type[Message]]] = {
            "auth_user_add": (auth.user_add, rpc_pb2.AuthUserAddResponse),
            "auth_user_delete": (auth.user_delete, rpc_pb2.AuthUserDeleteResponse),
            "auth_user_change_password": (
                auth.user_change_password,
                rpc_pb2.AuthUserChangePasswordResponse,
            ),
            "auth_user_grant_role": (auth.user_grant_role, rpc_pb2.AuthUserGrantRoleResponse),
            "auth_user_revoke_role": (auth.user_revoke_role, rpc_pb2.AuthUserRevokeRoleResponse),
            "auth_role_add": (auth.role_add, rpc_pb2.AuthRoleAddResponse),
            "auth_role_delete": (auth.role_delete, rpc_pb2.AuthRoleDeleteResponse),
            "auth_role_grant_permission": (
                auth.role_grant_permission,
                rpc_pb2.AuthRoleGrantPermissionResponse,
            ),
            "auth_role_revoke_permission": (
                auth.role_revoke_permission,
                rpc_pb2.AuthRoleRevokePermissionResponse,
            ),
            "auth_enable": (lambda _r: auth.auth_enable(), rpc_pb2.AuthEnableResponse),
            "auth_disable": (lambda _r: auth.auth_disable(), rpc_pb2.AuthDisableResponse),
        }
        self._auth: dict[str, Callable[[Any, int], Message]] = {
            kind: _changing(change, response) for kind, (change, response) in changes.items()
        }
        self._auth.update(
            {
                "auth_status": lambda _r, _i: rpc_pb2.AuthStatusResponse(
                    enabled=auth.enabled, authRevision=auth.revision
                ),
                "authenticate": lambda r, i: rpc_pb2.AuthenticateResponse(
                    token=auth.authenticate(r.name, i, r.simple_token)
                ),
                "auth_user_get": lambda r, _i: rpc_pb2.AuthUserGetResponse(
                    roles=auth.user_get(r.name)
                ),
                "auth_user_list": lambda _r, _i: rpc_pb2.AuthUserListResponse(
                    users=auth.user_list()
                ),
                "auth_role_get": lambda r, _i: rpc_pb2.AuthRoleGetResponse(
                    perm=auth.role_get(r.role)
                ),
                "auth_role_list": lambda _r, _i: rpc_pb2.AuthRoleListResponse(
                    roles=auth.role_list()
                ),
            }
        )

    def apply(self, req: InternalRaftRequest, index: int) -> Any:
        s = self.state
        if req.HasField("put"):
            s.metrics.put_total.inc()
            return self._in_txn(lambda tx: self.kv.put(tx, req.put))
        if req.HasField("delete_range"):
            s.metrics.delete_total.inc()
            return self._in_txn(lambda tx: self.kv.delete_range(tx, req.delete_range))
        if req.HasField("txn"):
            s.metrics.txn_total.inc()
            return self._in_txn(lambda tx: self.kv.txn(tx, req.txn))
        if req.HasField("compaction"):
            return self.compaction(req.compaction)
        if req.HasField("lease_grant"):
            return self.lease_grant(req.lease_grant)
        if req.HasField("lease_revoke"):
            return self.lease_revoke(req.lease_revoke)
        if req.HasField("alarm"):
            return self.alarm(req.alarm)
        if req.HasField("cluster_member_attr_set"):
            return self.member_attributes(req.cluster_member_attr_set)
        if req.HasField("cluster_version_set"):
            s.backend.put(
                contract.CLUSTER, storage.CLUSTER_VERSION, req.cluster_version_set.ver.encode()
            )
            return None
        for desc, value in req.ListFields():
            apply_auth = self._auth.get(desc.name)
            if apply_auth is not None:
                resp = apply_auth(value, index)
                resp.header.CopyFrom(s.header())  # type: ignore[attr-defined]
                return resp
        return None

    def _in_txn(self, fn: Callable[[mvcc.WriteTxn], Any]) -> Any:
        tx = self.state.store.write()
        try:
            resp = fn(tx)
            resp.header.revision = tx.rev
        finally:
            tx.end()
        return resp

    def compaction(
        self, req: rpc_pb2.CompactionRequest
    ) -> tuple[rpc_pb2.CompactionResponse, asyncio.Future[None]]:
        """Schedule the compaction; the future completes when its deletions are done."""
        try:
            job = self.state.store.compact(req.revision)
        except mvcc.MVCCError as exc:
            raise mvcc_error(exc) from None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finished(_job: mvcc.Compaction) -> None:
            if not done.done():
                done.set_result(None)

        job.add_done_callback(finished)
        self.state.compaction_scheduled()
        return rpc_pb2.CompactionResponse(header=self.state.header()), done

    def lease_grant(self, req: rpc_pb2.LeaseGrantRequest) -> rpc_pb2.LeaseGrantResponse:
        s = self.state
        lease = s.lessor.grant(req.ID, req.TTL, time.monotonic())
        s.backend.put(contract.LEASE, lease_bucket_key(req.ID), s.lessor.to_record(lease))
        return rpc_pb2.LeaseGrantResponse(header=s.header(), ID=req.ID, TTL=lease.ttl)

    def lease_revoke(self, req: rpc_pb2.LeaseRevokeRequest) -> rpc_pb2.LeaseRevokeResponse:
        s = self.state
        keys = s.lessor.revoke(req.ID)
        if keys:
            tx = s.store.write()
            try:
                for key in sorted(keys):
                    tx.delete_range(key, b"")
            finally:
                tx.end()
        s.backend.delete(contract.LEASE, lease_bucket_key(req.ID))
        return rpc_pb2.LeaseRevokeResponse(header=s.header())

    def alarm(self, req: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        s = self.state
        resp = rpc_pb2.AlarmResponse()
        key = (req.memberID, req.alarm)
        record = rpc_pb2.AlarmMember(memberID=req.memberID, alarm=req.alarm).SerializeToString()
        if req.action == rpc_pb2.AlarmRequest.ACTIVATE:
            if req.alarm != rpc_pb2.NONE and key not in s.alarms:
                s.alarms.add(key)
                s.backend.put(contract.ALARM, record, b"")
                resp.alarms.add(memberID=req.memberID, alarm=req.alarm)
        elif req.action == rpc_pb2.AlarmRequest.DEACTIVATE:
            targets = [a for a in s.alarms if a[0] == req.memberID and a[1] == req.alarm]
            for member_id, kind in targets:
                s.alarms.discard((member_id, kind))
                rec = rpc_pb2.AlarmMember(memberID=member_id, alarm=kind).SerializeToString()  # type: ignore[arg-type]
                s.backend.delete(contract.ALARM, rec)
                resp.alarms.add(memberID=member_id, alarm=kind)
        return resp

    def member_attributes(self, req: membership_pb2.ClusterMemberAttrSetRequest) -> None:
        s = self.state
        member = s.members.get(req.member_ID)
        if member is None:
            return
        attrs = req.member_attributes
        updated = member.with_attributes(attrs.name, attrs.client_urls)
        s.members[member.id] = updated
        storage.save_member(s.backend, updated)


def _changing(
    change: Callable[[Any], None], response: type[Message]
) -> Callable[[Any, int], Message]:
    def apply(r: Any, _index: int) -> Message:
        change(r)
        return response()

    return apply


def chain(state: MemberState) -> tuple[AuthApplier, BackendApplier]:
    """etcd's chain: auth, then quota, then the backend. Returns its head and its last link
    (whose KV applier also serves the reads that need no Raft)."""
    backend = BackendApplier(state)
    head = AuthApplier(state.auth, state.lessor, QuotaApplier(backend, state))
    return head, backend
