"""`make demo`: the operator on a real Kubernetes control plane, running a 3-member pyetcd cluster.

Steps, each waiting on a condition with a deadline (never a fixed sleep):

1. kubectl/helm (``.tools``) and the Kubernetes binaries (built once, ~6 min on 2 cores; cached);
2. the environment of :mod:`e2e.demo` (control plane on Debian's etcd + the process kubelet,
   detached, state in ``.demo/``), reused when it already runs, else (re)started cleanly;
3. ``helm upgrade --install`` of ``charts/etcd-operator`` (the operator runs in-cluster, as a pod
   of its Deployment), as the e2e suite installs it (:mod:`e2e.chart`);
4. ``kubectl apply`` of ``examples/etcdcluster-pyetcd.yaml``, then wait until it is Available
   with three healthy members;
5. print ``kubectl get etcdclusters,pods -o wide``, ``etcdctl endpoint status --cluster`` run
   inside a member pod (the pods' network is private to the kubelet), and how to keep exploring.

``python -m tools.demo down`` (``make demo-down``) stops everything; ``python -m tools.demo
etcdctl ARGS...`` runs etcdctl in the cluster's first member pod.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from e2e import chart, demo, etcdclusters
from e2e.k8s.build import ensure_binaries
from e2e.kube import Json, Kubectl, KubectlError, eventually
from e2e.kubelet.faults import KubeletControl
from tools.tools import ensure_tools

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".demo"
EXAMPLE = ROOT / "examples" / "etcdcluster-pyetcd.yaml"
CLUSTER = "example-pyetcd"
REPLICAS = 3
NAMESPACE = "default"
RELEASE = "etcd-operator"


class DemoFailedError(RuntimeError):
    """A step did not finish in time; the message says what to read."""


@dataclass(frozen=True)
class Options:
    state: Path
    prefix: str
    namespace: str
    timeout: float


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def explore_hints(kubeconfig: Path, namespace: str, name: str) -> str:
    """The closing lines: the KUBECONFIG export and a few commands to try next."""
    ns = "" if namespace == NAMESPACE else f" -n {namespace}"
    return "\n".join(
        [
            "",
            "Keep exploring (kubectl and helm are in .tools/bin):",
            f'export PATH="{ROOT / ".tools" / "bin"}:$PATH"',
            f"export KUBECONFIG={kubeconfig}",
            f"kubectl describe etcdcluster {name}{ns}",
            f"kubectl scale etcdcluster {name}{ns} --replicas=5 && kubectl get etcdclusters{ns} -w",
            "# etcdctl inside a member pod (pods live in the kubelet's private network):",
            ".venv/bin/python -m tools.demo etcdctl member list -w table",
            "Stop everything: make demo-down",
        ]
    )


def failure(kubectl: Kubectl, paths: demo.DemoDir, namespace: str, what: str) -> str:
    """The message of a step that timed out: the cluster's status and where the logs are."""
    try:
        cluster = etcdclusters.describe(kubectl.get("etcdcluster", CLUSTER, namespace))
    except Exception as exc:  # the API server may be what failed
        cluster = f"(unreadable: {exc})"
    return (
        f"{what}\n  EtcdCluster status: {cluster}\n"
        f"  logs: {paths.log_dir} (control plane, kubelet, this supervisor)\n"
        f"  pod logs: {paths.pod_logs}/<container>.log"
    )


def environment(options: Options) -> demo.DemoState:
    paths = demo.DemoDir(options.state)
    state = demo.running(paths)
    if state is not None:
        step(f"reusing the running demo (supervisor pid {state.pid}, state in {paths.root})")
        return state
    if paths.root.exists():
        step("cleaning up a stopped or broken earlier demo")
        for item in demo.stop(paths):
            print(f"    {item}")
    step(f"starting the control plane (Debian etcd) and the process kubelet in {paths.root}")
    started = time.monotonic()
    state = demo.start(paths, options.prefix)
    print(f"    up in {time.monotonic() - started:.0f}s; logs in {paths.log_dir}", flush=True)
    return state


