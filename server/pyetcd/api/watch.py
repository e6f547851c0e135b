"""The etcdserverpb.Watch service: one bidirectional stream carries many watchers.

A receive task turns WatchRequests into calls on the stream's ``WatchStream`` (create, cancel,
progress); the send loop drains the responses the store queued and writes them, encoded from the
stored KeyValue bytes. Responses that a watcher allowed to be fragmented are split when they exceed
etcd's limit (``--max-request-bytes`` + 512 KiB), as etcd does.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from pyetcd.api.identity import Identity
from pyetcd.api.rpc import Services
from pyetcd.mvcc import WatchResponse, WatchStream
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server import errors
from pyetcd.server.v3api import WatchServer

SERVICE = "etcdserverpb.Watch"
FRAGMENT_OVERHEAD = 512 * 1024


def _fragments(resp: WatchResponse, limit: int) -> list[WatchResponse]:
    """Split an oversized event response into pieces of at most ``limit`` bytes of events."""
    if not resp.fragment or len(resp.events) < 2:
        return [resp]
    size = sum(len(ev.encode(resp.prev_kv)) for ev in resp.events)
    if size <= limit:
        return [resp]
    pieces: list[WatchResponse] = []
    batch: list[Any] = []
    batch_size = 0
    for ev in resp.events:
        n = len(ev.encode(resp.prev_kv))
        if batch and batch_size + n > limit:
            pieces.append(_piece(resp, batch))
            batch, batch_size = [], 0
        batch.append(ev)
        batch_size += n
    pieces.append(_piece(resp, batch))
    for piece in pieces[:-1]:
        piece.fragment = True
    pieces[-1].fragment = False
    return pieces


def _piece(resp: WatchResponse, events: list[Any]) -> WatchResponse:
    return WatchResponse(resp.watch_id, resp.revision, events, prev_kv=resp.prev_kv)


def _encode(resp: WatchResponse, header: bytes) -> bytes:
    data = resp.encode(header)
    if resp.fragment:
        data += b"\x38\x01"  # WatchResponse.fragment = true (field 7)
    return data


# The reasons a refused watch carries (etcd's isWatchPermitted): any other refusal is reported
# as permission denied.
_REFUSALS = (errors.ErrInvalidAuthToken, errors.ErrAuthOldRevision, errors.ErrUserEmpty)


def register(services: Services, server: WatchServer, identity: Identity) -> None:
    limit = server.cfg.max_request_bytes + FRAGMENT_OVERHEAD
    progress_interval = server.cfg.experimental_watch_progress_notify_interval

    async def watch(ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
        ready = asyncio.Event()
        stream: WatchStream = server.store.new_stream(wakeup=ready.set)
        done = asyncio.Event()

        async def receive() -> None:
            try:
                while True:
                    req = await ctx.read()
                    if req is grpc.aio.EOF:
                        # etcd keeps serving the watchers of a client that half-closed its
                        # side (its recvLoop ends with nil on io.EOF); the stream ends when
                        # the client cancels it.
                        return
                    if refused := await _refusal(req, ctx):
                        stream.reject(refused)
                    else:
                        _handle(stream, req)
                    ready.set()
            except BaseException:
                done.set()
                ready.set()
                raise

        async def progress() -> None:
            while True:
                await asyncio.sleep(progress_interval)
                stream.progress_tick()

        async def _refusal(req: rpc_pb2.WatchRequest, ctx: Any) -> str:
            """Why a create request is refused while auth is on ("" when it is not)."""
            if not server.auth.enabled or req.WhichOneof("request_union") != "create_request":
                return ""
            c = req.create_request
            try:
                server.auth.is_range_permitted(await identity.of(ctx), c.key, c.range_end)
            except errors.EtcdError as exc:
                refused = exc if exc in _REFUSALS else errors.ErrPermissionDenied
                # etcd puts the gRPC error's text in the reason, as Go prints a status error.
                return f"rpc error: code = {errors.go_code(refused.code)} desc = {refused.message}"
            return ""

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(receive()), loop.create_task(progress())]
        try:
            while True:
                await ready.wait()
                ready.clear()
                for resp in stream.poll():
                    header = server.header(resp.revision).SerializeToString()
                    for piece in _fragments(resp, limit):
                        await ctx.write(_encode(piece, header))
                if done.is_set() and not stream.pending():
                    return
        finally:
            stream.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    services.bidi_stream(SERVICE, "Watch", rpc_pb2.WatchRequest, watch)


def _handle(stream: WatchStream, req: rpc_pb2.WatchRequest) -> None:
    kind = req.WhichOneof("request_union")
    if kind == "create_request":
        c = req.create_request
        stream.watch(
            c.key,
            c.range_end,
            c.start_revision,
            c.watch_id,
            filters=list(c.filters),
            prev_kv=c.prev_kv,
            progress_notify=c.progress_notify,
            fragment=c.fragment,
        )
    elif kind == "cancel_request":
        stream.cancel(req.cancel_request.watch_id)
    elif kind == "progress_request":
        stream.request_progress()
