"""The first link of the apply chain: permission checks, then the auth store's own requests.

etcd applies a request through ``authApplierV3`` before the quota and the backend appliers
(``etcdserver/apply_auth.go``): the request's header names the user and the auth revision its
credentials were issued at, and a write that user may not make fails in every member alike
(``permission denied``; ``revision of auth store is old`` once the auth store moved on). The
same checks serve the reads a member answers without Raft (``check_txn``, ``check_range``). The
auth management requests (users, roles, enable/disable) are applied here too, each answering the
response message etcd does. Pure with respect to I/O: the auth store and the lessor are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from google.protobuf.message import Message

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


def header_auth_info(req: InternalRaftRequest) -> AuthInfo:
    """Who proposed ``req`` (empty user and revision 0 when no one authenticated)."""
    return AuthInfo(req.header.username, req.header.auth_revision)


class AuthApplier:
    """etcd's ``authApplierV3``: checks for every request, and the auth requests' apply."""

    def __init__(self, auth: AuthStore, lessor: LeaseLookup) -> None:
        self.auth = auth
        self.lessor = lessor
        self._apply: dict[str, Callable[[Message, AuthInfo, int], Message]] = {
            "auth_enable": self._enable,
            "auth_disable": self._disable,
            "auth_status": self._status,
            "authenticate": self._authenticate,
            "auth_user_add": self._simple(rpc_pb2.AuthUserAddResponse, auth.user_add),
            "auth_user_delete": self._simple(rpc_pb2.AuthUserDeleteResponse, auth.user_delete),
            "auth_user_change_password": self._simple(
                rpc_pb2.AuthUserChangePasswordResponse, auth.user_change_password
            ),
            "auth_user_grant_role": self._simple(
                rpc_pb2.AuthUserGrantRoleResponse, auth.user_grant_role
            ),
            "auth_user_revoke_role": self._simple(
                rpc_pb2.AuthUserRevokeRoleResponse, auth.user_revoke_role
            ),
            "auth_user_get": self._user_get,
            "auth_user_list": self._user_list,
            "auth_role_add": self._simple(rpc_pb2.AuthRoleAddResponse, auth.role_add),
            "auth_role_delete": self._simple(rpc_pb2.AuthRoleDeleteResponse, auth.role_delete),
            "auth_role_get": self._role_get,
            "auth_role_list": self._role_list,
            "auth_role_grant_permission": self._simple(
                rpc_pb2.AuthRoleGrantPermissionResponse, auth.role_grant_permission
            ),
            "auth_role_revoke_permission": self._simple(
                rpc_pb2.AuthRoleRevokePermissionResponse, auth.role_revoke_permission
            ),
        }

    # ----- the auth store's requests -----

    def apply(self, kind: str, req: InternalRaftRequest, index: int) -> Message | None:
        """Apply ``req`` if it is an auth request (``kind``: its field); None otherwise."""
        fn = self._apply.get(kind)
        if fn is None:
            return None
        ai = header_auth_info(req)
        if kind in ADMIN_REQUESTS:
            self.auth.is_admin_permitted(ai)
        return fn(getattr(req, kind), ai, index)

    @staticmethod
    def _simple(
        response: type[Message], change: Callable[[Any], None]
    ) -> Callable[[Message, AuthInfo, int], Message]:
        def apply(r: Any, _ai: AuthInfo, _index: int) -> Message:
            change(r)
            return response()

        return apply

    def _enable(self, _r: Message, _ai: AuthInfo, _index: int) -> Message:
        self.auth.auth_enable()
        return rpc_pb2.AuthEnableResponse()

    def _disable(self, _r: Message, _ai: AuthInfo, _index: int) -> Message:
        self.auth.auth_disable()
        return rpc_pb2.AuthDisableResponse()

    def _status(self, _r: Message, _ai: AuthInfo, _index: int) -> Message:
        return rpc_pb2.AuthStatusResponse(
            enabled=self.auth.enabled, authRevision=self.auth.revision
        )

    def _authenticate(self, r: Message, _ai: AuthInfo, index: int) -> Message:
        assert isinstance(r, raft_internal_pb2.InternalAuthenticateRequest)
        token = self.auth.authenticate(r.name, index, r.simple_token)
        return rpc_pb2.AuthenticateResponse(token=token)

    def _user_get(self, r: Message, ai: AuthInfo, _index: int) -> Message:
        assert isinstance(r, rpc_pb2.AuthUserGetRequest)
        if r.name != ai.username:
            self.auth.is_admin_permitted(ai)
        return rpc_pb2.AuthUserGetResponse(roles=self.auth.user_get(r.name))

    def _user_list(self, _r: Message, _ai: AuthInfo, _index: int) -> Message:
        return rpc_pb2.AuthUserListResponse(users=self.auth.user_list())

    def _role_get(self, r: Message, ai: AuthInfo, _index: int) -> Message:
        assert isinstance(r, rpc_pb2.AuthRoleGetRequest)
        if not self.auth.has_role(ai.username, r.role):
            self.auth.is_admin_permitted(ai)
        return rpc_pb2.AuthRoleGetResponse(perm=self.auth.role_get(r.role))

    def _role_list(self, _r: Message, _ai: AuthInfo, _index: int) -> Message:
        return rpc_pb2.AuthRoleListResponse(roles=self.auth.role_list())

    # ----- permission checks (no-ops while auth is disabled) -----

    def check(self, kind: str, req: InternalRaftRequest) -> None:
        """The checks etcd makes before applying a KV or lease request."""
        if not self.auth.enabled:
            return
        ai = header_auth_info(req)
        if kind == "put":
            self.check_put(ai, req.put)
        elif kind == "delete_range":
            self.check_delete(ai, req.delete_range)
        elif kind == "txn":
            self.check_txn(ai, req.txn)
        elif kind == "lease_revoke":
            self.check_lease_puts(ai, req.lease_revoke.ID)

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
