"""etcd's auth store: users, roles and their key permissions, the enabled flag and the revision.

Everything lives in the backend's ``auth``, ``authUsers`` and ``authRoles`` buckets in etcd's
layout (``authEnabled`` one byte, ``authRevision`` 8 bytes big-endian, ``authpb.User`` and
``authpb.Role`` records keyed by name, passwords as bcrypt hashes), so a snapshot carries them
between etcd and pyetcd. The mutations run at apply, in every member, in log order
(``auth/store.go``); each one that changes who may do what bumps the auth revision, which makes
older tokens and in-flight requests stale (``revision of auth store is old``). Users, roles and
each user's merged permission ranges are also held in memory: the checks run on every request.
"""

from __future__ import annotations

import base64
import binascii
import logging
import struct

import bcrypt

from pyetcd.backend import contract
from pyetcd.proto.authpb import auth_pb2
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors
from pyetcd.server.auth.perms import (
    READ,
    WRITE,
    RangePermissions,
    is_valid_permission_range,
)
from pyetcd.server.auth.tokens import AuthInfo, TokenProvider

log = logging.getLogger(__name__)

ROOT_USER = "root"
ROOT_ROLE = "root"
ENABLED_KEY = b"authEnabled"
REVISION_KEY = b"authRevision"
U64 = struct.Struct(">Q")


