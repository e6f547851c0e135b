"""etcd's auth, seen and turned on by the operator: whether auth is on, whether root's password
works, and the steps that turn it on (user root, role root, the grant, auth enable).

Seeing it (``observe_auth``): ``AuthStatus`` says whether auth is on (etcd 3.5, pyetcd); etcd
3.4 has no such call (``UNIMPLEMENTED``), and there ``Authenticate`` tells instead ("authentication
is not enabled" while it is off). With root's credentials, ``Authenticate`` then says whether
they work; with auth off, etcd says nothing of a password, so only root's user and role are
looked at (what the enabling steps still have to do).

The steps (``change_auth``) are each idempotent on the etcd side: a user or role that exists
already, a role granted already and auth enabled already are all fine, so a pass interrupted
anywhere is planned again from what is observed and finishes the sequence. Nothing here logs a
password.
"""

from __future__ import annotations

import logging
from typing import Protocol

import grpc
from pyetcd.client import AuthStatus, EtcdClientError

from etcd_operator.api.auth import ROOT_ROLE, ROOT_USER
from etcd_operator.components.auth import RootCredentials
from etcd_operator.reconcile.actions import (
    AddRootRole,
    AddRootUser,
    AuthAction,
    ChangeRootPassword,
    EnableAuth,
    GrantRootRole,
)
from etcd_operator.reconcile.observed import AuthView

log = logging.getLogger(__name__)

NOT_ENABLED = "etcdserver: authentication is not enabled"
AUTH_FAILED = "etcdserver: authentication failed, invalid user ID or password"
USER_NOT_FOUND = "etcdserver: user name not found"
ROLE_NOT_FOUND = "etcdserver: role name not found"
USER_EXISTS = "etcdserver: user name already exists"
ROLE_EXISTS = "etcdserver: role name already exists"


class AuthClient(Protocol):
    """The auth calls of ``pyetcd.client.EtcdClient`` the operator uses."""

    async def auth_status(self) -> AuthStatus: ...

    async def authenticate(self, user: str, password: str) -> str: ...

    async def user_add(self, user: str, password: str) -> None: ...

    async def user_get(self, user: str) -> tuple[str, ...]: ...

    async def user_change_password(self, user: str, password: str) -> None: ...

    async def user_grant_role(self, user: str, role: str) -> None: ...

    async def role_add(self, role: str) -> None: ...

    async def role_get(self, role: str) -> None: ...

    async def auth_enable(self) -> None: ...


async def _enabled(client: AuthClient) -> bool | None:
    """Whether auth is on; ``None`` when etcd 3.4 cannot say through ``AuthStatus``."""
    try:
        return (await client.auth_status()).enabled
    except EtcdClientError as err:
        if err.code == grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise


async def observe_auth(
    client: AuthClient, credentials: RootCredentials | None, *, details: bool = True
) -> AuthView | None:
    """etcd's auth as far as the cluster answers; ``None`` when it does not. ``details``: also
    user root's roles and role root (what turning auth on needs; not without ``spec.auth``)."""
    try:
        try:
            enabled = await _enabled(client)
        except EtcdClientError as err:
            # A client with root's credentials authenticates before its first call: a
            # password etcd refuses shows here already.
            if err.message == AUTH_FAILED and credentials is not None:
                return AuthView(enabled=True, credentials_work=False)
            raise
        works: bool | None = None
        if credentials is not None or enabled is None:
            user, password = (
                (credentials.user, credentials.password) if credentials else (ROOT_USER, "")
            )
            try:
                await client.authenticate(user, password)
            except EtcdClientError as err:
                if err.message == NOT_ENABLED:
                    enabled = False
                elif err.message == AUTH_FAILED:
                    enabled, works = True, False if credentials is not None else None
                else:
                    raise
            else:
                enabled, works = True, True
        if (enabled and not works) or not details:
            return AuthView(enabled=bool(enabled), credentials_work=works)
        return AuthView(
            enabled=bool(enabled),
            credentials_work=works,
            root_user_roles=await _roles(client),
            root_role=await _role(client),
        )
    except (EtcdClientError, TimeoutError) as err:
        log.info("etcd's auth could not be observed: %s", err)
        return None


async def _roles(client: AuthClient) -> tuple[str, ...] | None:
    try:
        return await client.user_get(ROOT_USER)
    except EtcdClientError as err:
        if err.message == USER_NOT_FOUND:
            return None
        raise


async def _role(client: AuthClient) -> bool:
    try:
        await client.role_get(ROOT_ROLE)
    except EtcdClientError as err:
        if err.message == ROLE_NOT_FOUND:
            return False
        raise
    return True


async def change_auth(client: AuthClient, action: AuthAction) -> None:
    """One step of turning auth on; each accepts that it was done before."""
    match action:
        case AddRootUser(credentials=credentials):
            try:
                await client.user_add(credentials.user, credentials.password)
            except EtcdClientError as err:
                if err.message != USER_EXISTS:
                    raise
                log.info("user %s exists already", credentials.user)
            else:
                log.info("added user %s", credentials.user)
        case ChangeRootPassword(credentials=credentials):
            await client.user_change_password(credentials.user, credentials.password)
            log.info("set the password of user %s from its Secret", credentials.user)
        case AddRootRole():
            try:
                await client.role_add(ROOT_ROLE)
            except EtcdClientError as err:
                if err.message != ROLE_EXISTS:
                    raise
            log.info("role %s exists", ROOT_ROLE)
        case GrantRootRole():
            await client.user_grant_role(ROOT_USER, ROOT_ROLE)
            log.info("granted role %s to user %s", ROOT_ROLE, ROOT_USER)
        case EnableAuth():
            await client.auth_enable()
            log.info("enabled auth")
