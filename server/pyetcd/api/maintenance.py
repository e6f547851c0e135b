"""The etcdserverpb.Maintenance service: status, alarms, hashes, defrag, snapshot streaming."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from pyetcd.api.identity import Identity
from pyetcd.api.rpc import Services
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors
from pyetcd.server.v3api import AlarmServer, MaintenanceServer

SERVICE = "etcdserverpb.Maintenance"
# etcd streams the snapshot in chunks of at most 32 KiB (snapshotSendBufferSize).
SNAPSHOT_CHUNK = 32 * 1024


def register(
    services: Services, server: MaintenanceServer, alarms: AlarmServer, identity: Identity
) -> None:
    async def status(_req: rpc_pb2.StatusRequest, ctx: Any) -> rpc_pb2.StatusResponse:
        await identity.require(ctx)
        return server.status()

    async def alarm(req: rpc_pb2.AlarmRequest, ctx: Any) -> rpc_pb2.AlarmResponse:
        if req.action == rpc_pb2.AlarmRequest.GET:
            await identity.require(ctx)
        else:
            await identity.require_root(ctx)
        return await alarms.alarm(req)

    async def defragment(_req: rpc_pb2.DefragmentRequest, ctx: Any) -> rpc_pb2.DefragmentResponse:
        await identity.require_root(ctx, translated=False)
        await server.defragment()
        return rpc_pb2.DefragmentResponse(header=server.header())

    async def hash_(_req: rpc_pb2.HashRequest, ctx: Any) -> rpc_pb2.HashResponse:
        await identity.require_root(ctx, translated=False)
        return rpc_pb2.HashResponse(header=server.header(), hash=await server.hash())

    async def hash_kv(req: rpc_pb2.HashKVRequest, ctx: Any) -> rpc_pb2.HashKVResponse:
        await identity.require_root(ctx, translated=False)
        h, compact_rev, hashed, current = server.hash_kv(req.revision)
        return rpc_pb2.HashKVResponse(
            header=server.header(current),
            hash=h,
            compact_revision=compact_rev,
            hash_revision=hashed,
        )

    async def move_leader(req: rpc_pb2.MoveLeaderRequest, ctx: Any) -> rpc_pb2.MoveLeaderResponse:
        await identity.require_root(ctx)
        # etcd answers on the leader only; etcdctl finds the leader through Status first.
        await server.move_leader(req.targetID)
        return rpc_pb2.MoveLeaderResponse(header=server.header())

    async def downgrade(_req: rpc_pb2.DowngradeRequest, ctx: Any) -> rpc_pb2.DowngradeResponse:
        await identity.require_root(ctx)
        raise errors.ErrNotCapable

    async def snapshot(
        _req: rpc_pb2.SnapshotRequest, ctx: Any
    ) -> AsyncIterator[rpc_pb2.SnapshotResponse]:
        await identity.require_root(ctx, translated=False)
        reader = await server.snapshot()
        loop = asyncio.get_running_loop()
        digest = hashlib.sha256()
        try:
            remaining = reader.size
            while remaining > 0:
                chunk = await loop.run_in_executor(None, reader.read, SNAPSHOT_CHUNK)
                if not chunk:
                    raise errors.EtcdError("snapshot ended early", "INTERNAL")
                digest.update(chunk)
                remaining -= len(chunk)
                yield rpc_pb2.SnapshotResponse(
                    header=server.header(), remaining_bytes=remaining, blob=chunk
                )
        finally:
            reader.close()
        # The last message carries the SHA-256 of everything sent, which etcdctl verifies.
        yield rpc_pb2.SnapshotResponse(
            header=server.header(), remaining_bytes=0, blob=digest.digest()
        )

    services.unary(SERVICE, "Status", rpc_pb2.StatusRequest, status)
    services.unary(SERVICE, "Alarm", rpc_pb2.AlarmRequest, alarm)
    services.unary(SERVICE, "Defragment", rpc_pb2.DefragmentRequest, defragment)
    services.unary(SERVICE, "Hash", rpc_pb2.HashRequest, hash_)
    services.unary(SERVICE, "HashKV", rpc_pb2.HashKVRequest, hash_kv)
    services.unary(SERVICE, "MoveLeader", rpc_pb2.MoveLeaderRequest, move_leader)
    services.unary(SERVICE, "Downgrade", rpc_pb2.DowngradeRequest, downgrade)
    services.server_stream(SERVICE, "Snapshot", rpc_pb2.SnapshotRequest, snapshot)
