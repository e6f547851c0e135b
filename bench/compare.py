"""Side-by-side benchmark of upstream etcd and pyetcd on this machine: ``python -m bench.compare``.

Runs one section per cluster size in ``--members`` (env ``BENCH_MEMBERS``, default ``1,3``): a
single-member server per flavour, then a 3-member cluster per flavour (``--members 3`` alone is
``make bench-cluster``). The flavours are ``BENCH_FLAVOURS`` (default ``etcd,pyetcd``;
``etcd,etcd`` compares upstream with itself to show the run-to-run noise). Within a section both
flavours are up side by side on loopback and every workload runs on each in turn, so both see
the same machine state:

* ``etcdctl check perf --load=s`` (60 s each, against every member; PASS/FAIL, throughput,
  slowest, stddev);
* workloads at 1, 16 and 64 clients, bounded in requests and seconds, with etcd's own Go
  ``tools/benchmark`` (built once into a cache dir by this command) or, when that cannot be
  built, the Python fallback in ``bench/loadgen.py``. Single member: put, range (linearizable
  and serializable) and txn-put. Cluster: ``put@leader`` (every connection to the leader),
  ``put@all``, ``range-l@all`` and ``range-s@all`` (connections spread round-robin over the
  members, followers first: with one client that is one follower, whose puts are forwarded).

Beside the two flavours run two ceilings (``bench/ceiling.py``, unless ``--no-ceiling``): servers
that answer the same calls with empty responses and do nothing else, one on grpcio's asyncio
server (``ceiling``), one on pyetcd's own HTTP/2 stack (``ceiling-h2``). Their rows show how much
of pyetcd's cost is its own work and how much the serving stack's.

Prints a table per section (ops/s, p50, p99 per flavour, ratio second/first, and second as a
fraction of each ceiling) and writes JSON to
``bench/results/<timestamp>.json`` (single member) and ``<timestamp>-<n>members.json``. The load
generator shares the two cores with the servers: compare ratios from one run, never absolute
numbers across runs. Only loopback addresses.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.cluster import (
    ETCDCTL_BIN,
    REPO_ROOT,
    Cluster,
    Flavour,
    Member,
    MemberError,
    Timing,
    WaitTimeoutError,
    as_flavour,
    etcdctl_env,
    port_open,
    status,
    wait_for,
)
from tools.ports import free_port

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
BENCHMARK_MODULE = "go.etcd.io/etcd/v3"
BENCHMARK_VERSION = "v3.5.17"
BENCHMARK_PACKAGE = f"{BENCHMARK_MODULE}/tools/benchmark"
CACHE_DIR = Path(os.environ.get("PYETCD_BENCH_CACHE", str(Path.home() / ".cache" / "pyetcd-bench")))
# A workload is ``kind`` or ``kind@place``: where its connections go (default ``all``).
WORKLOADS = ("put", "range-l", "range-s", "txn-put")
PLACES = ("leader", "all")
CLUSTER_WORKLOADS = ("put@leader", "put@all", "range-l@all", "range-s@all")
CLIENTS = (1, 16, 64)
MEMBERS = (1, 3)
DEFAULT_TIMING = Timing()  # etcd's defaults (100 ms heartbeat, 1 s election): a fair comparison
START_TIMEOUT = 60.0
CEILING = "ceiling"  # grpcio's asyncio server doing nothing: pyetcd's serving stack today
CEILING_H2 = "ceiling-h2"  # HTTP/2 framed by hand doing nothing: what a leaner stack reaches
CEILINGS = {CEILING: "grpcio", CEILING_H2: "h2"}
SEED_KEY = "bench-key"
SEED_VALUE = "v" * 256


# ---------------------------------------------------------------------------------------------
# the Go load generator


def _go() -> str | None:
    return shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )


def _go_build(go: str, cmds: Sequence[Sequence[str]], cwd: Path, log: list[str]) -> bool:
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    proxy = subprocess.run([go, "env", "GOPROXY"], capture_output=True, text=True, check=False)
    if proxy.returncode == 0 and proxy.stdout.strip():
        env["GOPROXY"] = proxy.stdout.strip()
    for cmd in cmds:
        result = subprocess.run(
            [go, *cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if result.returncode != 0:
            log.append(f"`go {' '.join(cmd)}` failed: {result.stderr.strip()[-2000:]}")
            return False
    return True


def go_benchmark_binary(log: list[str]) -> Path | None:
    """etcd's tools/benchmark, built once into the cache dir; None if it cannot be built."""
    target = CACHE_DIR / BENCHMARK_VERSION / "benchmark"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = _go()
    if go is None:
        log.append("go toolchain not found: using the Python load generator")
        return None
    build_dir = CACHE_DIR / BENCHMARK_VERSION / "module"
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "go.mod").write_text("module pyetcdbench\n\ngo 1.22\n")
    (build_dir / "tools.go").write_text(
        f'//go:build tools\n\npackage tools\n\nimport _ "{BENCHMARK_PACKAGE}"\n'
    )
    print(f"building {BENCHMARK_PACKAGE}@{BENCHMARK_VERSION} into {target} ...", flush=True)
    cmds = [
        ["get", f"{BENCHMARK_MODULE}@{BENCHMARK_VERSION}"],
        ["build", "-o", str(target), BENCHMARK_PACKAGE],
    ]
    if not _go_build(go, cmds, build_dir, log):
        log.append("using the Python load generator")
        return None
    return target


