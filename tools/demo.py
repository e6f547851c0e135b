"""`make demo`: the operator on a real Kubernetes control plane, running a 3-member pyetcd cluster.

Steps, each waiting on a condition with a deadline (never a fixed sleep):

1. kubectl/helm (``.tools``) and the Kubernetes binaries (built once, ~6 min on 2 cores; cached);
2. the environment of :mod:`e2e.demo` (control plane on Debian's etcd + the process kubelet,
   detached, state in ``.demo/``), reused when it already runs, else (re)started cleanly;
3. ``helm upgrade --install`` of ``charts/etcd-operator`` (the operator runs in-cluster, as a pod
   of its Deployment), as the e2e suite installs it (:mod:`e2e.chart`);
4. ``kubectl apply`` of ``examples/etcdcluster-pyetcd.yaml``, then wait until it is Available
   with three healthy members;
5. back it up to the demo's S3 server (moto, run by the supervisor; ``tools.demo_backups``):
   hourly, keep 5, and one now through the annotation, waited for;
6. print ``kubectl get etcdbackups``, ``kubectl get etcdclusters,pods -o wide``, ``etcdctl
   endpoint status --cluster`` run inside a member pod (the pods' network is private to the
   kubelet), and how to keep exploring (backups and a restore included).

``python -m tools.demo down`` (``make demo-down``) stops everything; ``python -m tools.demo
etcdctl [--cluster NAME] [--namespace NS] ARGS...`` runs etcdctl in a member pod of EtcdCluster
NAME (default: the example) against its client Service. tools.demo's own options go before
``etcdctl`` or right after it (or end with ``--``): everything after is etcdctl's, whose own
``--cluster`` and ``--prefix`` flags mean something else.
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
from e2e.kubelet import images
from e2e.kubelet.faults import KubeletControl
from tools import demo_backups
from tools.tools import ensure_tools

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".demo"
EXAMPLE = ROOT / "examples" / "etcdcluster-pyetcd.yaml"
CLUSTER = "example-pyetcd"
REPLICAS = 3
NAMESPACE = "default"
RELEASE = "etcd-operator"


# tools.demo's options, recognised also right after ``etcdctl`` (see split_etcdctl).
OWN_OPTIONS = ("--state", "--prefix", "--namespace", "--timeout", "--cluster")


class DemoFailedError(RuntimeError):
    """A step did not finish in time; the message says what to read."""


class NoSuchClusterError(LookupError):
    """``etcdctl --cluster NAME``: no such EtcdCluster, or no member of it runs."""


@dataclass(frozen=True)
class Options:
    state: Path
    prefix: str
    namespace: str
    timeout: float


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def explore_hints(kubeconfig: Path, namespace: str, name: str, backup: str) -> str:
    """The closing lines: the KUBECONFIG export and a few commands to try next."""
    ns = "" if namespace == NAMESPACE else f" -n {namespace}"
    demo_ns = "" if namespace == NAMESPACE else f" --namespace {namespace}"
    return "\n".join(
        [
            "",
            "Keep exploring (kubectl and helm are in .tools/bin, the kubectl etcd plugin in "
            ".venv/bin):",
            f'export PATH="{ROOT / ".tools" / "bin"}:{ROOT / ".venv" / "bin"}:$PATH"',
            f"export KUBECONFIG={kubeconfig}",
            f"kubectl describe etcdcluster {name}{ns}",
            f"kubectl etcd status {name}{ns}   # members, roles, leader, backups at a glance",
            f"kubectl scale etcdcluster {name}{ns} --replicas=5 && kubectl get etcdclusters{ns} -w",
            f"kubectl logs {name}-0{ns} --tail=20   # also -f, --previous; kubectl exec works too",
            "# etcdctl inside a member pod (pods live in the kubelet's private network):",
            f".venv/bin/python -m tools.demo etcdctl{demo_ns} member list -w table",
            "# ... of any EtcdCluster you apply: --cluster NAME [--namespace NS]",
            f".venv/bin/python -m tools.demo etcdctl --cluster {name}{demo_ns} "
            "endpoint status -w table",
            "# TLS on both planes from the operator's own CA (docs/security.md): https only, "
            "and a client certificate",
            f"kubectl apply{ns} -f examples/etcdcluster-tls.yaml && "
            f"kubectl get etcdcluster example-tls{ns} -o jsonpath='{{.status.tls}}'",
            "# ... with etcd's auth on too (spec.auth): root's password in Secret "
            "example-tls-root-auth",
            f"PW=$(kubectl get secret example-tls-root-auth{ns} -o jsonpath='{{.data.password}}' "
            "| base64 -d)",
            f".venv/bin/python -m tools.demo etcdctl --cluster example-tls{demo_ns} "
            '--user "root:$PW" endpoint health --cluster'
            "   # with the certificate in Secret example-tls-client-tls",
            "# who may reach the members: a NetworkPolicy (on by the chart's default; the demo's "
            "kubelet enforces it): peers between members, clients from this namespace and the "
            "operator",
            f"kubectl get networkpolicy {name}{ns} -o yaml   # docs/security.md: "
            "spec.networkPolicy.clients selects others",
            "# scaled behind the operator's back: put back within a refresh (DriftCorrected)",
            f"kubectl scale statefulset {name}{ns} --replicas=1 && kubectl get events{ns} -w",
            "# a member's volume lost (claim deleted with its pod): the member refuses to rejoin",
            "# under its old ID, and the operator replaces it on a new volume (MemberReplaced)",
            f"kubectl delete pvc data-{name}-1{ns} --wait=false && kubectl delete pod {name}-1{ns}",
            f"kubectl get events{ns} -w   # then: kubectl get etcdcluster {name}{ns} "
            "-o jsonpath='{.status.lastReplacement}'",
            "# two volumes lost at once: the quorum is gone (Available=False/QuorumLost names the",
            "# survivor); with your consent the operator rebuilds from it (QuorumRecovered)",
            f"kubectl delete pvc data-{name}-1 data-{name}-2{ns} --wait=false && "
            f"kubectl delete pod {name}-1 {name}-2{ns}",
            f"kubectl describe etcdcluster {name}{ns}   # wait for QuorumLost, then consent:",
            f"kubectl annotate etcdcluster {name}{ns} etcd.pyetcd.io/recover-quorum=try-1",
            f"kubectl get etcdcluster {name}{ns} -o jsonpath='{{.status.quorumRecovery}}'",
            "# hibernate: every member stopped, volumes and member IDs kept; scale back to wake",
            f"kubectl scale etcdcluster {name}{ns} --replicas=0 && kubectl get etcdclusters{ns} -w",
            "# defragment one member at a time (the leader last) when a db file passes 80% of "
            "its quota:",
            f"kubectl patch etcdcluster {name}{ns} --type=merge "
            """-p '{"spec":{"maintenance":{"defrag":{"quotaUsageAbovePercent":80}}}}'""",
            "# or defragment every member now, the same way (an EtcdDefrag; status.members "
            "has each member's sizes):",
            """echo '{"apiVersion":"etcd.pyetcd.io/v1alpha1","kind":"EtcdDefrag","""
            f""""metadata":{{"name":"defrag-now"}},"spec":{{"clusterName":"{name}"}}}}' """
            f"| kubectl create{ns} -f - && kubectl wait{ns} etcddefrag/defrag-now "
            "--for=condition=Complete --timeout=5m",
            "# a changed flag rolls one member at a time, followers first, the leader last:",
            f"kubectl patch etcdcluster {name}{ns} --type=merge "
            """-p '{"spec":{"etcd":{"snapshotCount":20000}}}'""",
            f"kubectl get events{ns} --field-selector reason=RestartingMember -w",
            "# upstream etcd (spec.engine: etcd) by version: "
            + images.available(images.ETCD_RELEASES),
            "# so a 3.4 -> 3.5 upgrade runs for real: examples/etcdcluster-etcd.yaml with "
            "spec.version 3.4.23, then:",
            """kubectl patch etcdcluster example-etcd --type=merge """
            """-p '{"spec":{"version":"3.5.36"}}'""",
            "# the API server refuses a typo, with a message (every file there says which)",
            "kubectl apply -f examples/invalid/resources-cpu-words.yaml",
            *demo_backups.hints(namespace, name, backup),
            "# what fills the keyspace: the operator analyses the latest backup (spec.analysis, "
            "docs/backup.md)",
            f"kubectl patch etcdcluster {name}{ns} --type=merge "
            """-p '{"spec":{"analysis":{"schedule":"0 3 * * *","writes":{}}}}'""",
            "# writes: a 30 s watch every 10 min counts the live cluster's writes by prefix "
            "(status.keyspace.writes, shown by kubectl etcd keyspace)",
            f"kubectl annotate etcdcluster {name}{ns} etcd.pyetcd.io/analyze=now --overwrite "
            f"&& kubectl etcd keyspace {name}{ns}",
            "# ... or offline, on any etcd or pyetcd snapshot file: pyetcdutl analyze FILE",
            "# monitoring (docs/monitoring.md): a PodMonitor for the members, etcd's alerts and "
            "the operator's with runbooks, three Grafana dashboards",
            "helm template charts/etcd-operator --set memberMonitor.enabled=true,"
            "prometheusRule.enabled=true,grafanaDashboards.enabled=true | less",
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
        f"  pod logs: kubectl logs -n {namespace} POD (files: {paths.pod_logs}/<container>.log)"
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

    step(
        f"backups of {CLUSTER} to the demo's S3 server (moto): hourly, keep 5, and one now "
        "(annotation etcd.pyetcd.io/backup)"
    )
    try:
        backup = demo_backups.configure(
            kubectl, state, options.namespace, CLUSTER, timeout=options.timeout
        )
    except AssertionError as exc:
        raise DemoFailedError(failure(kubectl, paths, options.namespace, str(exc))) from None
    print(f"\n$ kubectl get etcdbackups -n {options.namespace}", flush=True)
    print(kubectl.run("get", "etcdbackups", f"-n={options.namespace}").stdout, end="", flush=True)

    print(f"\n$ kubectl get etcdclusters,pods -o wide -n {options.namespace}", flush=True)
    table = kubectl.run("get", "etcdclusters,pods", "-o", "wide", f"-n={options.namespace}")
    print(table.stdout, end="", flush=True)
    print(f"\n$ etcdctl endpoint status --cluster -w table   # inside pod {CLUSTER}-0")
    try:
        print(endpoint_status(state, options.namespace), end="", flush=True)
    except AssertionError as exc:
        raise DemoFailedError(failure(kubectl, paths, options.namespace, str(exc))) from None
    print(explore_hints(state.kubeconfig, options.namespace, CLUSTER, backup))
    print(f"(make demo took {time.monotonic() - began:.0f}s)", flush=True)
    return 0


