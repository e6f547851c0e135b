"""Who a gRPC call is from, as etcd's ``AuthInfoFromCtx`` decides it.

While auth is enabled: the ``token`` metadata (or ``authorization``, the gateway's header, with
an optional ``Bearer`` prefix) names the user; a token the member does not know is ``invalid auth
token``. Without a token, and only with ``--client-cert-auth``, the verified client certificate's
common name is the user. Client TLS ends in the multiplexer, which splices the decrypted stream to
the gRPC server from a unix socket named for the connection; ``common_names`` maps that name (the
call's peer) to the certificate's CN. While auth is disabled no call has an identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from pyetcd.server import errors
from pyetcd.server.auth.tokens import AuthInfo
from pyetcd.server.v3api import AuthServer

TOKEN_KEYS = ("token", "authorization")


def token_of(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in TOKEN_KEYS and key not in found:
            found[key] = str(value)
    for key in TOKEN_KEYS:
        if key in found:
            return found[key].removeprefix("Bearer ")
    return None


class Identity:
    """Resolves the caller of a gRPC call to an :class:`AuthInfo` (None: no identity)."""

    def __init__(
        self, server: AuthServer, common_name: Callable[[str], str | None] = lambda _: None
    ) -> None:
        self.server = server
        self.common_name = common_name

    async def of(self, context: grpc.aio.ServicerContext[Any, Any]) -> AuthInfo | None:
        auth = self.server.auth
        if not auth.enabled:
            return None
        token = token_of(context)
        if token is not None:
            return await self.server.auth_info_from_token(token)
        if not self.server.cfg.client_tls.client_cert_auth:
            return None
        cn = self.common_name(context.peer())
        if not cn:
            return None
        return AuthInfo(cn, auth.revision)

    async def require(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """etcd's requireAuthInfo: with auth on, any authenticated caller."""
        if self.server.auth.enabled and await self.of(context) is None:
            raise errors.ErrUserEmpty

    async def require_root(
        self, context: grpc.aio.ServicerContext[Any, Any], *, translated: bool = True
    ) -> None:
        """etcd's isPermitted / isAuthenticated: with auth on, root only. Some calls answer
        the auth store's own error text (``translated=False``), as etcd's do."""
        if not self.server.auth.enabled:
            return
        try:
            self.server.auth.is_admin_permitted(await self.of(context))
        except errors.EtcdError as exc:
            if translated:
                raise
            raise errors.untranslated(exc) from None
