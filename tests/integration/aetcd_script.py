"""A fixed sequence of aetcd client calls against one endpoint, printed as normalised JSON lines.

Run in a subprocess by ``test_aetcd_compat.py`` (aetcd's generated protobufs clash with
pyetcd's in one process): ``python -m tests.integration.aetcd_script HOST:PORT PEER_HOST:PORT``.
Each line is ``{"step": name, ...result}``; ids, revisions and the like are normalised with
``normalize.py`` (revisions relative to the server's revision before the first write), so the
output of two servers can be compared line by line. A failed call prints its error class, gRPC
code and message instead of a result, and the sequence goes on.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aetcd
import grpc
from aetcd import rpc
from google.protobuf import json_format

from tests.integration.normalize import Context, dumps, normalize_json

WATCH_TIMEOUT = 10.0
Result = dict[str, Any]


def proto(message: Any) -> Result:
    out: Result = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return out


def kv(item: Any) -> Result:
    return {
        "key": item.key.decode(errors="replace"),
        "value": item.value.decode(errors="replace"),
        "create_revision": item.create_revision,
        "mod_revision": item.mod_revision,
        "version": item.version,
        "lease": item.lease,
    }


def header(item: Any) -> Result:
    return {
        "cluster_id": item.cluster_id,
        "member_id": item.member_id,
        "revision": item.revision,
        "raft_term": item.raft_term,
    }


def listing(res: Any) -> Result:
    return {
        "header": header(res.header),
        "count": res.count,
        "more": res.more,
        "kvs": [kv(item) for item in res],
    }


def error(exc: BaseException) -> Result:
    out: Result = {"error": type(exc).__name__}
    cause = exc if isinstance(exc, grpc.aio.AioRpcError) else exc.__cause__
    if isinstance(cause, grpc.aio.AioRpcError):
        out["code"] = cause.code().name
        out["details"] = cause.details()
    elif isinstance(exc, aetcd.RevisionCompactedError):
        out["compact_revision"] = exc.compacted_revision  # normalised like any revision
    else:
        out["message"] = str(exc)
    return out


class Script:
    """The sequence; ``run`` prints one JSON line per step."""

    def __init__(self, client: Any, ctx: Context) -> None:
        self.c = client
        self.ctx = ctx
        self.vars: dict[str, Any] = {}

    def emit(self, step: str, result: Result) -> None:
        line = dumps(normalize_json(self.ctx, {"step": step, **result}))
        print(self.ctx.literal(line), flush=True)

    async def step(self, name: str, call: Callable[[], Awaitable[Result]]) -> None:
        try:
            result = await call()
        except (aetcd.ClientError, grpc.aio.AioRpcError) as exc:
            result = error(exc)
        self.emit(name, result)

    def rev(self, delta: int) -> int:
        base: int = self.vars["base"]
        return base + delta

    # -- steps -----------------------------------------------------------------------------
    async def put(self, key: bytes, value: bytes, **kw: Any) -> Result:
        res = await self.c.put(key, value, **kw)
        prev = kv(res.prev_kv) if res.prev_kv is not None else None
        return {"header": header(res.header), "prev_kv": prev}

    async def get(self, key: bytes) -> Result:
        res = await self.c.get(key)
        return {"found": False} if res is None else {"header": header(res.header), **kv(res)}

    async def delete(self, key: bytes) -> Result:
        res = await self.c.delete(key, prev_kv=True)
        if res is None:
            return {"deleted": 0}
        return {"header": header(res.header), "deleted": res.deleted, "prev_kv": kv(res.prev_kv)}

    async def raw(self, method: str, request: Any) -> Result:
        stub = self.c.leasestub if method.startswith("Lease") else self.c.kvstub
        if method in {"Status", "HashKV", "Alarm", "Defragment"}:
            stub = self.c.maintenancestub
        return proto(await getattr(stub, method)(request))

    async def txn(self, compare: list[Any], success: list[Any], failure: list[Any]) -> Result:
        ok, responses = await self.c.transaction(compare=compare, success=success, failure=failure)
        shown: list[Any] = []
        for response in responses:
            if isinstance(response, list):  # ranges come back as (value, Get) pairs
                shown.append([kv(get) for _value, get in response])
            else:
                shown.append(proto(response))
        return {"succeeded": ok, "responses": shown}

    async def watch(self, key: bytes, start: int, count: int, **kw: Any) -> Result:
        watch = await self.c.watch_prefix(key, start_revision=start, **kw)
        events: list[Result] = []
        try:
            async with asyncio.timeout(WATCH_TIMEOUT):
                async for event in watch:
                    prev = kv(event.prev_kv) if event.prev_kv is not None else None
                    kind = str(getattr(event.kind, "value", event.kind))
                    events.append({"kind": kind, "kv": kv(event.kv), "prev": prev})
                    if len(events) >= count:
                        break
        except TimeoutError:
            events.append({"timeout": f"only {len(events)} of {count} events"})
        finally:
            await watch.cancel()
        return {"events": events}

    async def status(self) -> Result:
        status = await self.c.status()
        return {
            "version": status.version,
            "dbSize": status.db_size,
            "leader": status.leader.id if status.leader is not None else None,
            "leader_name": status.leader.name if status.leader is not None else None,
            "raftIndex": status.raft_index,
            "raftTerm": status.raft_term,
        }

    async def members(self) -> Result:
        found = [
            {
                "ID": m.id,
                "name": m.name,
                "peerURLs": list(m.peer_urls),
                "clientURLs": list(m.client_urls),
            }
            async for m in self.c.members()
        ]
        return {"members": found}

    async def run(self) -> None:
        c, t = self.c, self.c.transactions
        self.vars["base"] = (await c.get_all()).header.revision
        self.ctx.base_revision = self.vars["base"]
        self.emit("base", {"revision": self.vars["base"]})

        # kv
        await self.step("put a", lambda: self.put(b"/a/a", b"1"))
        await self.step("put b", lambda: self.put(b"/a/b", b"2"))
        await self.step("put c", lambda: self.put(b"/a/c", b"3"))
        await self.step("put a prev_kv", lambda: self.put(b"/a/a", b"11", prev_kv=True))
        await self.step("put x", lambda: self.put(b"/x", b"outside"))
        await self.step("get a", lambda: self.get(b"/a/a"))
        await self.step("get missing", lambda: self.get(b"/a/missing"))

        async def prefix() -> Result:
            return listing(await c.get_prefix(b"/a/", sort_order="descend", sort_target="mod"))

        async def key_range() -> Result:
            return listing(await c.get_range(b"/a/b", b"/a/d"))

        async def everything() -> Result:
            return listing(await c.get_all(keys_only=True))

        await self.step("get_prefix descend by mod", prefix)
        await self.step("get_range", key_range)
        await self.step("get_all keys_only", everything)
        await self.step(
            "range at old revision, limit, serializable",
            lambda: self.raw(
                "Range",
                rpc.RangeRequest(
                    key=b"/a/",
                    range_end=b"/a0",
                    revision=self.rev(3),
                    limit=2,
                    serializable=True,
                ),
            ),
        )
        await self.step(
            "range count_only with min_mod_revision",
            lambda: self.raw(
                "Range",
                rpc.RangeRequest(
                    key=b"/a/", range_end=b"/a0", count_only=True, min_mod_revision=self.rev(2)
                ),
            ),
        )
        await self.step("delete b", lambda: self.delete(b"/a/b"))
        await self.step("delete missing", lambda: self.delete(b"/a/b"))

        async def delete_prefix() -> Result:
            res = await c.delete_prefix(b"/x", prev_kv=True)
            return {"deleted": res.deleted, "prev_kvs": [kv(p) for p in res.prev_kvs]}

        await self.step("delete_prefix", delete_prefix)

        # txn
        await self.step(
            "txn value/version success",
            lambda: self.txn(
                [t.value(b"/a/a") == b"11", t.version(b"/a/a") > 1],
                [t.put(b"/a/t", b"yes"), t.get(b"/a/a")],
                [t.put(b"/a/t", b"no")],
            ),
        )
        await self.step(
            "txn create/mod failure",
            lambda: self.txn(
                [t.create(b"/a/c") == self.rev(3), t.mod(b"/a/c") < self.rev(1)],
                [t.delete(b"/a/c")],
                [t.get(b"/a/c"), t.delete(b"/a/t")],
            ),
        )
        await self.step(
            "txn nested",
            lambda: self.txn(
                [t.value(b"/a/a") != b"zz"],
                [t.txn([t.version(b"/a/c") == 1], [t.put(b"/a/n", b"inner")], [])],
                [],
            ),
        )

        # lease
        async def grant() -> Result:
            lease = await c.lease(600)
            self.vars["lease"] = lease.id
            return {"ID": lease.id, "TTL": lease.ttl}

        await self.step("lease grant", grant)
        await self.step("put with lease", lambda: self.put(b"/l/a", b"v", lease=self.vars["lease"]))
        await self.step(
            "txn compare lease",
            lambda: self.raw(
                "Txn",
                rpc.TxnRequest(
                    compare=[
                        rpc.Compare(
                            result=rpc.Compare.EQUAL,
                            target=rpc.Compare.LEASE,
                            key=b"/l/a",
                            lease=self.vars["lease"],
                        )
                    ],
                    success=[rpc.RequestOp(request_range=rpc.RangeRequest(key=b"/l/a"))],
                ),
            ),
        )

        async def keepalive() -> Result:
            reply = await c.refresh_lease(self.vars["lease"])
            return {"ID": reply.ID, "TTL": reply.TTL}

        async def ttl() -> Result:
            info = await c.get_lease_info(self.vars["lease"])
            remaining = "<remaining>" if info.TTL > 0 else info.TTL
            keys = sorted(k.decode() for k in info.keys)
            return {"ID": info.ID, "ttl": remaining, "grantedTTL": info.grantedTTL, "keys": keys}

        async def leases() -> Result:
            reply = await c.leasestub.LeaseLeases(rpc.LeaseLeasesRequest())
            return {"leases": sorted(str(self.ctx.id(lease.ID)) for lease in reply.leases)}

        await self.step("lease keepalive", keepalive)
        await self.step("lease timetolive", ttl)
        await self.step("lease leases", leases)

        async def revoke() -> Result:
            await c.revoke_lease(self.vars["lease"])
            return {"revoked": True}

        await self.step("lease revoke", revoke)
        await self.step("leased key is gone", lambda: self.get(b"/l/a"))
        await self.step("lease timetolive after revoke", ttl)
        await self.step("lease revoke again", revoke)

        # watch
        await self.step("watch history", lambda: self.watch(b"/a/", self.rev(1), 4))

        async def live() -> Result:
            current = (await c.get_all()).header.revision
            for i in range(3):
                await c.put(f"/w/{i}".encode(), b"live")
            await c.delete(b"/w/1")
            return await self.watch(b"/w/", current + 1, 4, prev_kv=True)

        await self.step("watch live with prev_kv", live)

        # maintenance
        await self.step("status", self.status)
        await self.step("members", self.members)
        await self.step("hashkv", lambda: self.raw("HashKV", rpc.HashKVRequest()))
        await self.step(
            "alarm list",
            lambda: self.raw("Alarm", rpc.AlarmRequest(action=rpc.AlarmRequest.GET)),
        )

        async def compact() -> Result:
            await c.compact(self.rev(4), physical=True)
            return {"revision": self.rev(4)}

        await self.step("compact", compact)
        await self.step("compact again", compact)
        await self.step(
            "range at compacted revision",
            lambda: self.raw("Range", rpc.RangeRequest(key=b"/a/a", revision=self.rev(2))),
        )
        await self.step("watch compacted revision", lambda: self.watch(b"/a/", self.rev(2), 1))

        # errors
        await self.step(
            "range at future revision",
            lambda: self.raw("Range", rpc.RangeRequest(key=b"/a/a", revision=self.rev(1000))),
        )
        await self.step("put empty key", lambda: self.put(b"", b"v"))
        await self.step("put unknown lease", lambda: self.put(b"/e", b"v", lease=12345))
        await self.step(
            "txn duplicate key",
            lambda: self.txn([], [t.put(b"/d", b"1"), t.put(b"/d", b"2")], []),
        )
        await self.step(
            "lease grant too large",
            lambda: self.raw("LeaseGrant", rpc.LeaseGrantRequest(TTL=9_000_000_001)),
        )


async def auth_steps(host: str, port: int, ctx: Context) -> None:
    """With etcd's auth on (alice: read-write on /app/): what aetcd, which authenticates with
    a user and password, sees granted and refused."""
    async with aetcd.Client(
        host=host, port=port, username="alice", password="apw", timeout=10
    ) as client:
        script = Script(client, ctx)
        await script.step("auth put granted", lambda: script.put(b"/app/a", b"1"))
        await script.step("auth get granted", lambda: script.get(b"/app/a"))
        await script.step("auth get refused", lambda: script.get(b"/other"))
        await script.step("auth put refused", lambda: script.put(b"/other", b"x"))
        await script.step("auth delete refused", lambda: script.delete(b"/other"))

        async def wrong_password() -> Result:
            # aetcd authenticates when it connects.
            async with aetcd.Client(
                host=host, port=port, username="alice", password="wrong", timeout=10
            ) as other:
                return await Script(other, ctx).get(b"/app/a")

        await script.step("auth wrong password", wrong_password)
    async with aetcd.Client(host=host, port=port, timeout=10) as client:
        script = Script(client, ctx)
        await script.step("auth no user", lambda: script.get(b"/app/a"))


async def main(endpoint: str, peer: str, mode: str = "") -> None:
    host, port = endpoint.rsplit(":", 1)
    ctx = Context()
    ctx.add_replacement(endpoint, "<client>")
    ctx.add_replacement(peer, "<peer>")
    if mode == "auth":
        await auth_steps(host, int(port), ctx)
        return
    async with aetcd.Client(host=host, port=int(port), timeout=10) as client:
        await Script(client, ctx).run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