def etcdctl_in_member(
    state: demo.DemoState,
    namespace: str,
    args: list[str],
    cluster: str = CLUSTER,
    pod: str = "",
    *,
    secure: bool = False,
) -> tuple[int, str]:
    """etcdctl inside a member pod (default: the first), against the cluster's client Service;
    ``secure``: over https with the client certificate the member pod mounts (spec.tls)."""
    endpoint = etcdclusters.client_endpoint(cluster, namespace, secure=secure)
    argv = ["etcdctl", endpoint, *(etcdclusters.member_tls_flags() if secure else []), *args]
    result = KubeletControl(state.control).exec(namespace, pod or f"{cluster}-0", argv)
    return result.code, result.stdout + result.stderr


def member_pod(kubectl: Kubectl, cluster: str, namespace: str) -> str:
    """A Running member pod of EtcdCluster ``cluster`` (lowest ordinal first)."""
    if not kubectl.exists("etcdcluster", cluster, namespace):
        found = kubectl.run(
            "get", "etcdclusters", "--all-namespaces", "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}",
        ).stdout.split()  # fmt: skip
        raise NoSuchClusterError(
            f"no EtcdCluster {cluster!r} in namespace {namespace!r}; "
            f"the demo has: {', '.join(found) or 'none'} (--cluster NAME --namespace NS)"
        )
    pods = kubectl.json(
        "get", "pods", f"--namespace={namespace}", "-l", f"{etcdclusters.MEMBER_LABEL}={cluster}"
    )["items"]
    running = etcdclusters.running_members(pods)
    if not running:
        raise NoSuchClusterError(
            f"EtcdCluster {cluster!r} in namespace {namespace!r} has no Running member pod yet: "
            f"kubectl get pods -n {namespace} -l {etcdclusters.MEMBER_LABEL}={cluster}"
        )
    return running[0]


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
        subprocess.run([sys.executable, "-m", "tools.demo_local", "down"], cwd=ROOT, check=False)
    print("demo stopped", flush=True)
    return 0


