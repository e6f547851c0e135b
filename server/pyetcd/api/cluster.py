"""The etcdserverpb.Cluster service (membership): list, add, remove, update, promote."""

from __future__ import annotations

from typing import Any

from pyetcd.api.identity import Identity
from pyetcd.api.rpc import Services
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors
from pyetcd.server.config import ConfigError, parse_url
from pyetcd.server.membership import Member
from pyetcd.server.v3api import ClusterServer, member_pb

SERVICE = "etcdserverpb.Cluster"


def to_pb(m: Member) -> rpc_pb2.Member:
    return member_pb(m)


def _peer_urls(urls: list[str]) -> list[str]:
    """etcd's types.NewURLs on the request's peer URLs: invalid ones are refused."""
    try:
        return sorted(str(parse_url(u)) for u in urls)
    except ConfigError:
        raise errors.ErrMemberBadURLs from None


def register(services: Services, server: ClusterServer, identity: Identity) -> None:
    def members(listed: list[Member] | None = None) -> list[rpc_pb2.Member]:
        return [to_pb(m) for m in (listed if listed is not None else server.member_list())]

    def header() -> rpc_pb2.ResponseHeader:
        # etcd's cluster service fills the header without a revision.
        return server.header(0)

    async def member_list(_req: rpc_pb2.MemberListRequest, ctx: Any) -> rpc_pb2.MemberListResponse:
        # etcd 3.5.36 lists the members to any authenticated user (requireAuthInfo).
        await identity.require(ctx)
        return rpc_pb2.MemberListResponse(header=header(), members=members())

    # Membership changes need root while auth is on (etcd's
    # checkMembershipOperationPermission).
    async def member_add(req: rpc_pb2.MemberAddRequest, ctx: Any) -> rpc_pb2.MemberAddResponse:
        await identity.require_root(ctx)
        urls = _peer_urls(list(req.peerURLs))
        added, listed = await server.member_add(urls, req.isLearner)
        return rpc_pb2.MemberAddResponse(
            header=header(), member=to_pb(added), members=members(listed)
        )

    async def member_remove(
        req: rpc_pb2.MemberRemoveRequest, ctx: Any
    ) -> rpc_pb2.MemberRemoveResponse:
        await identity.require_root(ctx)
        listed = await server.member_remove(req.ID)
        return rpc_pb2.MemberRemoveResponse(header=header(), members=members(listed))

    async def member_update(
        req: rpc_pb2.MemberUpdateRequest, ctx: Any
    ) -> rpc_pb2.MemberUpdateResponse:
        await identity.require_root(ctx)
        urls = _peer_urls(list(req.peerURLs))
        listed = await server.member_update(req.ID, urls)
        return rpc_pb2.MemberUpdateResponse(header=header(), members=members(listed))

    async def member_promote(
        req: rpc_pb2.MemberPromoteRequest, ctx: Any
    ) -> rpc_pb2.MemberPromoteResponse:
        await identity.require_root(ctx)
        listed = await server.member_promote(req.ID)
        return rpc_pb2.MemberPromoteResponse(header=header(), members=members(listed))

    services.unary(SERVICE, "MemberList", rpc_pb2.MemberListRequest, member_list)
    services.unary(SERVICE, "MemberAdd", rpc_pb2.MemberAddRequest, member_add)
    services.unary(SERVICE, "MemberRemove", rpc_pb2.MemberRemoveRequest, member_remove)
    services.unary(SERVICE, "MemberUpdate", rpc_pb2.MemberUpdateRequest, member_update)
    services.unary(SERVICE, "MemberPromote", rpc_pb2.MemberPromoteRequest, member_promote)
