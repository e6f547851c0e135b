"""The etcdserverpb.Lease service: grant and revoke go through the log; keep-alives and
time-to-live are served by the leader's lessor (a follower forwards them)."""

from __future__ import annotations

from typing import Any

import grpc

from pyetcd.api.identity import Identity
from pyetcd.api.rpc import Services
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors
from pyetcd.server.v3api import LeaseServer

SERVICE = "etcdserverpb.Lease"


def register(services: Services, server: LeaseServer, identity: Identity) -> None:
    async def grant(req: rpc_pb2.LeaseGrantRequest, ctx: Any) -> rpc_pb2.LeaseGrantResponse:
        return await server.lease_grant(req, await identity.of(ctx))

    async def revoke(req: rpc_pb2.LeaseRevokeRequest, ctx: Any) -> rpc_pb2.LeaseRevokeResponse:
        return await server.lease_revoke(req, await identity.of(ctx))

    async def time_to_live(
        req: rpc_pb2.LeaseTimeToLiveRequest, ctx: Any
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        return await server.lease_time_to_live(req, await identity.of(ctx))

    async def leases(_req: rpc_pb2.LeaseLeasesRequest, ctx: Any) -> rpc_pb2.LeaseLeasesResponse:
        return server.lease_leases(await identity.of(ctx))

    async def keep_alive(ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
        while True:
            req = await ctx.read()
            if req is grpc.aio.EOF:
                return
            try:
                ttl = await server.lease_renew(req.ID, await identity.of(ctx))
            except errors.EtcdError as err:
                if err != errors.ErrLeaseNotFound:
                    raise
                # etcd answers a keep-alive for an unknown lease with TTL 0, not an error.
                ttl = 0
            await ctx.write(
                rpc_pb2.LeaseKeepAliveResponse(header=server.header(), ID=req.ID, TTL=ttl)
            )

    services.unary(SERVICE, "LeaseGrant", rpc_pb2.LeaseGrantRequest, grant)
    services.unary(SERVICE, "LeaseRevoke", rpc_pb2.LeaseRevokeRequest, revoke)
    services.unary(SERVICE, "LeaseTimeToLive", rpc_pb2.LeaseTimeToLiveRequest, time_to_live)
    services.unary(SERVICE, "LeaseLeases", rpc_pb2.LeaseLeasesRequest, leases)
    services.bidi_stream(SERVICE, "LeaseKeepAlive", rpc_pb2.LeaseKeepAliveRequest, keep_alive)
