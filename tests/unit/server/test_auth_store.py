"""The auth store: etcd's rules for users, roles, enable/disable, revisions and checks."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from pyetcd.backend import contract
from pyetcd.proto.authpb import auth_pb2
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors
from pyetcd.server.auth.store import AuthStore, hash_password
from pyetcd.server.auth.tokens import AuthInfo, SimpleTokens

from tests.unit.mvcc.memory_backend import MemoryBackend

COST = 4  # bcrypt's least cost: these tests are about the rules, not the hashing


def new_store() -> tuple[AuthStore, MemoryBackend]:
    be = MemoryBackend()
    for bucket in contract.ALL_BUCKETS:
        be.create_bucket(bucket)
    return AuthStore(be, SimpleTokens(300), COST), be


def add_user(store: AuthStore, name: str, password: str = "pw") -> None:
    hashed = base64.b64encode(hash_password(password, COST)).decode()
    store.user_add(rpc_pb2.AuthUserAddRequest(name=name, hashedPassword=hashed))


def grant(
    store: AuthStore,
    role: str,
    kind: auth_pb2.Permission.Type.ValueType,
    key: bytes,
    end: bytes = b"",
) -> None:
    perm = auth_pb2.Permission(permType=kind, key=key, range_end=end)
    store.role_grant_permission(rpc_pb2.AuthRoleGrantPermissionRequest(name=role, perm=perm))


def enabled_store() -> AuthStore:
    store, _ = new_store()
    add_user(store, "root", "rootpw")
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="app"))
    grant(store, "app", auth_pb2.Permission.READWRITE, b"/app/", b"/app0")
    add_user(store, "alice", "apw")
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="app"))
    store.auth_enable()
    return store


def test_enable_needs_a_root_user_with_the_root_role() -> None:
    store, _ = new_store()
    with pytest.raises(errors.EtcdError) as exc:
        store.auth_enable()
    assert exc.value == errors.ErrRootUserNotExist
    add_user(store, "root")
    with pytest.raises(errors.EtcdError) as exc:
        store.auth_enable()
    assert exc.value == errors.ErrRootRoleNotExist
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    store.auth_enable()
    assert store.enabled


def test_every_change_of_who_may_do_what_bumps_the_revision_and_enable_does_not() -> None:
    store, be = new_store()
    start = store.revision
    add_user(store, "root")
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="r"))
    grant(store, "r", auth_pb2.Permission.READ, b"/k")
    assert store.revision == start + 4
    store.auth_enable()
    assert store.revision == start + 4
    store.auth_disable()
    assert store.revision == start + 5
    assert be.get(contract.AUTH, b"authRevision") == (start + 5).to_bytes(8, "big")
    assert be.get(contract.AUTH, b"authEnabled") == b"\x00"


def test_state_survives_a_reopen_of_the_backend() -> None:
    store = enabled_store()
    reopened = AuthStore(store._be, SimpleTokens(300), COST)
    assert reopened.enabled
    assert reopened.revision == store.revision
    assert reopened.user_list() == ["alice", "root"]
    assert reopened.role_get("app")[0].key == b"/app/"
    assert reopened.check_password("alice", "apw") == store.revision


def test_passwords_are_checked_against_the_bcrypt_hash() -> None:
    store = enabled_store()
    assert store.check_password("alice", "apw") == store.revision
    for name, password in (("alice", "wrong"), ("nobody", "apw")):
        with pytest.raises(errors.EtcdError) as exc:
            store.check_password(name, password)
        assert exc.value == errors.ErrAuthFailed


def test_root_and_its_role_are_protected_while_auth_is_on() -> None:
    store = enabled_store()
    changes: list[Callable[[], None]] = [
        lambda: store.user_delete(rpc_pb2.AuthUserDeleteRequest(name="root")),
        lambda: store.user_revoke_role(rpc_pb2.AuthUserRevokeRoleRequest(name="root", role="root")),
        lambda: store.role_delete(rpc_pb2.AuthRoleDeleteRequest(role="root")),
    ]
    for change in changes:
        with pytest.raises(errors.EtcdError) as exc:
            change()
        assert exc.value == errors.ErrInvalidAuthMgmt


def test_checks_follow_the_roles_and_refuse_stale_revisions() -> None:
    store = enabled_store()
    alice = AuthInfo("alice", store.revision)
    store.is_put_permitted(alice, b"/app/x")
    store.is_range_permitted(alice, b"/app/", b"/app0")
    with pytest.raises(errors.EtcdError) as exc:
        store.is_put_permitted(alice, b"/other")
    assert exc.value == errors.ErrPermissionDenied
    with pytest.raises(errors.EtcdError) as exc:
        store.is_range_permitted(None, b"/app/x", b"")
    assert exc.value == errors.ErrUserEmpty
    store.is_put_permitted(AuthInfo("root", store.revision), b"/anything")
    # Revoking the role moves the revision on: alice's credentials are now stale.
    store.user_revoke_role(rpc_pb2.AuthUserRevokeRoleRequest(name="alice", role="app"))
    with pytest.raises(errors.EtcdError) as exc:
        store.is_put_permitted(alice, b"/app/x")
    assert exc.value == errors.ErrAuthOldRevision
    with pytest.raises(errors.EtcdError) as exc:
        store.is_put_permitted(AuthInfo("alice", store.revision), b"/app/x")
    assert exc.value == errors.ErrPermissionDenied


def test_deleting_a_role_removes_it_from_its_users() -> None:
    store = enabled_store()
    store.role_delete(rpc_pb2.AuthRoleDeleteRequest(role="app"))
    assert store.user_get("alice") == []
    with pytest.raises(errors.EtcdError) as exc:
        store.role_get("app")
    assert exc.value == errors.ErrRoleNotFound


def test_a_password_change_drops_the_users_tokens() -> None:
    store = enabled_store()
    token = store.authenticate("alice", 10, "p" * 16)
    assert store.info_from_token(token).username == "alice"
    hashed = base64.b64encode(hash_password("new", COST)).decode()
    store.user_change_password(
        rpc_pb2.AuthUserChangePasswordRequest(name="alice", hashedPassword=hashed)
    )
    with pytest.raises(errors.EtcdError) as exc:
        store.info_from_token(token)
    assert exc.value == errors.ErrInvalidAuthToken
    assert store.check_password("alice", "new") == store.revision


def test_a_user_without_password_cannot_authenticate() -> None:
    store = enabled_store()
    req = rpc_pb2.AuthUserAddRequest(name="svc")
    req.options.no_password = True
    store.user_add(req)
    with pytest.raises(errors.EtcdError) as exc:
        store.check_password("svc", "")
    assert exc.value == errors.ErrNoPasswordUser
    with pytest.raises(errors.EtcdError) as exc:
        store.authenticate("svc", 11, "q" * 16)
    assert exc.value == errors.ErrAuthFailed


def test_permissions_are_kept_sorted_by_key_and_regranting_updates_the_type() -> None:
    store = enabled_store()
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="many"))
    grant(store, "many", auth_pb2.Permission.READ, b"/c")
    grant(store, "many", auth_pb2.Permission.READ, b"/a")
    grant(store, "many", auth_pb2.Permission.WRITE, b"/c")
    perms = store.role_get("many")
    assert [(p.key, p.permType) for p in perms] == [
        (b"/a", auth_pb2.Permission.READ),
        (b"/c", auth_pb2.Permission.WRITE),
    ]