def go_tool_binary(name: str, log: list[str]) -> Path | None:
    """Our own Go load generator ``bench/go/<name>``, built against the benchmark tool's module
    (so the same etcd client and its pinned dependencies), cached by the hash of its source."""
    if go_benchmark_binary(log) is None:
        return None
    go = _go()
    if go is None:
        log.append("go toolchain not found")
        return None
    source = (BENCH_DIR / "go" / name / "main.go").read_bytes()
    target = CACHE_DIR / BENCHMARK_VERSION / f"{name}-{hashlib.sha256(source).hexdigest()[:12]}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    build_dir = CACHE_DIR / BENCHMARK_VERSION / "module"
    (build_dir / name).mkdir(parents=True, exist_ok=True)
    (build_dir / name / "main.go").write_bytes(source)
    print(f"building bench/go/{name} into {target} ...", flush=True)
    if not _go_build(go, [["build", "-o", str(target), f"./{name}"]], build_dir, log):
        return None
    return target


def write_results(results_dir: Path, kind: str, payload: dict[str, Any]) -> Path:
    """``<results_dir>/<timestamp>-<kind>.json`` with the machine's name added; says where."""
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{kind}.json"
    out.write_text(json.dumps({"machine": platform.platform(), **payload}, indent=2, default=str))
    print(f"results written to {out}")
    return out


