"""A large, fragmented database: ``python -m bench.largedb`` (in ``make bench-scale``).

The seed's claim is that the hashmap freelist keeps a big, fragmented bbolt file as fast as a
small one, where bbolt's array freelist degrades. Three targets are filled side by side, one
member each: etcd 3.4 with ``--experimental-backend-bbolt-freelist-type=array``, the same with
``map``, and pyetcd (hashmap only). They are filled in turns up to each size of ``--sizes`` (GB of
``dbSize``, default 1,4,8) with a workload that fragments the file: every round writes new keys
with values of 0.5 to 16 KiB (overflow pages, so multi-page allocations), overwrites some
existing keys, deletes some, and compacts the history away, so that freed pages scatter through
the file. At each size, for each target:

* put p50/p99 and ops/s: etcd's Go benchmark tool, 16 clients, 256-byte values;
* backend commit time over that run (``etcd_disk_backend_commit_duration_seconds``: mean, p99
  from the buckets);
* the member's RSS;
* at the size nearest ``--startup-at`` (default 4 GB): stop, start again, time until it serves a
  linearizable read, and its RSS then.

Needs disk: about the largest size times three, plus WAL. Ratios are from one run on this
machine. Writes ``bench/results/<timestamp>-largedb.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from bench.compare import (
    RESULTS_DIR,
    Measurement,
    go_benchmark_binary,
    rss_mb,
    run_load_cell,
    write_results,
)
from tests.integration.cluster import Member, Timing, as_flavour, status

GB = 1024**3
QUOTA = 64 * GB
TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "etcd-array": ("etcd", ("--experimental-backend-bbolt-freelist-type=array",)),
    "etcd-map": ("etcd", ("--experimental-backend-bbolt-freelist-type=map",)),
    "pyetcd": ("pyetcd", ()),
}
ROUND_NEW = 2000  # new keys per round
MIN_VALUE, MAX_VALUE = 512, 16 * 1024
FILL_CONCURRENCY = 32
COMMIT_METRIC = "etcd_disk_backend_commit_duration_seconds"


@dataclass
class Point:
    target: str
    size_gb: float
    db_bytes: int
    keys: int
    put: Measurement
    commit_mean_ms: float = math.nan
    commit_p99_ms: float = math.nan
    rss_mb: float = math.nan
    fill_mb_per_s: float = math.nan
    fill_timeouts: int = 0
    reached: bool = True  # False: the fill ran out of --fill-minutes below this size
    startup_s: float | None = None
    startup_rss_mb: float | None = None


@dataclass
class Filler:
    """The fragmenting workload of one target, remembered between turns."""

    endpoint: str
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    keys: list[bytes] = field(default_factory=list)
    rounds: int = 0
    timeouts: int = 0  # writes of the fill that timed out and were tried again
    blob: bytes = field(default_factory=lambda: os.urandom(MAX_VALUE * 4))

    async def _retrying(self, method: Any, request: Any) -> Any:
        """A write that timed out under the fill's load is tried again (counted in
        ``timeouts``, which the report shows); anything else ends the run."""
        for attempt in range(10):
            try:
                return await method(request, timeout=60)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise
                self.timeouts += 1
                await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
        return await method(request, timeout=60)

    def value(self) -> bytes:
        size = self.rng.randint(MIN_VALUE, MAX_VALUE)
        start = self.rng.randrange(0, len(self.blob) - size)
        return self.blob[start : start + size]

    async def fill_to(self, target_bytes: int, max_seconds: float) -> tuple[float, bool]:
        """Rounds until ``dbSize`` reaches ``target_bytes`` or ``max_seconds`` have passed:
        (MB/s of values written, whether the size was reached)."""
        written, began = 0, time.monotonic()
        reached = False
        async with grpc.aio.insecure_channel(
            self.endpoint, options=[("grpc.max_send_message_length", 4 * MAX_VALUE)]
        ) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            maintenance = rpc_pb2_grpc.MaintenanceStub(channel)
            while time.monotonic() - began < max_seconds:
                if (await maintenance.Status(rpc_pb2.StatusRequest())).dbSize >= target_bytes:
                    reached = True
                    break
                written += await self._round(kv)
        return written / (1024**2) / max(time.monotonic() - began, 1e-9), reached

    async def _round(self, kv: rpc_pb2_grpc.KVAsyncStub) -> int:
        self.rounds += 1
        fresh = [b"/large/%06d/%06d" % (self.rounds, i) for i in range(ROUND_NEW)]
        rewrite = self.rng.sample(self.keys, min(len(self.keys), ROUND_NEW // 2))
        doomed = set(self.rng.sample(self.keys, min(len(self.keys), ROUND_NEW // 4)))
        puts = [(k, self.value()) for k in fresh + rewrite]
        queue = list(puts)
        written = sum(len(v) for _, v in puts)
        last = 0

        deletes = list(doomed)

        async def writer() -> None:
            nonlocal last
            while queue:
                key, value = queue.pop()
                resp = await self._retrying(kv.Put, rpc_pb2.PutRequest(key=key, value=value))
                last = max(last, resp.header.revision)
            # The deletes run as concurrently as the puts: one at a time, they took as long as
            # the whole round's puts.
            while deletes:
                doomed_key = deletes.pop()
                resp = await self._retrying(
                    kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=doomed_key)
                )
                last = max(last, resp.header.revision)

        await asyncio.gather(*(writer() for _ in range(FILL_CONCURRENCY)))
        # Every old revision goes: the freed pages are the fragmentation.
        await kv.Compact(rpc_pb2.CompactionRequest(revision=last, physical=True))
        self.keys = [k for k in self.keys if k not in doomed] + fresh
        return written


def scrape(member: Member) -> str:
    with urllib.request.urlopen(member.client_url + "/metrics", timeout=10) as resp:
        text: str = resp.read().decode()
        return text


def histogram(text: str, name: str) -> tuple[dict[float, float], float, float]:
    """(cumulative count by upper bound, sum, count) of an unlabelled histogram."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = re.search(r'le="([^"]+)"', line)
            if le:
                buckets[float(le.group(1))] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_sum "):
            total = float(line.split()[1])
        elif line.startswith(f"{name}_count "):
            count = float(line.split()[1])
    return buckets, total, count


def commit_times(before: str, after: str) -> tuple[float, float]:
    """Mean and p99 (upper bound of the bucket holding it) of commits between two scrapes, ms."""
    b0, s0, c0 = histogram(before, COMMIT_METRIC)
    b1, s1, c1 = histogram(after, COMMIT_METRIC)
    n = c1 - c0
    if n <= 0:
        return math.nan, math.nan
    p99 = math.nan
    for le in sorted(b1):
        if b1[le] - b0.get(le, 0.0) >= 0.99 * n:
            p99 = le * 1000
            break
    return (s1 - s0) / n * 1000, p99


def measure(
    label: str, member: Member, size_gb: float, filler: Filler, *, fill_rate: float, go: Path
) -> Point:
    st = status(member, timeout=10)
    before = scrape(member)
    put = Measurement(label, "put", 16, members=1)
    run_load_cell(put, [member.host_port], kind="put", total=5000, max_seconds=300, go_binary=go)
    mean, p99 = commit_times(before, scrape(member))
    return Point(
        label,
        size_gb,
        0 if st is None else st.dbSize,
        len(filler.keys),
        put,
        mean,
        p99,
        rss_mb(member),
        fill_rate,
        filler.timeouts,
    )


def restart_time(member: Member) -> tuple[float, float]:
    member.stop()
    began = time.monotonic()
    member.start_and_wait(timeout=1800)
    return time.monotonic() - began, rss_mb(member)


def render(points: Sequence[Point]) -> str:
    lines = [
        "| size | target | dbSize GB | put ops/s | put p50 ms | put p99 ms | commit mean ms "
        "| commit p99 ms | RSS MB | start-up s | start-up RSS MB | fill MB/s | fill timeouts |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for p in points:
        failed = p.put.failure is not None
        size = f"{p.size_gb:g} GB" if p.reached else f"{p.size_gb:g} GB (not reached)"
        lines.append(
            f"| {size} | {p.target} | {p.db_bytes / GB:.2f} "
            + (
                "| FAILED | - | - "
                if failed
                else f"| {p.put.ops_per_s:,.0f} | {p.put.p50_ms:.2f} | {p.put.p99_ms:.2f} "
            )
            + f"| {p.commit_mean_ms:.2f} | {p.commit_p99_ms:.1f} | {p.rss_mb:,.0f} "
            + (
                f"| {p.startup_s:.1f} | {p.startup_rss_mb:,.0f} "
                if p.startup_s is not None
                else "| - | - "
            )
            + f"| {p.fill_mb_per_s:.1f} | {p.fill_timeouts} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.largedb", description=__doc__)
    parser.add_argument("--sizes", default="1,4,8", help="GB of dbSize to measure at")
    parser.add_argument("--startup-at", type=float, default=4.0, help="GB: restart there")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument(
        "--fill-minutes",
        type=float,
        default=45.0,
        help="longest fill of one target to one size; a target that runs out of it is "
        "measured where it got to and filled no further",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [float(s) for s in args.sizes.split(",") if s]
    labels = [t for t in args.targets.split(",") if t]
    unknown = [t for t in labels if t not in TARGETS]
    if unknown:
        raise SystemExit(f"unknown targets {unknown}: choose from {', '.join(TARGETS)}")
    notes: list[str] = []
    go = go_benchmark_binary(notes)
    if go is None:
        raise SystemExit(
            "the large-database benchmark needs etcd's Go benchmark tool: " + "; ".join(notes)
        )
    root = Path(tempfile.mkdtemp(prefix="pyetcd-bench-largedb-", dir=args.workdir))
    need = max(sizes) * GB * len(labels) * 1.5
    free = shutil.disk_usage(root).free
    if free < need:
        raise SystemExit(f"{root}: {free / GB:.0f} GB free, need about {need / GB:.0f} GB")
    startup_size = min(sizes, key=lambda s: abs(s - args.startup_at))
    members: dict[str, Member] = {}
    fillers: dict[str, Filler] = {}
    points: list[Point] = []
    try:
        for label in labels:
            flavour, flags = TARGETS[label]
            member = Member(
                as_flavour(flavour),
                root / label,
                name=label,
                timing=Timing(),
                extra_flags=[f"--quota-backend-bytes={QUOTA}", *flags],
            )
            member.start_and_wait(timeout=60)
            members[label], fillers[label] = member, Filler(member.host_port)
        stalled: set[str] = set()
        for size in sizes:
            for label in labels:
                if label in stalled:
                    continue
                print(f"filling {label} to {size:g} GB ...", flush=True)
                rate, reached = asyncio.run(
                    fillers[label].fill_to(int(size * GB), args.fill_minutes * 60)
                )
                point = measure(label, members[label], size, fillers[label], fill_rate=rate, go=go)
                if not reached:
                    point.reached = False
                    stalled.add(label)
                if size == startup_size:
                    point.startup_s, point.startup_rss_mb = restart_time(members[label])
                points.append(point)
                print(render([point]).splitlines()[-1], flush=True)
    finally:
        for member in members.values():
            member.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(render(points))
    write_results(args.results_dir, "largedb", {"points": [asdict(p) for p in points]})
    return 1 if any(p.put.failure for p in points) else 0


if __name__ == "__main__":
    raise SystemExit(main())
