"""The etcdserverpb.Auth service: users, roles, permissions, enable/disable, Authenticate.

Every request but ``Authenticate`` goes through Raft with the caller's identity and is checked at
apply (root only, but for a user reading itself or a role it holds); ``Authenticate`` checks the
password on this member first, so that no password reaches the log.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from pyetcd.api.identity import Identity
from pyetcd.api.kv import fill_header
from pyetcd.api.rpc import Services
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server.v3api import AuthServer

SERVICE = "etcdserverpb.Auth"

# method -> (request type, InternalRaftRequest field)
METHODS: dict[str, tuple[type[Message], str]] = {
    "AuthEnable": (rpc_pb2.AuthEnableRequest, "auth_enable"),
    "AuthDisable": (rpc_pb2.AuthDisableRequest, "auth_disable"),
    "AuthStatus": (rpc_pb2.AuthStatusRequest, "auth_status"),
    "UserAdd": (rpc_pb2.AuthUserAddRequest, "auth_user_add"),
    "UserGet": (rpc_pb2.AuthUserGetRequest, "auth_user_get"),
    "UserList": (rpc_pb2.AuthUserListRequest, "auth_user_list"),
    "UserDelete": (rpc_pb2.AuthUserDeleteRequest, "auth_user_delete"),
    "UserChangePassword": (rpc_pb2.AuthUserChangePasswordRequest, "auth_user_change_password"),
    "UserGrantRole": (rpc_pb2.AuthUserGrantRoleRequest, "auth_user_grant_role"),
    "UserRevokeRole": (rpc_pb2.AuthUserRevokeRoleRequest, "auth_user_revoke_role"),
    "RoleAdd": (rpc_pb2.AuthRoleAddRequest, "auth_role_add"),
    "RoleGet": (rpc_pb2.AuthRoleGetRequest, "auth_role_get"),
    "RoleList": (rpc_pb2.AuthRoleListRequest, "auth_role_list"),
    "RoleDelete": (rpc_pb2.AuthRoleDeleteRequest, "auth_role_delete"),
    "RoleGrantPermission": (rpc_pb2.AuthRoleGrantPermissionRequest, "auth_role_grant_permission"),
    "RoleRevokePermission": (
        rpc_pb2.AuthRoleRevokePermissionRequest,
        "auth_role_revoke_permission",
    ),
}


def register(services: Services, server: AuthServer, identity: Identity) -> None:
    def through_raft(kind: str) -> Any:
        async def handler(req: Message, ctx: Any) -> Message:
            resp: Message = await server.auth_request(kind, req, await identity.of(ctx))
            fill_header(server, resp.header)  # type: ignore[attr-defined]
            return resp

        return handler

    async def authenticate(
        req: rpc_pb2.AuthenticateRequest, _ctx: Any
    ) -> rpc_pb2.AuthenticateResponse:
        resp = await server.authenticate(req.name, req.password)
        fill_header(server, resp.header)
        return resp

    for method, (req_type, kind) in METHODS.items():
        services.unary(SERVICE, method, req_type, through_raft(kind))
    services.unary(SERVICE, "Authenticate", rpc_pb2.AuthenticateRequest, authenticate)