def rss_mb(member: Member) -> float:
    """The member process's resident set, MB (NaN when it is not running)."""
    if member.proc is None:
        return math.nan
    for line in Path(f"/proc/{member.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class Measurement:
    flavour: str
    workload: str
    clients: int
    ops_per_s: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    errors: int = 0
    requests: int = 0
    failure: str | None = None
    members: int = 1
    note: str | None = None  # e.g. the leader changed during the run


@dataclass
class CheckPerf:
    flavour: str
    verdict: str = "FAIL"
    lines: list[str] = field(default_factory=list)
    throughput: float | None = None
    slowest_s: float | None = None
    stddev_s: float | None = None
    exit_code: int | None = None


_FLOAT = r"([0-9.eE+-]+)"


def parse_go_benchmark(text: str, m: Measurement) -> None:
    """Fill ``m`` from the summary printed by etcd's tools/benchmark (``--precise``)."""
    rps = re.search(rf"Requests/sec:\s+{_FLOAT}", text)
    p50 = re.search(rf"50% in {_FLOAT} secs", text)
    p99 = re.search(rf"99% in {_FLOAT} secs", text)
    if rps is None or p50 is None or p99 is None:
        m.failure = "could not parse benchmark output: " + text.strip()[-500:]
        return
    m.ops_per_s = float(rps.group(1))
    m.p50_ms = float(p50.group(1)) * 1000
    m.p99_ms = float(p99.group(1)) * 1000
    errors = re.search(r"Error distribution:\n((?:\s+\[\d+\].*\n?)+)", text)
    if errors:
        m.errors = sum(int(n) for n in re.findall(r"\[(\d+)\]", errors.group(1)))


def parse_check_perf(text: str, result: CheckPerf) -> None:
    # the progress bar rewrites its line with \r: the verdicts may follow it on the same line
    lines = [
        m.group(0).strip()
        for chunk in re.split(r"[\r\n]+", text)
        if (m := re.search(r"(PASS|FAIL)(: .*)?$", chunk.strip()))
    ]
    result.lines = lines
    result.verdict = lines[-1] if lines and lines[-1] in {"PASS", "FAIL"} else "FAIL"
    for line in lines:
        if m := re.search(rf"Throughput is {_FLOAT} writes/s", line):
            result.throughput = float(m.group(1))
        if m := re.search(rf"Slowest request took {_FLOAT}s", line):
            result.slowest_s = float(m.group(1))
        if m := re.search(rf"Stddev is {_FLOAT}s", line):
            result.stddev_s = float(m.group(1))


# ---------------------------------------------------------------------------------------------
# the servers


@dataclass(frozen=True)
class Leadership:
    member: Member
    member_id: int
    term: int


class Target:
    """One flavour's servers in a section: a single member, or one cluster's members."""

    def __init__(self, label: str, members: Sequence[Member], cluster: Cluster | None) -> None:
        self.label = label
        self.members = list(members)
        self.cluster = cluster

    def __repr__(self) -> str:
        return f"Target({self.label}, {len(self.members)} members)"

    @property
    def running(self) -> bool:
        return all(m.running for m in self.members)

    def leadership(self) -> Leadership | None:
        """The leader that every member names, with its term; None while they disagree."""
        statuses = [status(m) for m in self.members]
        named = {s.leader for s in statuses if s is not None}
        if None in statuses or len(named) != 1 or 0 in named:
            return None
        for member, st in zip(self.members, statuses, strict=True):
            if st is not None and st.header.member_id in named:
                return Leadership(member, st.header.member_id, st.raftTerm)
        return None

    def leader(self, timeout: float = 30.0) -> Leadership:
        return wait_for(f"{self.label} to agree on a leader", self.leadership, timeout)

    def endpoints(self, place: str) -> list[str]:
        """``leader``: the leader's endpoint; ``all``: every member's, followers first."""
        if len(self.members) == 1:
            return [self.members[0].host_port]
        lead = self.leader().member
        if place == "leader":
            return [lead.host_port]
        return [m.host_port for m in self.members if m is not lead] + [lead.host_port]

    def start(self) -> None:
        """Start every member and wait until each serves; a cluster also agrees on a leader."""
        if self.cluster is None:
            self.members[0].start_and_wait(START_TIMEOUT)
        else:
            self.cluster.start(START_TIMEOUT)
            self.leader()

    def seed(self) -> None:
        """Write the key the range workloads read; wait until every member serves it."""
        first = self.members[0]
        put = first.etcdctl("put", SEED_KEY, SEED_VALUE)
        if put.returncode != 0:
            raise MemberError(f"{first} cannot seed {SEED_KEY}: {put.stderr}")

        def serves(member: Member) -> bool | None:
            got = member.etcdctl("get", SEED_KEY, "--consistency=s", "--print-value-only")
            return True if got.stdout == SEED_VALUE + "\n" else None

        for member in self.members:
            wait_for(f"{member} to serve {SEED_KEY}", functools.partial(serves, member), 30.0)

    def stop(self) -> None:
        if self.cluster is None:
            self.members[0].stop()
        else:
            self.cluster.stop()


# A flavour may name a variant: ``pyetcd/direct`` moves the HTTP endpoints off the client port
# (--listen-client-http-urls), so gRPC binds it without the multiplexer's hop; ``pyetcd/grpcio``
# serves gRPC with grpcio's server instead of pyetcd's own HTTP/2 stack (--grpc-stack);
# ``pyetcd/frontends`` serves clients from front-end processes, one per core beyond the first
# (--experimental-grpc-frontends).
LAYOUTS = ("direct", "grpcio", "frontends")


def parse_flavour(spec: str) -> tuple[Flavour, str | None]:
    """``etcd``, ``pyetcd`` or ``<flavour>/<layout>``."""
    name, _, layout = spec.partition("/")
    if layout and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} in {spec!r}; expected one of {LAYOUTS}")
    return as_flavour(name), layout or None


