"""Many leases: ``python -m bench.leases`` (in ``make bench-scale``).

The seed's claim is that its lessor finds expired leases in O(log n) (a heap), so a million
leases cost no more per operation than a hundred thousand, and a mass expiry does not stall the
writes around it. For each count of ``--leases`` (default 100k and 1M), etcd 3.4 and pyetcd (one
member each, started side by side, fresh for each count) are driven in turn by ``bench/go/leasegen``
(etcd's Go client, 64 workers):

* grant: every lease granted with one key attached to it (ops/s, grant p50/p99, attach p99);
* keep-alive: one renewal of every lease on long-lived streams (ops/s, p50/p99);
* the member's RSS with every lease live;
* puts with every lease live (etcd's Go benchmark tool, 16 clients): p50/p99;
* the mass expiry: the renewals above put every deadline within a few seconds of each other,
  so once the TTL has passed all the leases expire at once. Both servers revoke at most 1,000
  a second (etcd's ``leaseRevokeRate``), so a million leases take over a quarter of an hour;
  the run watches ``--expiry-window`` seconds of it: the revoke rate reached (attached keys
  deleted per second) and put p50/p99 while it runs, beside the same puts before it.

The TTL is chosen per target so that no lease can expire before its renewal: one and a half
times the grant time that a calibration run of 2,000 leases predicts, plus a margin. Ratios
come from one run on this machine. Writes ``bench/results/<timestamp>-leases.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from bench.compare import (
    RESULTS_DIR,
    Measurement,
    Target,
    go_benchmark_binary,
    go_tool_binary,
    rss_mb,
    run_load_cell,
    started,
    write_results,
)
from tests.integration.cluster import wait_for

PREFIX = b"/leasegen/"
CALIBRATION = 2000
MIN_TTL = 60
WORKERS = 64


@dataclass
class Phase:
    """One JSON line of leasegen."""

    phase: str
    ops: int = 0
    errors: int = 0
    first_error: str = ""
    seconds: float = math.nan
    ops_per_s: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    attach_p99_ms: float = math.nan


@dataclass
class Cell:
    target: str
    leases: int
    ttl: int
    grant: Phase = field(default_factory=lambda: Phase("grant"))
    keepalive: Phase = field(default_factory=lambda: Phase("keepalive"))
    rss_mb: float = math.nan
    put_live: Measurement | None = None
    put_expiry: Measurement | None = None
    revoked_per_s: float = math.nan
    expiry_observed_s: float = math.nan
    failure: str | None = None


def attached(endpoint: str) -> int:
    """How many attached keys are left (a serializable count: no Raft round, no lease work)."""
    with grpc.insecure_channel(endpoint) as channel:
        resp = rpc_pb2_grpc.KVStub(channel).Range(
            rpc_pb2.RangeRequest(
                key=PREFIX,
                range_end=PREFIX[:-1] + bytes([PREFIX[-1] + 1]),
                count_only=True,
                serializable=True,
            ),
            timeout=60,
        )
        return int(resp.count)


def run_leasegen(
    binary: Path, endpoint: str, leases: int, ttl: int, on_phase: dict[str, float]
) -> list[Phase]:
    """Run leasegen to the end; ``on_phase`` gets the monotonic time each phase line arrived."""
    proc = subprocess.Popen(
        [
            str(binary),
            f"--endpoints={endpoint}",
            f"--leases={leases}",
            f"--ttl={ttl}",
            f"--clients={WORKERS}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    phases = []
    for line in proc.stdout:
        on_phase[json.loads(line)["phase"]] = time.monotonic()
        phases.append(Phase(**json.loads(line)))
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise RuntimeError(f"leasegen exited {proc.returncode}: {err.strip()[-500:]}")
    return phases


def put_cell(label: str, endpoint: str, go: Path) -> Measurement:
    m = Measurement(label, "put", 16, members=1)
    run_load_cell(m, [endpoint], kind="put", total=5000, max_seconds=300, go_binary=go)
    return m


def measure(target: Target, leases: int, *, leasegen: Path, go: Path, window: float) -> Cell:
    member = target.members[0]
    endpoint = member.host_port
    # Calibration: short-lived leases that are gone before the measured run starts.
    seen: dict[str, float] = {}
    calibration = run_leasegen(leasegen, endpoint, CALIBRATION, 5, seen)[0]
    wait_for(
        f"{target.label}'s calibration leases to expire",
        lambda: attached(endpoint) == 0 or None,
        120,
        member,
    )
    grant_s = leases / max(calibration.ops_per_s, 1.0)
    ttl = max(MIN_TTL, math.ceil(1.5 * grant_s) + 30)
    cell = Cell(target.label, leases, ttl)
    print(f"  {target.label}: {leases:,} leases, TTL {ttl} s ...", flush=True)
    phases = run_leasegen(leasegen, endpoint, leases, ttl, seen)
    for p in phases:
        setattr(cell, p.phase, p)
    if cell.grant.errors or cell.keepalive.errors:
        cell.failure = cell.grant.first_error or cell.keepalive.first_error
    cell.rss_mb = rss_mb(member)
    cell.put_live = put_cell(target.label, endpoint, go)
    total = attached(endpoint)
    # The renewals began when the grant line arrived; the first deadline is a TTL after that.
    due = seen["grant"] + ttl
    wait_for(
        f"{target.label}'s leases to start expiring",
        lambda: attached(endpoint) < total or None,
        max(due - time.monotonic(), 0) + 60,
        member,
    )
    began, left_at_start = time.monotonic(), attached(endpoint)
    cell.put_expiry = put_cell(target.label, endpoint, go)
    while time.monotonic() - began < window:
        left = attached(endpoint)
        if left == 0:
            break
        time.sleep(0.5)  # sampling the revoke rate, not waiting for a condition
    cell.expiry_observed_s = time.monotonic() - began
    cell.revoked_per_s = (left_at_start - attached(endpoint)) / cell.expiry_observed_s
    return cell


def render(cells: Sequence[Cell]) -> str:
    lines = [
        "| leases | target | grant/s | grant p99 ms | attach p99 ms | keep-alive/s "
        "| keep-alive p99 ms | RSS MB | put p99 ms, live | put p99 ms, expiring | revoked/s |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        live = c.put_live.p99_ms if c.put_live and not c.put_live.failure else math.nan
        expiring = c.put_expiry.p99_ms if c.put_expiry and not c.put_expiry.failure else math.nan
        lines.append(
            f"| {c.leases:,} | {c.target} | {c.grant.ops_per_s:,.0f} | {c.grant.p99_ms:.2f} "
            f"| {c.grant.attach_p99_ms:.2f} | {c.keepalive.ops_per_s:,.0f} "
            f"| {c.keepalive.p99_ms:.2f} | {c.rss_mb:,.0f} | {live:.2f} | {expiring:.2f} "
            f"| {c.revoked_per_s:,.0f} |" + (f" FAILED: {c.failure[:100]}" if c.failure else "")
        )
    by = {(c.target, c.leases): c for c in cells}
    for n in dict.fromkeys(c.leases for c in cells):
        a, b = by.get(("etcd", n)), by.get(("pyetcd", n))
        if a and b:
            lines.append(
                f"{n:,} leases, pyetcd / etcd: grant {b.grant.ops_per_s / a.grant.ops_per_s:.2f}, "
                f"keep-alive {b.keepalive.ops_per_s / a.keepalive.ops_per_s:.2f}, "
                f"RSS {b.rss_mb / a.rss_mb:.2f}"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.leases", description=__doc__)
    parser.add_argument("--leases", default="100000,1000000", help="counts to measure at")
    parser.add_argument("--flavours", default="etcd,pyetcd")
    parser.add_argument("--expiry-window", type=float, default=60.0, help="seconds observed")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(n) for n in args.leases.split(",") if n]
    flavours = [f.strip() for f in args.flavours.split(",") if f.strip()]
    notes: list[str] = []
    go, leasegen = go_benchmark_binary(notes), go_tool_binary("leasegen", notes)
    if go is None or leasegen is None:
        raise SystemExit("the lease benchmark needs Go to build its tools: " + "; ".join(notes))
    cells: list[Cell] = []
    for n in counts:
        with (
            tempfile.TemporaryDirectory(prefix="pyetcd-bench-leases-") as tmp,
            started(flavours, Path(tmp), 1, ceiling=False) as targets,
        ):
            for label, item in targets:
                if not isinstance(item, Target):
                    raise SystemExit(f"{label} did not start: {item}")
                cells.append(measure(item, n, leasegen=leasegen, go=go, window=args.expiry_window))
    print(render(cells))
    write_results(args.results_dir, "leases", {"cells": [asdict(c) for c in cells]})
    return 1 if any(c.failure for c in cells) else 0


if __name__ == "__main__":
    raise SystemExit(main())
