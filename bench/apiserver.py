"""The client that matters: ``python -m bench.apiserver`` (``make bench-apiserver``).

kube-apiserver on pyetcd against kube-apiserver on etcd 3.4: the e2e control plane
(``e2e.controlplane``: API server, controller-manager and scheduler) is started twice, side by
side, once on each storage. ``bench/go/kubeload`` (one HTTP/2 connection, as client-go) then
runs the same workloads through each API server in alternating rounds, etcd, pyetcd, pyetcd,
etcd, since the noise between runs on this machine is larger than many differences:

* ConfigMaps: create (16 clients, 4 watches of the collection open: the time from a create's
  start to its ADDED event too), merge-patch (the API server's guaranteed update: a txn with a
  compare on the mod revision), get (a quorum read), list of the whole collection;
* Pods, which stay Pending for want of nodes (so the scheduler writes their status too):
  create with 2 watches, patch, list.

An unmeasured round of ``--warmup`` objects on each control plane comes first (in the first
rounds of a run both storages measured half their later rates). Each round works in a namespace
of its own. Per workload and storage: ops/s over both rounds,
p50/p99 (the mean of the rounds'), and pyetcd / etcd. The API server's own work dominates, so
parity (>= 1.0x, p99 <= 1.2x) is the target. Writes ``bench/results/<timestamp>-apiserver.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.compare import RESULTS_DIR, go_tool_binary, write_results
from e2e.controlplane import ControlPlane, Storage
from tests.integration.cluster import wait_for

ORDER: tuple[Storage, ...] = ("etcd", "pyetcd", "pyetcd", "etcd")


@dataclass(frozen=True)
class Workload:
    resource: str
    op: str
    total: int
    clients: int = 16
    watchers: int = 0

    @property
    def label(self) -> str:
        watch = f" +{self.watchers} watches" if self.watchers else ""
        return f"{self.resource} {self.op} x{self.clients}{watch}"


def workloads(objects: int) -> list[Workload]:
    pods = max(objects // 3, 1)
    return [
        Workload("configmaps", "create", objects, watchers=4),
        Workload("configmaps", "patch", objects),
        Workload("configmaps", "get", objects),
        Workload("configmaps", "list", 100, clients=4),
        Workload("pods", "create", pods, watchers=2),
        Workload("pods", "patch", pods),
        Workload("pods", "list", 50, clients=4),
    ]


@dataclass
class Run:
    """One kubeload line: a workload in one round."""

    storage: str
    round: int
    workload: str
    ops: int = 0
    errors: int = 0
    first_error: str = ""
    seconds: float = math.nan
    ops_per_s: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    watch_events: int = 0
    watch_p50_ms: float = math.nan
    watch_p99_ms: float = math.nan


def admin_context(plane: ControlPlane) -> ssl.SSLContext:
    assert plane.admin is not None
    context = ssl.create_default_context(cafile=str(plane.ca.cert))
    context.load_cert_chain(str(plane.admin.cert.cert), str(plane.admin.cert.key))
    return context


def create_namespace(plane: ControlPlane, name: str) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    req = urllib.request.Request(
        plane.server + "/api/v1/namespaces",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, context=admin_context(plane), timeout=30):
        pass

    # Pods need the namespace's default service account, which the controller-manager adds.
    def has_account() -> bool | None:
        status, _ = plane.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
        return True if status == 200 else None

    wait_for(f"the default service account in {name}", has_account, 60)


def run_workload(
    binary: Path, plane: ControlPlane, namespace: str, w: Workload, *, storage: str, rnd: int
) -> Run:
    assert plane.admin is not None
    argv = [
        str(binary),
        f"--server={plane.server}",
        f"--ca={plane.ca.cert}",
        f"--cert={plane.admin.cert.cert}",
        f"--key={plane.admin.cert.key}",
        f"--namespace={namespace}",
        f"--resource={w.resource}",
        f"--op={w.op}",
        f"--clients={w.clients}",
        f"--total={w.total}",
        f"--watchers={w.watchers}",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    run = Run(storage, rnd, w.label)
    if proc.returncode != 0:
        run.first_error = f"kubeload exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
        run.errors = 1
        return run
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in (
        "ops",
        "errors",
        "first_error",
        "seconds",
        "ops_per_s",
        "p50_ms",
        "p99_ms",
        "watch_events",
        "watch_p50_ms",
        "watch_p99_ms",
    ):
        if name in line:
            setattr(run, name, line[name])
    return run


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def summary(runs: Sequence[Run], workload: str, storage: str) -> tuple[float, float, float, float]:
    """(ops/s over every round, mean p50, mean p99, mean watch p99) of one storage."""
    mine = [r for r in runs if r.workload == workload and r.storage == storage and r.ops]
    if not mine:
        return math.nan, math.nan, math.nan, math.nan
    ops = sum(r.ops for r in mine) / sum(r.seconds for r in mine)
    return (
        ops,
        mean([r.p50_ms for r in mine]),
        mean([r.p99_ms for r in mine]),
        mean([r.watch_p99_ms for r in mine]),
    )


def render(runs: Sequence[Run]) -> str:
    lines = [
        "| workload | etcd ops/s | pyetcd ops/s | ratio | etcd p99 ms | pyetcd p99 ms "
        "| p99 ratio | watch p99 ms etcd / pyetcd |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload in dict.fromkeys(r.workload for r in runs):
        e_ops, _, e_p99, e_w = summary(runs, workload, "etcd")
        p_ops, _, p_p99, p_w = summary(runs, workload, "pyetcd")
        watch = "-" if math.isnan(e_w) or e_w == 0 else f"{e_w:.1f} / {p_w:.1f}"
        lines.append(
            f"| {workload} | {e_ops:,.0f} | {p_ops:,.0f} | {p_ops / e_ops:.2f} | {e_p99:.1f} "
            f"| {p_p99:.1f} | {p_p99 / e_p99:.2f} | {watch} |"
        )
    failed = [r for r in runs if r.errors]
    for r in failed:
        lines.append(
            f"{r.storage} round {r.round} {r.workload}: {r.errors} errors: {r.first_error}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.apiserver", description=__doc__)
    parser.add_argument("--objects", type=int, default=3000, help="ConfigMaps per round")
    parser.add_argument(
        "--warmup", type=int, default=300, help="ConfigMaps of the unmeasured first round"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    binary = go_tool_binary("kubeload", notes)
    if binary is None:
        raise SystemExit("the API server benchmark needs Go to build kubeload: " + "; ".join(notes))
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="pyetcd-bench-apiserver-") as tmp:
        # The upstream compaction interval, not the e2e suite's 10 s.
        planes = {
            s: ControlPlane(Path(tmp) / s, storage=s, compaction_interval="5m")
            for s in dict.fromkeys(ORDER)
        }
        try:
            for storage, plane in planes.items():
                print(f"starting kube-apiserver on {storage} ...", flush=True)
                plane.start()
            for storage, plane in planes.items():
                # Unmeasured: the API server's caches and both processes warm up first.
                print(f"warming up kube-apiserver on {storage} ...", flush=True)
                create_namespace(plane, "bench-warmup")
                for w in workloads(args.warmup):
                    run_workload(binary, plane, "bench-warmup", w, storage=storage, rnd=0)
            for rnd, storage in enumerate(ORDER, 1):
                plane, namespace = planes[storage], f"bench-{rnd}"
                create_namespace(plane, namespace)
                for w in workloads(args.objects):
                    run = run_workload(binary, plane, namespace, w, storage=storage, rnd=rnd)
                    print(
                        f"  round {rnd} {storage:6} {w.label:38} {run.ops_per_s:8,.0f}/s "
                        f"p99 {run.p99_ms:7.1f} ms"
                        + (f"  ERRORS: {run.first_error}" if run.errors else ""),
                        flush=True,
                    )
                    runs.append(run)
        finally:
            for plane in planes.values():
                plane.stop()
    print(render(runs))
    write_results(
        args.results_dir, "apiserver", {"order": ORDER, "runs": [asdict(r) for r in runs]}
    )
    return 1 if any(r.errors for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