def _apply_layout(member: Member, layout: str | None) -> None:
    if layout == "direct":
        http = f"--listen-client-http-urls=http://127.0.0.1:{free_port()}"
        member.extra_flags = (*member.extra_flags, http)
    elif layout == "grpcio":
        member.extra_flags = (*member.extra_flags, "--grpc-stack=grpcio")
    elif layout == "frontends":
        count = max(1, (os.cpu_count() or 2) - 1)
        member.extra_flags = (*member.extra_flags, f"--experimental-grpc-frontends={count}")


def new_target(spec: str, label: str, workdir: Path, size: int, index: int) -> Target:
    flavour, layout = parse_flavour(spec)
    if size == 1:
        target = Target(label, [Member(flavour, workdir, timing=DEFAULT_TIMING)], None)
    else:
        token = f"bench-{index}-{flavour}"
        cluster = Cluster(flavour, workdir, size, timing=DEFAULT_TIMING, cluster_token=token)
        target = Target(label, cluster.members, cluster)
    for member in target.members:
        _apply_layout(member, layout)
    return target


class CeilingTarget:
    """A reference row: ``bench/ceiling.py`` with one stack, in a process of its own."""

    def __init__(self, workdir: Path, label: str = CEILING) -> None:
        self.label = label
        self.stack = CEILINGS[label]
        self.members: list[Member] = []  # none: nothing of etcd's runs here
        self.port = free_port()
        self.log_path = workdir / f"{label}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def endpoints(self, place: str) -> list[str]:
        return [f"127.0.0.1:{self.port}"]

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "bench.ceiling"),
                    *("--listen", f"127.0.0.1:{self.port}", "--stack", self.stack),
                ],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def serving() -> bool | None:
            if not self.running:
                raise MemberError(f"the {self.label} server exited; see {self.log_path}")
            return True if port_open("127.0.0.1", self.port) else None

        try:
            wait_for(f"the {self.label} server to listen", serving, START_TIMEOUT)
        except WaitTimeoutError as exc:
            raise MemberError(f"{exc}; see {self.log_path}") from None

    def seed(self) -> None:
        """Nothing to seed: every Range gets the same empty answer."""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


AnyTarget = Target | CeilingTarget


