"""The first link of the apply chain: who may do what (``server.apply`` builds the chain).

etcd applies a request through ``authApplierV3`` before the quota and the backend appliers
(``etcdserver/apply_auth.go``): the request's header names the user and the auth revision its
credentials were issued at, and a write that user may not make fails in every member alike
(``permission denied``; ``revision of auth store is old`` once the auth store moved on). The
same checks serve the reads a member answers without Raft (``check_txn``, ``check_range``). The
auth management requests need root, but for a user reading itself or a role it holds. Pure with
respect to I/O: the auth store, the lessor and the next link are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from pyetcd.proto.etcdserverpb import raft_internal_pb2, rpc_pb2
from pyetcd.server import errors
from pyetcd.server.auth.store import AuthStore
from pyetcd.server.auth.tokens import AuthInfo
from pyetcd.server.lessor import Lease

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest

# The requests only root may make (etcd's needAdminPermission); user_get and role_get are
# allowed for the user itself and for a holder of the role.
ADMIN_REQUESTS = frozenset(
    {
        "auth_enable",
        "auth_disable",
        "auth_status",
        "auth_user_add",
        "auth_user_delete",
        "auth_user_change_password",
        "auth_user_grant_role",
        "auth_user_revoke_role",
        "auth_role_add",
        "auth_role_grant_permission",
        "auth_role_revoke_permission",
        "auth_role_delete",
        "auth_user_list",
        "auth_role_list",
    }
)


class LeaseLookup(Protocol):
    def lookup(self, lease_id: int) -> Lease | None: ...


class Applier(Protocol):
    """A link of the apply chain (``server.apply``)."""

    def apply(self, req: InternalRaftRequest, index: int) -> Any:
        """The answer to the proposer of ``req``, applied at Raft ``index``."""
        ...


def header_auth_info(req: InternalRaftRequest) -> AuthInfo:
    """Who proposed ``req`` (empty user and revision 0 when no one authenticated)."""
    return AuthInfo(req.header.username, req.header.auth_revision)


class AuthApplier:
    """etcd's ``authApplierV3``: the head of the apply chain. It checks what the proposer may
    do, then hands the request to ``inner``; its checks also serve the reads that need no
    Raft."""

    def __init__(self, auth: AuthStore, lessor: LeaseLookup, inner: Applier) -> None:
        self.auth = auth
        self.lessor = lessor
        self.inner = inner

    def apply(self, req: InternalRaftRequest, index: int) -> Any:
        if self.auth.enabled:
            self._check(req)
        return self.inner.apply(req, index)

    def _check(self, req: InternalRaftRequest) -> None:
        ai = header_auth_info(req)
        if req.HasField("put"):
            self.check_put(ai, req.put)
        elif req.HasField("delete_range"):
            self.check_delete(ai, req.delete_range)
        elif req.HasField("txn"):
            self.check_txn(ai, req.txn)
        elif req.HasField("lease_revoke"):
            self.check_lease_puts(ai, req.lease_revoke.ID)
        elif req.HasField("auth_user_get"):
            # A user may read itself.
            if req.auth_user_get.name != ai.username:
                self.auth.is_admin_permitted(ai)
        elif req.HasField("auth_role_get"):
            # A user may read the roles it holds.
            if not self.auth.has_role(ai.username, req.auth_role_get.role):
                self.auth.is_admin_permitted(ai)
        elif any(desc.name in ADMIN_REQUESTS for desc, _ in req.ListFields()):
            self.auth.is_admin_permitted(ai)

    # ----- permission checks (no-ops while auth is disabled) -----

    def check_range(self, ai: AuthInfo | None, key: bytes, range_end: bytes) -> None:
        self.auth.is_range_permitted(ai, key, range_end)

    def check_put(self, ai: AuthInfo | None, r: rpc_pb2.PutRequest) -> None:
        self.auth.is_put_permitted(ai, r.key)
        # A lease already holding a key this user may not write cannot be revoked by this
        # user, so attaching it to more keys is refused too.
        self.check_lease_puts(ai, r.lease)
        if r.prev_kv:
            self.auth.is_range_permitted(ai, r.key, b"")

    def check_delete(self, ai: AuthInfo | None, r: rpc_pb2.DeleteRangeRequest) -> None:
        self.auth.is_delete_range_permitted(ai, r.key, r.range_end)
        if r.prev_kv:
            self.auth.is_range_permitted(ai, r.key, r.range_end)

    def check_txn(self, ai: AuthInfo | None, r: rpc_pb2.TxnRequest) -> None:
        for c in r.compare:
            self.auth.is_range_permitted(ai, c.key, c.range_end)
        self._check_ops(ai, r.success)
        self._check_ops(ai, r.failure)

    def _check_ops(self, ai: AuthInfo | None, ops: Iterable[rpc_pb2.RequestOp]) -> None:
        for op in ops:
            kind = op.WhichOneof("request")
            if kind == "request_range":
                self.auth.is_range_permitted(ai, op.request_range.key, op.request_range.range_end)
            elif kind == "request_put":
                self.check_put(ai, op.request_put)
            elif kind == "request_delete_range":
                d = op.request_delete_range
                if d.prev_kv:
                    self.auth.is_range_permitted(ai, d.key, d.range_end)
                self.auth.is_delete_range_permitted(ai, d.key, d.range_end)
            elif kind == "request_txn":
                self.check_txn(ai, op.request_txn)

    def check_lease_puts(self, ai: AuthInfo | None, lease_id: int) -> None:
        lease = self.lessor.lookup(lease_id) if lease_id else None
        if lease is None:
            return
        self.check_lease_keys(ai, lease.keys, write=True)

    def check_lease_keys(self, ai: AuthInfo | None, keys: Iterable[bytes], *, write: bool) -> None:
        """Every key of a lease writable (revoke, keep-alive) or readable (time-to-live with
        keys, leases); root may do anything."""
        try:
            self.auth.is_admin_permitted(ai)
            return
        except errors.EtcdError:
            pass  # not root: every key decides
        for key in keys:
            if write:
                self.auth.is_put_permitted(ai, key)
            else:
                self.auth.is_range_permitted(ai, key, b"")
