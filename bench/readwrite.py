"""Reads while writes run: ``python -m bench.readwrite`` (in ``make bench-scale``).

etcd serves a Range from its read transaction without waiting for the write batch in flight; a
server whose reads queue behind commits shows it as range latency that climbs with the put load.
For each flavour (etcd, then pyetcd; both up side by side, one member each) this measures range
latency (linearizable and serializable, ``--clients`` readers) twice: on an idle server, then
while etcd's Go benchmark tool keeps ``--writers`` clients putting 256-byte values. Reported per
cell: ops/s, p50 and p99 idle and under load, the loaded / idle p99 ratio (how much the writes
slow the reads) and pyetcd / etcd under load. Ratios come from one run; the two cores are shared
by the servers and the load generators. Writes ``bench/results/<timestamp>-readwrite.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.compare import (
    RESULTS_DIR,
    Measurement,
    Target,
    go_benchmark_binary,
    go_load_argv,
    run_workload,
    started,
    write_results,
)
from tests.integration.cluster import status, wait_for

READS = ("range-l", "range-s")
WRITE_TOTAL = 100_000_000  # the writers run until stopped


@dataclass
class Cell:
    flavour: str
    workload: str
    clients: int
    idle: Measurement
    loaded: Measurement
    writes_per_s: float = math.nan


@contextlib.contextmanager
def writing(go_binary: Path, target: Target, writers: int) -> Iterator[subprocess.Popen[bytes]]:
    """Puts from ``writers`` clients until the block ends."""
    proc = subprocess.Popen(
        go_load_argv(go_binary, target.endpoints("all"), "put", writers, WRITE_TOTAL),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def revision(target: Target) -> int:
    st = status(target.members[0])
    return 0 if st is None else int(st.header.revision)


def measure(
    target: Target, go_binary: Path, *, readers: int, writers: int, total: int, max_s: float
) -> list[Cell]:
    cells = []
    for workload in READS:
        idle = run_workload(
            target,
            workload=workload,
            clients=readers,
            total=total,
            max_seconds=max_s,
            go_binary=go_binary,
        )
        with writing(go_binary, target, writers) as proc:
            wait_writing(target, proc)
            before, t0 = revision(target), time.monotonic()
            loaded = run_workload(
                target,
                workload=workload,
                clients=readers,
                total=total,
                max_seconds=max_s,
                go_binary=go_binary,
            )
            writes = (revision(target) - before) / (time.monotonic() - t0)
        cells.append(Cell(target.label, workload, readers, idle, loaded, writes))
    return cells


def wait_writing(target: Target, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until the writers have moved the revision: the readers then run under load."""
    start = revision(target)

    def moved() -> bool | None:
        if proc.poll() is not None:
            raise RuntimeError(f"the writers exited with {proc.returncode}")
        return True if revision(target) > start + 100 else None

    wait_for(f"puts on {target.label}", moved, timeout)


def render(cells: Sequence[Cell]) -> str:
    flavours = list(dict.fromkeys(c.flavour for c in cells))
    lines = [
        "| reads | flavour | writes/s | idle ops/s | idle p50 | idle p99 | loaded ops/s "
        "| loaded p50 | loaded p99 | loaded/idle p99 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        if c.idle.failure or c.loaded.failure:
            lines.append(
                f"| {c.workload} x{c.clients} | {c.flavour} | FAILED: "
                f"{(c.idle.failure or c.loaded.failure or '')[:120]} |"
            )
            continue
        lines.append(
            f"| {c.workload} x{c.clients} | {c.flavour} | {c.writes_per_s:,.0f} "
            f"| {c.idle.ops_per_s:,.0f} | {c.idle.p50_ms:.2f} | {c.idle.p99_ms:.2f} "
            f"| {c.loaded.ops_per_s:,.0f} | {c.loaded.p50_ms:.2f} | {c.loaded.p99_ms:.2f} "
            f"| {c.loaded.p99_ms / c.idle.p99_ms:.2f} |"
        )
    if len(flavours) == 2:
        first, second = flavours
        by = {(c.flavour, c.workload): c for c in cells}
        for workload in READS:
            a, b = by.get((first, workload)), by.get((second, workload))
            if a and b and not (a.loaded.failure or b.loaded.failure):
                lines.append(
                    f"{workload} under load, {second} / {first}: ops "
                    f"{b.loaded.ops_per_s / a.loaded.ops_per_s:.2f}, p99 "
                    f"{b.loaded.p99_ms / a.loaded.p99_ms:.2f}"
                )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.readwrite", description=__doc__)
    parser.add_argument("--flavours", default="etcd,pyetcd")
    parser.add_argument("--clients", type=int, default=16, help="readers")
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--total", type=int, default=5000, help="reads per cell")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    flavours = [f.strip() for f in args.flavours.split(",") if f.strip()]
    notes: list[str] = []
    go_binary = go_benchmark_binary(notes)
    if go_binary is None:
        raise SystemExit("reads under writes needs etcd's Go benchmark tool: " + "; ".join(notes))
    cells: list[Cell] = []
    with (
        tempfile.TemporaryDirectory(prefix="pyetcd-bench-rw-") as tmp,
        started(flavours, Path(tmp), 1, ceiling=False) as targets,
    ):
        for label, item in targets:
            if isinstance(item, str) or not isinstance(item, Target):
                raise SystemExit(f"{label} did not start: {item}")
        for label, item in targets:
            assert isinstance(item, Target)
            print(f"reads under writes on {label} ...", flush=True)
            cells.extend(
                measure(
                    item,
                    go_binary,
                    readers=args.clients,
                    writers=args.writers,
                    total=args.total,
                    max_s=args.max_seconds,
                )
            )
    print(render(cells))
    write_results(
        args.results_dir,
        "readwrite",
        {"readers": args.clients, "writers": args.writers, "cells": [asdict(c) for c in cells]},
    )
    return 1 if any(c.idle.failure or c.loaded.failure for c in cells) else 0


if __name__ == "__main__":
    raise SystemExit(main())