@contextlib.contextmanager
def started(
    flavours: Sequence[str], workdir: Path, size: int = 1, ceiling: bool = True
) -> Iterator[list[tuple[str, AnyTarget | str]]]:
    """Start one member (``size`` 1) or one cluster per flavour (``parse_flavour``), then the
    ceiling; one that cannot start is kept as its error text."""
    out: list[tuple[str, AnyTarget | str]] = []
    try:
        targets: list[tuple[str, AnyTarget]] = []
        for i, flavour in enumerate(flavours):
            label = flavour if flavours.index(flavour) == i else f"{flavour}#{i + 1}"
            path = workdir / f"{size}m-{i}-{flavour.replace('/', '-')}"
            targets.append((label, new_target(flavour, label, path, size, i)))
        if ceiling:
            for label in CEILINGS:
                targets.append((label, CeilingTarget(workdir / f"{size}m-ceiling", label)))
        for label, target in targets:
            try:
                target.start()
                target.seed()
                out.append((label, target))
            except MemberError as exc:
                target.stop()
                out.append((label, f"{exc}"))
        yield out
    finally:
        for _label, item in out:
            if not isinstance(item, str):
                item.stop()


# ---------------------------------------------------------------------------------------------
# running


def split_workload(workload: str) -> tuple[str, str]:
    kind, _, place = workload.partition("@")
    return kind, place or "all"


def run_check_perf(target: Target, timeout: float) -> CheckPerf:
    result = CheckPerf(target.label)
    endpoints = ",".join(m.host_port for m in target.members)
    proc = subprocess.run(
        [str(ETCDCTL_BIN), f"--endpoints={endpoints}", "check", "perf", "--load=s"],
        capture_output=True,
        text=True,
        env=etcdctl_env(),
        timeout=timeout,
        check=False,
    )
    result.exit_code = proc.returncode
    parse_check_perf(proc.stdout + "\n" + proc.stderr, result)
    return result


def run_workload(
    target: AnyTarget,
    *,
    workload: str,
    clients: int,
    total: int,
    max_seconds: float,
    go_binary: Path | None,
) -> Measurement:
    """Run one workload cell; on a cluster, note it when the leadership changed meanwhile."""
    m = Measurement(target.label, workload, clients, members=len(target.members))
    if not target.running:
        m.failure = "server is not running"
        return m
    kind, place = split_workload(workload)
    try:
        before = target.leader() if isinstance(target, Target) and len(target.members) > 1 else None
        endpoints = target.endpoints(place)
    except MemberError as exc:
        m.failure = str(exc)
        return m
    run_load_cell(
        m, endpoints, kind=kind, total=total, max_seconds=max_seconds, go_binary=go_binary
    )
    if before is not None and isinstance(target, Target):
        after = target.leadership()
        if after is None or (after.member_id, after.term) != (before.member_id, before.term):
            now = "none" if after is None else f"{after.member.name} term {after.term}"
            m.note = f"leader changed during the run: {before.member.name} term {before.term}"
            m.note += f" -> {now}"
    return m


def go_load_argv(
    go_binary: Path, endpoints: Sequence[str], kind: str, clients: int, total: int
) -> list[str]:
    """etcd's Go benchmark tool running workload ``kind`` (put, txn-put, range-l, range-s)."""
    # The Go tool dials connection i to endpoints[i % len(endpoints)]; client i uses
    # connection i % conns.
    common = [
        str(go_binary),
        f"--endpoints={','.join(endpoints)}",
        f"--conns={min(clients, 16)}",
        f"--clients={clients}",
        "--precise",
    ]
    kv = ["--key-size=8", "--val-size=256", "--key-space-size=1000", f"--total={total}"]
    args = {
        "put": ["put", *kv],
        "txn-put": ["txn-put", *kv],
        "range-l": ["range", SEED_KEY, "--consistency=l", f"--total={total}"],
        "range-s": ["range", SEED_KEY, "--consistency=s", f"--total={total}"],
    }[kind]
    return [*common, *args]


