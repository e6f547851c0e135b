"""How each server uses cores: ``python -m bench.cores`` (in ``make bench-scale``).

etcd spreads a request's work over goroutines on every core; pyetcd does a request's work on one
Python thread (the event loop) and hands only the WAL's and the backend's writes and fsyncs to
helper threads. This measures, for etcd and pyetcd side by side (one member each), with the
server pinned (``taskset -a``) to one core and then to both:

* ops/s and p99 of put and linearizable range at ``--clients`` clients (etcd's Go benchmark
  tool; pinned to the other core in the one-core runs, unpinned in the two-core runs);
* the server's CPU time per request (user + system, from ``/proc``), and for pyetcd the share of
  it spent on its busiest thread: the serial part that bounds it at any number of cores
  (Amdahl's law: at most 1 / that share of one core's throughput, however many cores).

Ratios come from one run on this machine. Writes ``bench/results/<timestamp>-cores.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.compare import (
    RESULTS_DIR,
    Measurement,
    Target,
    go_benchmark_binary,
    go_load_argv,
    parse_go_benchmark,
    started,
    write_results,
)

TICK = os.sysconf("SC_CLK_TCK")
LAYOUTS = {"1 core": ("0", "1"), "2 cores": ("0,1", "0,1")}  # (server, load generator)


@dataclass
class Cell:
    flavour: str
    layout: str
    workload: str
    clients: int
    result: Measurement
    cpu_us_per_op: float = 0.0
    busiest_thread_share: float = 0.0


def thread_times(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of ``pid``."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        times[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return times


def pin(pid: int, cpus: str) -> None:
    subprocess.run(["taskset", "-a", "-cp", cpus, str(pid)], check=True, capture_output=True)


def measure(
    target: Target, go: Path, layout: str, workload: str, *, clients: int, total: int
) -> Cell:
    member = target.members[0]
    assert member.proc is not None
    server_cpus, load_cpus = LAYOUTS[layout]
    pin(member.proc.pid, server_cpus)
    m = Measurement(target.label, workload, clients, members=1)
    before = thread_times(member.proc.pid)
    argv = go_load_argv(go, [member.host_port], workload, clients, total)
    proc = subprocess.run(
        ["taskset", "-c", load_cpus, *argv],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    after = thread_times(member.proc.pid)
    if proc.returncode != 0:
        m.failure = f"benchmark exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
        return Cell(target.label, layout, workload, clients, m)
    parse_go_benchmark(proc.stdout, m)
    used = {tid: t - before.get(tid, 0.0) for tid, t in after.items()}
    cpu = sum(used.values())
    return Cell(
        target.label,
        layout,
        workload,
        clients,
        m,
        cpu / total * 1e6,
        max(used.values()) / cpu if cpu else 0.0,
    )


def render(cells: Sequence[Cell]) -> str:
    lines = [
        "| workload | flavour | cores | ops/s | p99 ms | CPU us/op | busiest thread | "
        "2 cores / 1 core |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by = {(c.flavour, c.layout, c.workload): c for c in cells}
    for c in cells:
        one = by.get((c.flavour, "1 core", c.workload))
        scale = (
            f"{c.result.ops_per_s / one.result.ops_per_s:.2f}"
            if c.layout != "1 core" and one and one.result.ops_per_s
            else ""
        )
        lines.append(
            f"| {c.workload} x{c.clients} | {c.flavour} | {c.layout} "
            f"| {c.result.ops_per_s:,.0f} | {c.result.p99_ms:.2f} | {c.cpu_us_per_op:.0f} "
            f"| {c.busiest_thread_share:.0%} | {scale} |"
            + (f" FAILED: {c.result.failure}" if c.result.failure else "")
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cores", description=__doc__)
    parser.add_argument("--flavours", default="etcd,pyetcd")
    parser.add_argument("--workloads", default="put,range-l")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--total", type=int, default=20000)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the core-scaling benchmark needs at least two cores")
    notes: list[str] = []
    go = go_benchmark_binary(notes)
    if go is None:
        raise SystemExit(
            "the core-scaling benchmark needs etcd's Go benchmark tool: " + "; ".join(notes)
        )
    flavours = [f for f in args.flavours.split(",") if f]
    cells: list[Cell] = []
    with (
        tempfile.TemporaryDirectory(prefix="pyetcd-bench-cores-") as tmp,
        started(flavours, Path(tmp), 1, ceiling=False) as targets,
    ):
        for label, item in targets:
            if not isinstance(item, Target):
                raise SystemExit(f"{label} did not start: {item}")
        for workload in args.workloads.split(","):
            for layout in LAYOUTS:
                for _label, item in targets:
                    assert isinstance(item, Target)
                    cell = measure(
                        item, go, layout, workload, clients=args.clients, total=args.total
                    )
                    print(render([cell]).splitlines()[-1], flush=True)
                    cells.append(cell)
    print(render(cells))
    write_results(args.results_dir, "cores", {"cells": [asdict(c) for c in cells]})
    return 1 if any(c.result.failure for c in cells) else 0


if __name__ == "__main__":
    raise SystemExit(main())