def etcdctl(options: Options, cluster: str, args: list[str]) -> int:
    state = demo.running(demo.DemoDir(options.state))
    if state is None:
        print("the demo does not run: start it with `make demo`", file=sys.stderr)
        return 1
    kubectl = Kubectl(ensure_tools().kubectl, state.kubeconfig)
    try:
        pod = member_pod(kubectl, cluster, options.namespace)
        spec = kubectl.get("etcdcluster", cluster, options.namespace)["spec"]
    except (NoSuchClusterError, KubectlError) as exc:
        print(f"tools.demo etcdctl: {exc}", file=sys.stderr)
        return 1
    secure = bool((spec.get("tls") or {}).get("client"))
    try:
        code, out = etcdctl_in_member(state, options.namespace, args, cluster, pod, secure=secure)
    except RuntimeError as exc:  # the kubelet could not exec in it (e.g. stopping right now)
        print(f"tools.demo etcdctl: in pod {pod}: {exc}", file=sys.stderr)
        return 1
    print(out, end="")
    return code


def split_etcdctl(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``argv`` -> (tools.demo's arguments, etcdctl's; None without the ``etcdctl`` command).

    tools.demo's options go before ``etcdctl`` or right after it; the first other argument (or
    ``--``) starts etcdctl's, which are passed on untouched: ``etcdctl --cluster c endpoint status
    --cluster`` is EtcdCluster ``c``, then etcdctl's own ``--cluster`` flag.
    """
    if "etcdctl" not in argv:
        return argv, None
    split = argv.index("etcdctl") + 1
    own, rest = argv[:split], argv[split:]
    while rest:
        token = rest[0]
        if token == "--":
            rest = rest[1:]
            break
        if token.split("=", 1)[0] not in OWN_OPTIONS:
            break
        size = 1 if "=" in token else 2
        own, rest = own + rest[:size], rest[size:]
    return own, rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", nargs="?", default="up", choices=["up", "down", "etcdctl"])
    parser.add_argument("--state", type=Path, default=STATE, help="state directory (.demo)")
    parser.add_argument("--prefix", default=demo.DEFAULT_PREFIX, help="network namespace prefix")
    parser.add_argument("--namespace", default=NAMESPACE, help="namespace of the EtcdCluster")
    parser.add_argument("--timeout", type=float, default=600.0, help="deadline of each wait (s)")
    parser.add_argument(
        "--cluster", default=CLUSTER, help=f"etcdctl: the EtcdCluster to reach ({CLUSTER})"
    )
    own, etcdctl_args = split_etcdctl(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(own)
    options = Options(args.state.resolve(), args.prefix, args.namespace, args.timeout)
    if args.command == "etcdctl":
        assert etcdctl_args is not None
        return etcdctl(options, args.cluster, etcdctl_args)
    try:
        return up(options) if args.command == "up" else down(options)
    except (DemoFailedError, demo.DemoError, chart.HelmError, KubectlError) as exc:
        print(f"\nmake demo failed: {exc}", file=sys.stderr)
        print("It keeps running for inspection; `make demo-down` stops it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