def hash_password(password: str, cost: int) -> bytes:
    """A bcrypt hash as etcd stores it (Go's bcrypt reads the ``$2b$`` form too)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost))


class AuthStore:
    """The auth state of one member, kept in its backend."""

    def __init__(self, backend: contract.Backend, tokens: TokenProvider, bcrypt_cost: int) -> None:
        self.tokens = tokens
        self.bcrypt_cost = bcrypt_cost
        self.enabled = False
        self.revision = 0
        self._users: dict[str, auth_pb2.User] = {}
        self._roles: dict[str, auth_pb2.Role] = {}
        self._perms: dict[str, RangePermissions] = {}
        self.recover(backend)

    def recover(self, backend: contract.Backend) -> None:
        """Load the state from ``backend`` (at start, and after a snapshot replaced it)."""
        self._be = backend
        self.enabled = backend.get(contract.AUTH, ENABLED_KEY) == b"\x01"
        raw = backend.get(contract.AUTH, REVISION_KEY)
        self.revision = U64.unpack(raw)[0] if raw is not None and len(raw) == 8 else 0
        self._users = {
            k.decode(): auth_pb2.User.FromString(v)
            for k, v in backend.range(contract.AUTH_USERS, b"")
        }
        self._roles = {
            k.decode(): auth_pb2.Role.FromString(v)
            for k, v in backend.range(contract.AUTH_ROLES, b"")
        }
        self._refresh_perms()
        if self.enabled:
            self.tokens.enable()
        else:
            self.tokens.disable()

    # ----- state changes, at apply -----

    def _commit_revision(self) -> None:
        self.revision += 1
        self._be.put(contract.AUTH, REVISION_KEY, U64.pack(self.revision))

    def _changed(self) -> None:
        """Who may do what changed: a new auth revision, and the merged ranges again."""
        self._commit_revision()
        self._refresh_perms()

    def _put_user(self, user: auth_pb2.User) -> None:
        self._users[user.name.decode()] = user
        self._be.put(contract.AUTH_USERS, user.name, user.SerializeToString())

    def _put_role(self, role: auth_pb2.Role) -> None:
        self._roles[role.name.decode()] = role
        self._be.put(contract.AUTH_ROLES, role.name, role.SerializeToString())

    def _refresh_perms(self) -> None:
        self._perms = {
            name: RangePermissions.of(self._roles[r] for r in user.roles if r in self._roles)
            for name, user in self._users.items()
        }

    def auth_enable(self) -> None:
        if self.enabled:
            log.info("authentication is already enabled; ignored auth enable request")
            return
        root = self._users.get(ROOT_USER)
        if root is None:
            raise errors.ErrRootUserNotExist
        if ROOT_ROLE not in root.roles:
            raise errors.ErrRootRoleNotExist
        self._be.put(contract.AUTH, ENABLED_KEY, b"\x01")
        self.enabled = True
        self.tokens.enable()
        self._refresh_perms()
        log.info("enabled authentication")

    def auth_disable(self) -> None:
        if not self.enabled:
            return
        self._be.put(contract.AUTH, ENABLED_KEY, b"\x00")
        self._commit_revision()
        self.enabled = False
        self.tokens.disable()
        log.info("disabled authentication")

    def authenticate(self, name: str, index: int, prefix: str) -> str:
        """The token of a user whose password the serving member has checked."""
        if not self.enabled:
            raise errors.ErrAuthNotEnabled
        user = self._users.get(name)
        if user is None or user.options.no_password:
            raise errors.ErrAuthFailed
        return self.tokens.assign(name, self.revision, index, prefix)

    def user_add(self, r: rpc_pb2.AuthUserAddRequest) -> None:
        if not r.name:
            raise errors.ErrUserEmpty
        if r.name in self._users:
            raise errors.ErrUserAlreadyExist
        user = auth_pb2.User(name=r.name.encode())
        # Present even when empty, as etcd writes it (the record's bytes match etcd's).
        user.options.SetInParent()
        user.options.CopyFrom(r.options)
        if not r.options.no_password:
            user.password = self._select_password(r.password, r.hashedPassword)
        self._put_user(user)
        self._changed()
        log.info("added a user %r", r.name)

    def _select_password(self, password: str, hashed: str) -> bytes:
        if password and not hashed:
            # An entry written by etcd before 3.5 carries the password itself.
            return hash_password(password, self.bcrypt_cost)
        try:
            return base64.b64decode(hashed, validate=True)
        except (binascii.Error, ValueError):
            raise errors.ErrNoPasswordUser from None

    def user_delete(self, r: rpc_pb2.AuthUserDeleteRequest) -> None:
        if self.enabled and r.name == ROOT_USER:
            raise errors.ErrInvalidAuthMgmt
        if r.name not in self._users:
            raise errors.ErrUserNotFound
        del self._users[r.name]
        self._be.delete(contract.AUTH_USERS, r.name.encode())
        self._changed()
        self.tokens.invalidate_user(r.name)
        log.info("deleted a user %r", r.name)

    def user_change_password(self, r: rpc_pb2.AuthUserChangePasswordRequest) -> None:
        user = self._users.get(r.name)
        if user is None:
            raise errors.ErrUserNotFound
        updated = auth_pb2.User()
        updated.CopyFrom(user)
        updated.password = (
            b"" if user.options.no_password else self._select_password(r.password, r.hashedPassword)
        )
        self._put_user(updated)
        self._changed()
        self.tokens.invalidate_user(r.name)
        log.info("changed a password of a user %r", r.name)

    def user_grant_role(self, r: rpc_pb2.AuthUserGrantRoleRequest) -> None:
        user = self._users.get(r.user)
        if user is None:
            raise errors.ErrUserNotFound
        if r.role != ROOT_ROLE and r.role not in self._roles:
            raise errors.ErrRoleNotFound
        if r.role in user.roles:
            log.warning("ignored grant role request to a user %r: has %r", r.user, r.role)
            return
        updated = auth_pb2.User()
        updated.CopyFrom(user)
        roles = sorted([*user.roles, r.role])
        del updated.roles[:]
        updated.roles.extend(roles)
        self._put_user(updated)
        self._changed()
        log.info("granted role %r to user %r", r.role, r.user)

    def user_revoke_role(self, r: rpc_pb2.AuthUserRevokeRoleRequest) -> None:
        if self.enabled and r.name == ROOT_USER and r.role == ROOT_ROLE:
            raise errors.ErrInvalidAuthMgmt
        user = self._users.get(r.name)
        if user is None:
            raise errors.ErrUserNotFound
        if r.role not in user.roles:
            raise errors.ErrRoleNotGranted
        self._put_user(_without_role(user, r.role))
        self._changed()
        log.info("revoked role %r from user %r", r.role, r.name)

    def user_get(self, name: str) -> list[str]:
        user = self._users.get(name)
        if user is None:
            raise errors.ErrUserNotFound
        return list(user.roles)

    def user_list(self) -> list[str]:
        return sorted(self._users)

    def role_add(self, r: rpc_pb2.AuthRoleAddRequest) -> None:
        if not r.name:
            raise errors.ErrRoleEmpty
        if r.name in self._roles:
            raise errors.ErrRoleAlreadyExist
        self._put_role(auth_pb2.Role(name=r.name.encode()))
        # etcd does not refresh the permission cache here: a new role has no permissions.
        self._commit_revision()
        log.info("created a role %r", r.name)

    def role_delete(self, r: rpc_pb2.AuthRoleDeleteRequest) -> None:
        if self.enabled and r.role == ROOT_ROLE:
            raise errors.ErrInvalidAuthMgmt
        if r.role not in self._roles:
            raise errors.ErrRoleNotFound
        del self._roles[r.role]
        self._be.delete(contract.AUTH_ROLES, r.role.encode())
        for user in list(self._users.values()):
            if r.role in user.roles:
                self._put_user(_without_role(user, r.role))
        self._changed()
        log.info("deleted a role %r", r.role)

    def role_get(self, name: str) -> list[auth_pb2.Permission]:
        role = self._roles.get(name)
        if role is None:
            raise errors.ErrRoleNotFound
        return list(role.keyPermission)

    def role_list(self) -> list[str]:
        return sorted(self._roles)

    def role_grant_permission(self, r: rpc_pb2.AuthRoleGrantPermissionRequest) -> None:
        if not r.HasField("perm"):
            raise errors.ErrPermissionNotGiven
        if not is_valid_permission_range(r.perm.key, r.perm.range_end):
            raise errors.ErrInvalidAuthMgmt
        role = self._roles.get(r.name)
        if role is None:
            raise errors.ErrRoleNotFound
        updated = auth_pb2.Role()
        updated.CopyFrom(role)
        for perm in updated.keyPermission:
            if perm.key == r.perm.key and perm.range_end == r.perm.range_end:
                perm.permType = r.perm.permType
                break
        else:
            # Ordered by key only, as etcd sorts its permSlice.
            perms = sorted([*role.keyPermission, r.perm], key=lambda p: p.key)
            updated = auth_pb2.Role(name=role.name)
            updated.keyPermission.extend(perms)
        self._put_role(updated)
        self._changed()
        log.info("granted/updated a permission to role %r", r.name)

    def role_revoke_permission(self, r: rpc_pb2.AuthRoleRevokePermissionRequest) -> None:
        role = self._roles.get(r.role)
        if role is None:
            raise errors.ErrRoleNotFound
        kept = [p for p in role.keyPermission if p.key != r.key or p.range_end != r.range_end]
        if len(kept) == len(role.keyPermission):
            raise errors.ErrPermissionNotGranted
        updated = auth_pb2.Role(name=role.name)
        updated.keyPermission.extend(kept)
        self._put_role(updated)
        self._changed()
        log.info("revoked a permission on range from role %r", r.role)

    # ----- checks -----

    def check_password(self, name: str, password: str) -> int:
        """The auth revision at which ``password`` is ``name``'s (bcrypt: call it off the event
        loop); etcd's ``CheckPassword``."""
        if not self.enabled:
            raise errors.ErrAuthNotEnabled
        user = self._users.get(name)
        if user is None:
            raise errors.ErrAuthFailed
        if user.options.no_password:
            raise errors.ErrNoPasswordUser
        revision = self.revision
        try:
            ok = bcrypt.checkpw(password.encode(), user.password)
        except ValueError:
            ok = False
        if not ok:
            log.info("invalid password for user %r", name)
            raise errors.ErrAuthFailed
        return revision

    def has_role(self, name: str, role: str) -> bool:
        user = self._users.get(name)
        return user is not None and role in user.roles

    def is_admin_permitted(self, ai: AuthInfo | None) -> None:
        if not self.enabled:
            return
        if ai is None or not ai.username:
            raise errors.ErrUserEmpty
        user = self._users.get(ai.username)
        if user is None:
            raise errors.ErrUserNotFound
        if ROOT_ROLE not in user.roles:
            raise errors.ErrPermissionDenied

    def _is_op_permitted(
        self, ai: AuthInfo | None, key: bytes, range_end: bytes, perm_type: int
    ) -> None:
        if not self.enabled:
            return
        if ai is None or ai.revision == 0:
            raise errors.ErrUserEmpty
        if ai.revision < self.revision:
            raise errors.ErrAuthOldRevision
        user = self._users.get(ai.username)
        if user is None:
            raise errors.ErrPermissionDenied
        if ROOT_ROLE in user.roles:
            return
        perms = self._perms.get(ai.username)
        if perms is not None and perms.permits(key, range_end, perm_type):
            return
        raise errors.ErrPermissionDenied

    def is_put_permitted(self, ai: AuthInfo | None, key: bytes) -> None:
        self._is_op_permitted(ai, key, b"", WRITE)

    def is_range_permitted(self, ai: AuthInfo | None, key: bytes, range_end: bytes) -> None:
        self._is_op_permitted(ai, key, range_end, READ)

    def is_delete_range_permitted(self, ai: AuthInfo | None, key: bytes, range_end: bytes) -> None:
        self._is_op_permitted(ai, key, range_end, WRITE)

    def info_from_token(self, token: str) -> AuthInfo:
        """Who ``token`` stands for; ``invalid auth token`` when it is unknown or expired."""
        info = self.tokens.info(token, self.revision)
        if info is None:
            log.warning("invalid auth token")
            raise errors.ErrInvalidAuthToken
        return info


def _without_role(user: auth_pb2.User, role: str) -> auth_pb2.User:
    updated = auth_pb2.User()
    updated.CopyFrom(user)
    del updated.roles[:]
    updated.roles.extend(r for r in user.roles if r != role)
    return updated