def run_load_cell(
    m: Measurement,
    endpoints: list[str],
    *,
    kind: str,
    total: int,
    max_seconds: float,
    go_binary: Path | None,
) -> None:
    """Fill ``m`` with one bounded run of workload ``kind`` over ``endpoints``."""
    if go_binary is None:
        from bench.loadgen import run_load

        try:
            r = run_load(endpoints, kind, m.clients, total, max_seconds)
        except Exception as exc:
            m.failure = repr(exc)
            return
        m.ops_per_s, m.p50_ms, m.p99_ms = r.ops_per_s, r.p50_ms, r.p99_ms
        m.errors, m.requests = r.errors, r.requests
        return
    try:
        proc = subprocess.run(
            go_load_argv(go_binary, endpoints, kind, m.clients, total),
            capture_output=True,
            text=True,
            timeout=max_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        m.failure = f"did not finish {total} requests within {max_seconds:.0f}s"
        return
    if proc.returncode != 0:
        m.failure = f"benchmark exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
        return
    parse_go_benchmark(proc.stdout, m)
    m.requests = total


# ---------------------------------------------------------------------------------------------
# report


def _fmt(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def _pair(
    by_key: dict[tuple[str, str, int], Measurement],
    first: str,
    second: str,
    workload: str,
    clients: int,
) -> tuple[Measurement, Measurement] | None:
    """(second, first) of one cell when both measured it."""
    a, b = by_key.get((second, workload, clients)), by_key.get((first, workload, clients))
    if a is None or b is None or a.failure or b.failure:
        return None
    return a, b


def _compared(labels: Sequence[str]) -> tuple[str, str]:
    """The two flavours a table compares (the ceiling is a reference row, not one of them)."""
    flavours = [label for label in labels if label not in CEILINGS] or list(labels)
    return flavours[0], flavours[-1]


def render_table(
    labels: Sequence[str],
    results: Sequence[Measurement],
    workloads: Sequence[str] = WORKLOADS,
    clients: Sequence[int] = CLIENTS,
) -> str:
    first, second = _compared(labels)
    references = [label for label in CEILINGS if label in labels]
    width = max(9, *(len(w) for w in workloads))
    head = f"{'workload':<{width}} {'clients':>7}"
    for label in labels:
        head += f" | {label + ' ops/s':>14} {'p50 ms':>8} {'p99 ms':>8}"
    head += f" | {'ops ratio':>9} {'p99 ratio':>9}"
    for label in references:
        head += f" | {'of ' + label:>13}"
    lines = [head, "-" * len(head)]
    by_key = {(m.flavour, m.workload, m.clients): m for m in results}
    for workload in workloads:
        for n in clients:
            row = f"{workload:<{width}} {n:>7}"
            cells = [by_key.get((label, workload, n)) for label in labels]
            if all(c is None for c in cells):
                continue
            for cell in cells:
                if cell is None or cell.failure:
                    row += f" | {'FAILED':>14} {'-':>8} {'-':>8}"
                else:
                    errs = f" ({cell.errors} err)" if cell.errors else ""
                    row += f" | {_fmt(cell.ops_per_s) + errs:>14} {_fmt(cell.p50_ms, 2):>8} "
                    row += f"{_fmt(cell.p99_ms, 2):>8}"
            pair = _pair(by_key, first, second, workload, n)
            ops = _ratio(pair[0].ops_per_s, pair[1].ops_per_s) if pair else "-"
            p99 = _ratio(pair[0].p99_ms, pair[1].p99_ms) if pair else "-"
            row += f" | {ops:>9} {p99:>9}"
            for label in references:
                ref = _pair(by_key, label, second, workload, n)
                row += f" | {_ratio(ref[0].ops_per_s, ref[1].ops_per_s) if ref else '-':>13}"
            lines.append(row)
    lines.append(
        f"(ratios are {second} / {first}; ops ratio > 1 and p99 ratio < 1 favour {second}"
        + (f"; of <ceiling>: {second}'s ops / that reference's)" if references else ")")
    )
    lines.extend(
        f"note: {m.flavour} {m.workload} x{m.clients}: {m.note}" for m in results if m.note
    )
    return "\n".join(lines)


def render_markdown(
    labels: Sequence[str],
    results: Sequence[Measurement],
    workloads: Sequence[str] = WORKLOADS,
    clients: Sequence[int] = CLIENTS,
) -> str:
    """The README's table: ops/s per flavour and their ratio."""
    first, second = _compared(labels)
    lines = [
        f"| workload | clients | {first} ops/s | {second} ops/s | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    by_key = {(m.flavour, m.workload, m.clients): m for m in results}
    for workload in workloads:
        for n in clients:
            a, b = by_key.get((first, workload, n)), by_key.get((second, workload, n))
            if a is None and b is None:
                continue
            cells = ["FAILED" if c is None or c.failure else _fmt(c.ops_per_s) for c in (a, b)]
            pair = _pair(by_key, first, second, workload, n)
            ratio = _ratio(pair[0].ops_per_s, pair[1].ops_per_s) if pair else "-"
            lines.append(f"| {workload} | {n} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main


@dataclass
class Section:
    """One side-by-side run at one cluster size."""

    members: int
    workloads: list[str]
    clients: list[int]
    total: int
    generator: str
    labels: list[str] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    checks: list[CheckPerf] = field(default_factory=list)
    startup_failures: dict[str, str] = field(default_factory=dict)
    began: float = field(default_factory=time.time)

    @property
    def title(self) -> str:
        return "single member" if self.members == 1 else f"{self.members}-member clusters"

    @property
    def failures(self) -> list[Measurement]:
        return [m for m in self.measurements if m.failure]

    def report(self, markdown: bool = False) -> str:
        lines = [
            f"== {self.title}: load generator {self.generator}; {self.total} requests per run; "
            f"{os.cpu_count()} CPUs"
        ]
        for check in self.checks:
            lines.append(
                f"check perf [{check.flavour}]: {check.verdict}  " + "; ".join(check.lines[:-1])
            )
        lines.append(render_table(self.labels, self.measurements, self.workloads, self.clients))
        if markdown:
            lines.append("")
            lines.append(
                render_markdown(self.labels, self.measurements, self.workloads, self.clients)
            )
        for label, reason in self.startup_failures.items():
            lines.append(f"FAILED: {label} did not start: {reason.splitlines()[0]}")
        for m in self.failures:
            if m.flavour not in self.startup_failures:
                lines.append(
                    f"FAILED {m.flavour} {m.workload} x{m.clients}: {(m.failure or '')[:300]}"
                )
        return "\n".join(lines)

    def save(self, results_dir: Path, notes: Sequence[str]) -> Path:
        results_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(self.began))
        suffix = "" if self.members == 1 else f"-{self.members}members"
        out = results_dir / f"{stamp}{suffix}.json"
        out.write_text(
            json.dumps(
                {
                    "started": stamp,
                    "members": self.members,
                    "flavours": self.labels,
                    "generator": self.generator,
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                    "total_per_run": self.total,
                    "workloads": self.workloads,
                    "startup_failures": self.startup_failures,
                    "check_perf": [asdict(c) for c in self.checks],
                    "results": [asdict(m) for m in self.measurements],
                    "notes": list(notes),
                },
                indent=2,
                default=str,
            )
        )
        return out


def run_section(
    section: Section,
    flavours: Sequence[str],
    *,
    check_perf: bool,
    max_seconds: float,
    go_binary: Path | None,
    ceiling: bool = True,
) -> None:
    print(f"\n== {section.title} ==", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="pyetcd-bench-") as tmp,
        started(flavours, Path(tmp), section.members, ceiling) as targets,
    ):
        section.labels = [label for label, _ in targets]
        for label, item in targets:
            if isinstance(item, str):
                section.startup_failures[label] = item
                print(
                    f"\n!! {label} did not start; its workloads are reported as FAILED:\n{item}\n"
                )
        live = [t for _, t in targets if isinstance(t, Target)]  # check perf: etcd's only
        if check_perf:
            for target in live:
                print(f"check perf --load=s on {target.label} (60 s) ...", flush=True)
                section.checks.append(run_check_perf(target, timeout=180))
        for workload in section.workloads:
            for n in section.clients:
                for label, item in targets:
                    if isinstance(item, str):
                        section.measurements.append(
                            Measurement(
                                label,
                                workload,
                                n,
                                failure="server did not start",
                                members=section.members,
                            )
                        )
                        continue
                    print(f"{workload} x{n} on {label} ...", flush=True)
                    section.measurements.append(
                        run_workload(
                            item,
                            workload=workload,
                            clients=n,
                            total=section.total,
                            max_seconds=max_seconds,
                            go_binary=go_binary,
                        )
                    )


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--flavours",
        default=os.environ.get("BENCH_FLAVOURS", "etcd,pyetcd"),
        help="two comma-separated flavours, each etcd or pyetcd, optionally /direct (HTTP off "
        "the client port) or /grpcio (grpcio's server); env BENCH_FLAVOURS; default etcd,pyetcd",
    )
    parser.add_argument(
        "--members",
        default=os.environ.get("BENCH_MEMBERS", ",".join(map(str, MEMBERS))),
        help="cluster sizes, one section each (env BENCH_MEMBERS; default 1,3)",
    )
    parser.add_argument("--total", type=int, default=2000, help="requests per workload run")
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="time bound per workload run"
    )
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)))
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="single-member workloads")
    parser.add_argument(
        "--cluster-workloads",
        default=",".join(CLUSTER_WORKLOADS),
        help="cluster workloads: kind@leader or kind@all (kinds: " + ", ".join(WORKLOADS) + ")",
    )
    parser.add_argument("--skip-check-perf", action="store_true", help="skip the 60 s check perf")
    parser.add_argument(
        "--no-ceiling", action="store_true", help="leave out the ceilings' reference rows"
    )
    parser.add_argument(
        "--python-loadgen", action="store_true", help="use bench/loadgen.py instead of Go"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="also print each table as README markdown"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def check_workloads(workloads: Sequence[str]) -> None:
    for workload in workloads:
        kind, place = split_workload(workload)
        if kind not in WORKLOADS or place not in PLACES:
            raise SystemExit(
                f"unknown workload {workload!r}: expected kind[@place], kind one of "
                f"{', '.join(WORKLOADS)}, place one of {', '.join(PLACES)}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    flavours = _list(args.flavours)
    for spec in flavours:
        try:
            parse_flavour(spec)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    if len(flavours) != 2:
        raise SystemExit(f"need two flavours, got {args.flavours!r}")
    sizes = [int(n) for n in _list(args.members)]
    if not sizes or any(n < 1 for n in sizes):
        raise SystemExit(f"--members takes cluster sizes >= 1, got {args.members!r}")
    clients = [int(c) for c in _list(args.clients)]
    single, cluster = _list(args.workloads), _list(args.cluster_workloads)
    check_workloads(single)
    check_workloads(cluster)
    notes: list[str] = []
    go_binary = None if args.python_loadgen else go_benchmark_binary(notes)
    generator = f"{BENCHMARK_PACKAGE}@{BENCHMARK_VERSION}" if go_binary else "bench/loadgen.py"
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    sections: list[Section] = []
    written: list[Path] = []
    for size in sizes:
        section = Section(
            members=size,
            workloads=single if size == 1 else cluster,
            clients=clients,
            total=args.total,
            generator=generator,
        )
        sections.append(section)
        run_section(
            section,
            flavours,
            check_perf=not args.skip_check_perf,
            max_seconds=args.max_seconds,
            go_binary=go_binary,
            ceiling=not args.no_ceiling,
        )
        written.append(section.save(args.results_dir, notes))

    for section in sections:
        print()
        print(section.report(markdown=args.markdown))
    print()
    for path in written:
        print(f"results written to {path}")
    failed = any(s.startup_failures or s.failures for s in sections)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
