"""Fallback load generator (asyncio + grpc.aio + pyetcd's stubs) for when etcd's Go tool is absent.

``bench.compare`` prefers etcd's own ``tools/benchmark`` (built with the Go toolchain); this
module produces the same measurements (ops/s, p50, p99, errors) from Python when that build is
impossible. It shares the CPU with the servers, so it is slower than the Go tool: only ratios
measured with one generator in one run mean anything.

Requests are bounded in count and in time; the targets are always loopback addresses (one
member, or several: connections are spread over them round-robin, as etcd's tool does).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc


@dataclass(frozen=True)
class LoadResult:
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def _run(
    endpoints: Sequence[str], workload: str, clients: int, total: int, max_seconds: float
) -> LoadResult:
    if not endpoints:
        raise ValueError("no endpoints")
    for endpoint in endpoints:
        if not endpoint.startswith("127.0.0.1:"):
            raise ValueError(f"loopback endpoints only, got {endpoint}")
    conns = max(1, min(clients, 16))
    # As etcd's tool: connection i goes to endpoints[i % len(endpoints)], client i uses
    # connection i % conns; a channel of its own per connection (no shared subchannel).
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(endpoints[i % len(endpoints)], options=options)
        for i in range(conns)
    ]
    # the generated .pyi types a stub built on an aio channel as KVAsyncStub (a stub-only name)
    stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]
    value = b"v" * 256
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.monotonic() + max_seconds

    async def one(stub: rpc_pb2_grpc.KVAsyncStub, n: int) -> None:
        key = b"bench-%08d" % (n % 1000)
        if workload == "put":
            await stub.Put(rpc_pb2.PutRequest(key=key, value=value))
        elif workload in {"range-l", "range-s"}:
            await stub.Range(
                rpc_pb2.RangeRequest(key=b"bench-key", serializable=workload == "range-s")
            )
        elif workload == "txn-put":
            op = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))
            await stub.Txn(rpc_pb2.TxnRequest(success=[op]))
        else:
            raise ValueError(workload)

    async def worker(index: int) -> None:
        nonlocal errors, issued
        stub = stubs[index % conns]
        while issued < total and time.monotonic() < deadline:
            n = issued
            issued += 1
            start = time.perf_counter()
            try:
                await one(stub, n)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)

    try:
        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    finally:
        for ch in channels:
            await ch.close()
    latencies.sort()
    return LoadResult(
        ops_per_s=len(latencies) / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        errors=errors,
        requests=len(latencies) + errors,
    )


def run_load(
    endpoints: str | Sequence[str],
    workload: str,
    clients: int,
    total: int,
    max_seconds: float = 60.0,
) -> LoadResult:
    """Run one bounded workload against ``endpoints`` (host:port, one or a sequence, or
    comma-separated) and summarise it."""
    if isinstance(endpoints, str):
        endpoints = [e for e in endpoints.split(",") if e]
    return asyncio.run(_run(list(endpoints), workload, clients, total, max_seconds))
