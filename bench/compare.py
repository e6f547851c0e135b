"""Side-by-side benchmark of upstream etcd and pyetcd on this machine: ``python -m bench.compare``.

Starts one single-member server per flavour (``BENCH_FLAVOURS``, default ``etcd,pyetcd``;
``etcd,etcd`` compares upstream with itself to show the run-to-run noise), keeps both up and
runs every workload on each in turn, so both see the same machine state:

* ``etcdctl check perf --load=s`` (60 s each; PASS/FAIL, throughput, slowest, stddev);
* put, range (linearizable and serializable) and txn-put at 1, 16 and 64 clients, bounded in
  requests and seconds, with etcd's own Go ``tools/benchmark`` (built once into a cache dir by
  this command) or, when that cannot be built, the Python fallback in ``bench/loadgen.py``.

Prints a table (ops/s, p50, p99 per flavour, ratio second/first) and writes JSON to
``bench/results/<timestamp>.json``. The load generator shares the two cores with the servers:
compare ratios from one run, never absolute numbers across runs. Only loopback addresses.
"""

from __future__ import annotations

import argparse
import contextlib
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

from tests.integration.cluster import (
    ETCDCTL_BIN,
    Flavour,
    Member,
    MemberError,
    Timing,
    as_flavour,
    etcdctl_env,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
BENCHMARK_MODULE = "go.etcd.io/etcd/v3"
BENCHMARK_VERSION = "v3.5.17"
BENCHMARK_PACKAGE = f"{BENCHMARK_MODULE}/tools/benchmark"
CACHE_DIR = Path(os.environ.get("PYETCD_BENCH_CACHE", str(Path.home() / ".cache" / "pyetcd-bench")))
WORKLOADS = ("put", "range-l", "range-s", "txn-put")
CLIENTS = (1, 16, 64)
DEFAULT_TIMING = Timing()  # etcd's defaults (100 ms heartbeat, 1 s election): a fair comparison


# ---------------------------------------------------------------------------------------------
# the Go load generator


def go_benchmark_binary(log: list[str]) -> Path | None:
    """etcd's tools/benchmark, built once into the cache dir; None if it cannot be built."""
    target = CACHE_DIR / BENCHMARK_VERSION / "benchmark"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        log.append("go toolchain not found: using the Python load generator")
        return None
    build_dir = CACHE_DIR / BENCHMARK_VERSION / "module"
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "go.mod").write_text("module pyetcdbench\n\ngo 1.22\n")
    (build_dir / "tools.go").write_text(
        f'//go:build tools\n\npackage tools\n\nimport _ "{BENCHMARK_PACKAGE}"\n'
    )
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    proxy = subprocess.run([go, "env", "GOPROXY"], capture_output=True, text=True, check=False)
    if proxy.returncode == 0 and proxy.stdout.strip():
        env["GOPROXY"] = proxy.stdout.strip()
    print(f"building {BENCHMARK_PACKAGE}@{BENCHMARK_VERSION} into {target} ...", flush=True)
    for cmd in (
        [go, "get", f"{BENCHMARK_MODULE}@{BENCHMARK_VERSION}"],
        [go, "build", "-o", str(target), BENCHMARK_PACKAGE],
    ):
        result = subprocess.run(
            cmd, cwd=build_dir, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if result.returncode != 0:
            log.append(f"`{' '.join(cmd)}` failed: {result.stderr.strip()[-2000:]}")
            log.append("using the Python load generator")
            return None
    return target


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
# running


def run_check_perf(member: Member, label: str, timeout: float) -> CheckPerf:
    result = CheckPerf(label)
    proc = subprocess.run(
        [str(ETCDCTL_BIN), f"--endpoints={member.host_port}", "check", "perf", "--load=s"],
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
    member: Member,
    label: str,
    *,
    workload: str,
    clients: int,
    total: int,
    max_seconds: float,
    go_binary: Path | None,
) -> Measurement:
    m = Measurement(label, workload, clients)
    if not member.running:
        m.failure = "server is not running"
        return m
    if go_binary is None:
        from bench.loadgen import run_load

        try:
            r = run_load(member.host_port, workload, clients, total, max_seconds)
        except Exception as exc:
            m.failure = repr(exc)
            return m
        m.ops_per_s, m.p50_ms, m.p99_ms = r.ops_per_s, r.p50_ms, r.p99_ms
        m.errors, m.requests = r.errors, r.requests
        return m
    conns = min(clients, 16)
    common = [
        str(go_binary),
        f"--endpoints={member.host_port}",
        f"--conns={conns}",
        f"--clients={clients}",
        "--precise",
    ]
    kv = ["--key-size=8", "--val-size=256", "--key-space-size=1000", f"--total={total}"]
    args = {
        "put": ["put", *kv],
        "txn-put": ["txn-put", *kv],
        "range-l": ["range", "bench-key", "--consistency=l", f"--total={total}"],
        "range-s": ["range", "bench-key", "--consistency=s", f"--total={total}"],
    }[workload]
    try:
        proc = subprocess.run(
            [*common, *args], capture_output=True, text=True, timeout=max_seconds, check=False
        )
    except subprocess.TimeoutExpired:
        m.failure = f"did not finish {total} requests within {max_seconds:.0f}s"
        return m
    if proc.returncode != 0:
        m.failure = f"benchmark exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
        return m
    parse_go_benchmark(proc.stdout, m)
    m.requests = total
    return m


@contextlib.contextmanager
def started(flavours: Sequence[Flavour], workdir: Path) -> Iterator[list[tuple[str, Member | str]]]:
    """Start one member per flavour; a member that cannot start is kept as its error text."""
    out: list[tuple[str, Member | str]] = []
    try:
        for i, flavour in enumerate(flavours):
            label = flavour if flavours.index(flavour) == i else f"{flavour}#{i + 1}"
            member = Member(flavour, workdir / f"{i}-{flavour}", timing=DEFAULT_TIMING)
            try:
                member.start_and_wait(60)
                seed = member.etcdctl("put", "bench-key", "v" * 256)
                if seed.returncode != 0:
                    raise MemberError(f"{member} cannot seed bench-key: {seed.stderr}")
                out.append((label, member))
            except MemberError as exc:
                member.stop()
                out.append((label, f"{exc}"))
        yield out
    finally:
        for _label, item in out:
            if isinstance(item, Member):
                item.stop()


# ---------------------------------------------------------------------------------------------
# report


def _fmt(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def render_table(labels: Sequence[str], results: Sequence[Measurement]) -> str:
    first, second = labels[0], labels[-1]
    head = f"{'workload':<9} {'clients':>7}"
    for label in labels:
        head += f" | {label + ' ops/s':>14} {'p50 ms':>8} {'p99 ms':>8}"
    head += f" | {'ops ratio':>9} {'p99 ratio':>9}"
    lines = [head, "-" * len(head)]
    by_key = {(m.flavour, m.workload, m.clients): m for m in results}
    for workload in WORKLOADS:
        for clients in CLIENTS:
            row = f"{workload:<9} {clients:>7}"
            cells = [by_key.get((label, workload, clients)) for label in labels]
            if all(c is None for c in cells):
                continue
            for cell in cells:
                if cell is None or cell.failure:
                    row += f" | {'FAILED':>14} {'-':>8} {'-':>8}"
                else:
                    errs = f" ({cell.errors} err)" if cell.errors else ""
                    row += f" | {_fmt(cell.ops_per_s) + errs:>14} {_fmt(cell.p50_ms, 2):>8} "
                    row += f"{_fmt(cell.p99_ms, 2):>8}"
            a, b = by_key.get((second, workload, clients)), by_key.get((first, workload, clients))
            ops = (
                _ratio(a.ops_per_s, b.ops_per_s)
                if a and b and not (a.failure or b.failure)
                else "-"
            )
            p99 = _ratio(a.p99_ms, b.p99_ms) if a and b and not (a.failure or b.failure) else "-"
            row += f" | {ops:>9} {p99:>9}"
            lines.append(row)
    lines.append(
        f"(ratios are {second} / {first}; ops ratio > 1 and p99 ratio < 1 favour {second})"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument(
        "--flavours",
        default=os.environ.get("BENCH_FLAVOURS", "etcd,pyetcd"),
        help="two comma-separated flavours (env BENCH_FLAVOURS; default etcd,pyetcd)",
    )
    parser.add_argument("--total", type=int, default=2000, help="requests per workload run")
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="time bound per workload run"
    )
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--skip-check-perf", action="store_true", help="skip the 60 s check perf")
    parser.add_argument(
        "--python-loadgen", action="store_true", help="use bench/loadgen.py instead of Go"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    flavours = [as_flavour(f.strip()) for f in args.flavours.split(",") if f.strip()]
    if len(flavours) != 2:
        raise SystemExit(f"need two flavours, got {args.flavours!r}")
    clients = [int(c) for c in args.clients.split(",")]
    workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads: {sorted(unknown)}")
    notes: list[str] = []
    go_binary = None if args.python_loadgen else go_benchmark_binary(notes)
    generator = f"{BENCHMARK_PACKAGE}@{BENCHMARK_VERSION}" if go_binary else "bench/loadgen.py"
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    measurements: list[Measurement] = []
    checks: list[CheckPerf] = []
    startup_failures: dict[str, str] = {}
    began = time.time()
    with (
        tempfile.TemporaryDirectory(prefix="pyetcd-bench-") as tmp,
        started(flavours, Path(tmp)) as members,
    ):
        labels = [label for label, _ in members]
        for label, item in members:
            if isinstance(item, str):
                startup_failures[label] = item
                print(
                    f"\n!! {label} did not start; its workloads are reported as FAILED:\n{item}\n"
                )
        live = [(label, m) for label, m in members if isinstance(m, Member)]
        if not args.skip_check_perf:
            for label, member in live:
                print(f"check perf --load=s on {label} (60 s) ...", flush=True)
                checks.append(run_check_perf(member, label, timeout=180))
        for workload in workloads:
            for n in clients:
                for label, item in members:
                    if isinstance(item, str):
                        measurements.append(
                            Measurement(label, workload, n, failure="server did not start")
                        )
                        continue
                    print(f"{workload} x{n} on {label} ...", flush=True)
                    measurements.append(
                        run_workload(
                            item,
                            label,
                            workload=workload,
                            clients=n,
                            total=args.total,
                            max_seconds=args.max_seconds,
                            go_binary=go_binary,
                        )
                    )

    print()
    print(f"load generator: {generator}; {args.total} requests per run; {os.cpu_count()} CPUs")
    for check in checks:
        print(f"check perf [{check.flavour}]: {check.verdict}  " + "; ".join(check.lines[:-1]))
    print(render_table(labels, measurements))
    failures = [m for m in measurements if m.failure]
    for label, reason in startup_failures.items():
        print(f"FAILED: {label} did not start: {reason.splitlines()[0]}")
    for m in failures:
        if m.flavour in startup_failures:
            continue
        print(f"FAILED {m.flavour} {m.workload} x{m.clients}: {(m.failure or '')[:300]}")

    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(began))
    out = args.results_dir / f"{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "started": stamp,
                "flavours": labels,
                "generator": generator,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "total_per_run": args.total,
                "startup_failures": startup_failures,
                "check_perf": [asdict(c) for c in checks],
                "results": [asdict(m) for m in measurements],
                "notes": notes,
            },
            indent=2,
            default=str,
        )
    )
    print(f"results written to {out}")
    return 1 if startup_failures or failures else 0


if __name__ == "__main__":
    sys.exit(main())