def up(options: Options) -> int:
    paths = demo.DemoDir(options.state)
    began = time.monotonic()
    step("kubectl and helm (.tools), the Kubernetes binaries (a cold build takes ~6 minutes)")
    tools = ensure_tools()
    ensure_binaries()
    state = environment(options)
    kubectl = Kubectl(tools.kubectl, state.kubeconfig)

    step("helm install charts/etcd-operator (namespace etcd-operator)")
    release = chart.install(tools.helm, state.kubeconfig, RELEASE, "etcd-operator", upgrade=True)
    try:
        chart.wait_available(kubectl, release, timeout=options.timeout)
    except AssertionError as exc:
        raise DemoFailedError(failure(kubectl, paths, options.namespace, str(exc))) from None

    step(f"kubectl apply -f {EXAMPLE.relative_to(ROOT)} (namespace {options.namespace})")
    kubectl.run("apply", f"--namespace={options.namespace}", "-f", str(EXAMPLE))

    def ready() -> Json | None:
        cluster: Json = kubectl.get("etcdcluster", CLUSTER, options.namespace)
        return cluster if etcdclusters.available(cluster, REPLICAS) else None

    step(f"waiting for EtcdCluster {CLUSTER} to be Available with {REPLICAS} healthy members")
    try:
        eventually(f"EtcdCluster {CLUSTER} Available", ready, timeout=options.timeout, interval=2)
    except AssertionError as exc:
        raise DemoFailedError(failure(kubectl, paths, options.namespace, str(exc))) from None

    print(f"\n$ kubectl get etcdclusters,pods -o wide -n {options.namespace}", flush=True)
    table = kubectl.run("get", "etcdclusters,pods", "-o", "wide", f"-n={options.namespace}")
    print(table.stdout, end="", flush=True)
    print(f"\n$ etcdctl endpoint status --cluster -w table   # inside pod {CLUSTER}-0")
    try:
        print(endpoint_status(state, options.namespace), end="", flush=True)
    except AssertionError as exc:
        raise DemoFailedError(failure(kubectl, paths, options.namespace, str(exc))) from None
    print(explore_hints(state.kubeconfig, options.namespace, CLUSTER))
    print(f"(make demo took {time.monotonic() - began:.0f}s)", flush=True)
    return 0


def etcdctl_in_member(state: demo.DemoState, namespace: str, args: list[str]) -> tuple[int, str]:
    """etcdctl inside the first member pod, against the client Service."""
    argv = ["etcdctl", etcdclusters.client_endpoint(CLUSTER, namespace), *args]
    result = KubeletControl(state.control).exec(namespace, f"{CLUSTER}-0", argv)
    return result.code, result.stdout + result.stderr


def endpoint_status(state: demo.DemoState, namespace: str) -> str:
    def answered() -> str | None:
        code, out = etcdctl_in_member(
            state, namespace, ["endpoint", "status", "--cluster", "-w", "table"]
        )
        return out if code == 0 and out.count("http://") == REPLICAS else None

    text: str = eventually("etcdctl endpoint status --cluster", answered, timeout=60)
    return text


def down(options: Options) -> int:
    paths = demo.DemoDir(options.state)
    for item in demo.stop(paths):
        print(f"    {item}")
    if options.state == STATE:  # `make demo-down`: also the one-member pyetcd of demo-local
        subprocess.run([sys.executable, str(ROOT / "tools" / "demo_local.py"), "down"], check=False)
    print("demo stopped", flush=True)
    return 0


def etcdctl(options: Options, args: list[str]) -> int:
    state = demo.running(demo.DemoDir(options.state))
    if state is None:
        print("the demo does not run: start it with `make demo`", file=sys.stderr)
        return 1
    code, out = etcdctl_in_member(state, options.namespace, args)
    print(out, end="")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", nargs="?", default="up", choices=["up", "down", "etcdctl"])
    parser.add_argument("--state", type=Path, default=STATE, help="state directory (.demo)")
    parser.add_argument("--prefix", default=demo.DEFAULT_PREFIX, help="network namespace prefix")
    parser.add_argument("--namespace", default=NAMESPACE, help="namespace of the EtcdCluster")
    parser.add_argument("--timeout", type=float, default=600.0, help="deadline of each wait (s)")
    args, rest = parser.parse_known_args(argv)
    options = Options(args.state.resolve(), args.prefix, args.namespace, args.timeout)
    if args.command == "etcdctl":
        return etcdctl(options, rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    try:
        return up(options) if args.command == "up" else down(options)
    except (DemoFailedError, demo.DemoError, chart.HelmError, KubectlError) as exc:
        print(f"\nmake demo failed: {exc}", file=sys.stderr)
        print("It keeps running for inspection; `make demo-down` stops it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
