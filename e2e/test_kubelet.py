"""The process kubelet: nodes, pods as processes, DNS, Services, volumes, probes, restarts, faults.

Every test runs real pods through the real control plane: the scheduler binds them, the kubelet
(``e2e/kubelet``) runs their containers as local processes in namespaces of their own, and the
assertions read what the API server reports and what the processes really see (their
environment, command line, files, DNS answers, connections). Deadlines, never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.kube import Kubectl, condition, eventually
from e2e.kubelet import images
from e2e.kubelet.faults import KubeletHandle

TOOL_IMAGE = "e2e.pyetcd.io/python:1"
# A klog line of kubectl itself: "E1208 02:35:48.342406   25866 websocket.go:297] ...".
KLOG_LINE = re.compile(r"^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+ +\d+ \S+:\d+\] ")
HTTP_IMAGE = "e2e.pyetcd.io/http-server:1"
SSD_LABEL = "etcd.pyetcd.io/disk"

Json = dict[str, Any]


def tool_pod(name: str, namespace: str, **spec: Any) -> Json:
    """A pod that sleeps, to exec into."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": TOOL_IMAGE, "command": ["sleep", "3600"]}],
            **spec,
        },
    }


def wait_ready(kubectl: Kubectl, namespace: str, name: str, timeout: float = 60) -> Json:
    def ready() -> Json | None:
        pod = kubectl.get("pod", name, namespace)
        return dict(pod) if condition(pod, "Ready") == "True" else None

    result: Json = eventually(f"pod {name} Ready", ready, timeout=timeout)
    return result


def python(kubelet: KubeletHandle, namespace: str, pod: str, code: str) -> str:
    """Run Python code inside ``pod``; return its stdout (fails on a non-zero exit)."""
    result = kubelet.exec(namespace, pod, ["python", "-c", code])
    assert result.code == 0, result.stderr
    return result.stdout


def http_get(kubelet: KubeletHandle, namespace: str, pod: str, url: str) -> str | None:
    """GET ``url`` from inside ``pod``: the status code, or None when the request failed."""
    code = (
        "import urllib.request\n"
        f"with urllib.request.urlopen({url!r}, timeout=5) as r: print(r.status)"
    )
    result = kubelet.exec(namespace, pod, ["python", "-c", code])
    return result.stdout.strip() if result.code == 0 else None


def test_nodes_register_and_renew_leases(kubectl: Kubectl, kubelet: KubeletHandle) -> None:
    nodes = {n["metadata"]["name"]: n for n in kubectl.json("get", "nodes")["items"]}
    for name in ("node-a", "node-b", "node-c", "node-d"):
        node = nodes[name]
        assert condition(node, "Ready") == "True"
        assert node["status"]["allocatable"]["pods"] == "110"
        assert (node["metadata"]["labels"].get(SSD_LABEL) == "ssd") == (name != "node-d")
    lease = kubectl.get("lease", "node-a", "kube-node-lease")
    first = lease["spec"]["renewTime"]
    assert lease["spec"]["holderIdentity"] == "node-a"
    eventually(
        "the node-a Lease to be renewed",
        lambda: kubectl.get("lease", "node-a", "kube-node-lease")["spec"]["renewTime"] != first,
        timeout=30,
    )


def test_deployment_available_and_service_answers_by_name(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    container = {
        "name": "web",
        "image": HTTP_IMAGE,
        "args": ["8080"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [container]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    kubectl.apply(deployment)
    kubectl.apply(service)
    kubectl.apply(tool_pod("client", namespace))

    def available() -> bool:
        status = kubectl.get("deployment", "web", namespace).get("status", {})
        return bool(status.get("availableReplicas") == 2)

    eventually("the Deployment to become Available", available, timeout=90)
    pods = kubectl.json("get", "pods", f"--namespace={namespace}", "-l", "app=web")["items"]
    addresses = sorted(p["status"]["podIP"] for p in pods)
    assert all(a.startswith("10.244.") for a in addresses)

    def published() -> bool:
        slices = kubectl.json(
            "get", "endpointslices", f"--namespace={namespace}",
            "-l", "kubernetes.io/service-name=web",
        )["items"]  # fmt: skip
        found = sorted(a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"])
        return found == addresses

    eventually("the pod IPs in the Service's EndpointSlice", published)
    wait_ready(kubectl, namespace, "client")
    for url in (f"http://web.{namespace}.svc.cluster.local/", "http://web/"):

        def get(url: str = url) -> str | None:
            return http_get(kubelet, namespace, "client", url)

        assert eventually(f"GET {url} from another pod", get) == "200"


def test_statefulset_pods_resolve_each_other(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "members", "namespace": namespace},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"app": "member"},
            "ports": [{"name": "peer", "port": 2380}],
        },
    }
    template = tool_pod("member", namespace)
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "member", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "serviceName": "members",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "member"}},
            "template": {"metadata": {"labels": {"app": "member"}}, "spec": template["spec"]},
        },
    }
    kubectl.apply(service)
    kubectl.apply(statefulset)
    first = wait_ready(kubectl, namespace, "member-0")
    wait_ready(kubectl, namespace, "member-1")
    name = f"member-0.members.{namespace}.svc.cluster.local"
    code = f"import socket; print(socket.gethostbyname({name!r}), socket.gethostname())"

    def resolved() -> str | None:
        result = kubelet.exec(namespace, "member-1", ["python", "-c", code])
        return result.stdout.split()[0] if result.code == 0 else None

    assert eventually(f"{name} to resolve from member-1", resolved) == first["status"]["podIP"]
    # Its own name, through its /etc/hosts, and the headless Service's name to both members.
    hostname = python(kubelet, namespace, "member-0", "import socket; print(socket.getfqdn())")
    assert hostname.strip() == name
    everyone = python(
        kubelet,
        namespace,
        "member-1",
        "import socket; print(sorted(socket.gethostbyname_ex('members')[2]))",
    )
    pods = kubectl.json("get", "pods", f"--namespace={namespace}", "-l", "app=member")["items"]
    assert everyone.strip() == str(sorted(p["status"]["podIP"] for p in pods))


def test_env_from_configmap_secret_and_expansion(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    kubectl.run(
        "create", "configmap", "settings", f"--namespace={namespace}",
        "--from-literal=color=blue", "--from-literal=size=7",
    )  # fmt: skip
    kubectl.run(
        "create", "secret", "generic", "creds", f"--namespace={namespace}",
        "--from-literal=password=s3cr3t",
    )  # fmt: skip
    pod = tool_pod("envy", namespace)
    pod["metadata"]["labels"]["tier"] = "gold"
    pod["spec"]["containers"][0].update(
        {
            "command": ["python", "-c", "import sys, time; time.sleep(int(sys.argv[1]))"],
            "args": ["$(NAP)", "$(COLOR)-$(POD_NAME)", "$$(COLOR)", "$(UNDEFINED)"],
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            "env": [
                {"name": "NAP", "value": "3600"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {
                    "name": "TIER",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}},
                },
                {
                    "name": "COLOR",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}},
                },
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                },
                {"name": "GREETING", "value": "$(COLOR) $(TIER) at $(POD_IP)"},
            ],
        }
    )
    kubectl.apply(pod)
    status = wait_ready(kubectl, namespace, "envy")["status"]
    info = kubelet.pod(namespace, "envy")
    assert info is not None
    pid = info["containers"]["main"]["pid"]
    # What the running process really got, from /proc.
    environ = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        if "=" in item
    )
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    assert argv[3:] == ["3600", "blue-envy", "$(COLOR)", "$(UNDEFINED)"]
    assert environ["COLOR"] == "blue"
    assert environ["CFG_size"] == "7"
    assert environ["PASSWORD"] == "s3cr3t"
    assert environ["TIER"] == "gold"
    assert environ["GREETING"] == f"blue gold at {status['podIP']}"
    assert environ["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    # The service-account token and CA: in-cluster config reaches the real API server.
    version = python(
        kubelet,
        namespace,
        "envy",
        "from kubernetes import client, config\n"
        "config.load_incluster_config()\n"
        "print(client.VersionApi().get_code().git_version)",
    )
    assert version.strip() == kubectl.json("version")["serverVersion"]["gitVersion"]


def test_pvc_is_provisioned_and_survives_pod_restart(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    template = tool_pod("keeper", namespace)
    template["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "keeper", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "serviceName": "keeper",
            "selector": {"matchLabels": {"app": "keeper"}},
            "template": {"metadata": {"labels": {"app": "keeper"}}, "spec": template["spec"]},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    kubectl.apply(statefulset)
    first = wait_ready(kubectl, namespace, "keeper-0", timeout=90)
    claim = kubectl.get("pvc", "data-keeper-0", namespace)
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == "local-dir"  # the default class
    volume = kubectl.get("pv", claim["spec"]["volumeName"])
    path = Path(volume["spec"]["local"]["path"])
    python(kubelet, namespace, "keeper-0", "open('/data/note', 'w').write('kept')")
    assert (path / "note").read_text() == "kept"
    kubectl.run("delete", "pod", "keeper-0", f"--namespace={namespace}")

    def replaced() -> Json | None:
        pod = kubectl.get("pod", "keeper-0", namespace)
        new = pod["metadata"]["uid"] != first["metadata"]["uid"]
        return dict(pod) if new and condition(pod, "Ready") == "True" else None

    eventually("a new keeper-0", replaced, timeout=90)
    assert python(kubelet, namespace, "keeper-0", "print(open('/data/note').read())") == "kept\n"
    # Faults: wiping the volume empties the directory behind the claim.
    assert kubelet.wipe(namespace, "keeper-0", "data") == path
    assert list(path.iterdir()) == []


def test_readiness_probe_flips_ready(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    pod = tool_pod("flip", namespace)
    pod["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    pod["spec"]["containers"][0].update(
        {
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
            "readinessProbe": {
                "exec": {"command": ["cat", "/tmp/ready"]},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
        }
    )
    kubectl.apply(pod)

    def ready_is(value: str) -> bool:
        return condition(kubectl.get("pod", "flip", namespace), "Ready") == value

    def running_unready() -> bool:
        pod = kubectl.get("pod", "flip", namespace)
        statuses = pod["status"].get("containerStatuses") or []
        running = bool(statuses) and "running" in statuses[0]["state"]
        return running and condition(pod, "Ready") == "False"

    eventually("flip running but not Ready", running_unready)
    kubelet.exec(namespace, "flip", ["sh", "-c", "echo yes > /tmp/ready"])
    eventually("flip to become Ready", lambda: ready_is("True"))
    kubelet.exec(namespace, "flip", ["sh", "-c", "rm /tmp/ready"])
    eventually("flip to become unready again", lambda: ready_is("False"))


def test_killed_container_restarts(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    kubectl.apply(tool_pod("phoenix", namespace))
    wait_ready(kubectl, namespace, "phoenix")
    pid = kubelet.kill(namespace, "phoenix")

    def restarted() -> Json | None:
        status = kubectl.get("pod", "phoenix", namespace)["status"]["containerStatuses"][0]
        return dict(status) if status["restartCount"] == 1 and status["ready"] else None

    status = eventually("phoenix to restart", restarted)
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert status["lastState"]["terminated"]["signal"] == 9
    info = kubelet.pod(namespace, "phoenix")
    assert info is not None
    assert info["containers"]["main"]["pid"] not in (None, pid)
    assert not Path(f"/proc/{pid}").exists()


def test_deleted_pod_is_stopped_within_its_grace_period(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    stubborn = tool_pod("stubborn", namespace, terminationGracePeriodSeconds=3)
    stubborn["spec"]["containers"][0]["command"] = [
        "python",
        "-c",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)",
    ]
    kubectl.apply(stubborn)
    kubectl.apply(tool_pod("polite", namespace, terminationGracePeriodSeconds=30))
    wait_ready(kubectl, namespace, "stubborn")
    wait_ready(kubectl, namespace, "polite")
    infos = {name: kubelet.pod(namespace, name) for name in ("stubborn", "polite")}
    pids = {name: info["containers"]["main"]["pid"] for name, info in infos.items() if info}
    netns = {info["netns"] for info in infos.values() if info}
    for name in ("stubborn", "polite"):
        started = time.monotonic()
        kubectl.run("delete", "pod", name, f"--namespace={namespace}", "--timeout=60s")
        elapsed = time.monotonic() - started
        assert not Path(f"/proc/{pids[name]}").exists()
        if name == "stubborn":  # ignored SIGTERM: SIGKILL after the 3 s grace period
            assert 2.5 <= elapsed < 20, elapsed
        else:  # sleep dies of SIGTERM at once, long before its 30 s grace period
            assert elapsed < 10, elapsed
    eventually("the pods' network namespaces to go", lambda: not netns & set(kubelet.namespaces()))


# The process kubelet's faults do not depend on the API server's storage: one plane.
@pytest.mark.one_storage
def test_network_cut_and_node_stop(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    kubectl.apply(tool_pod("talker", namespace))
    server = tool_pod("listener", namespace, nodeSelector={"kubernetes.io/hostname": "node-d"})
    server["spec"]["containers"][0].update({"image": HTTP_IMAGE, "command": None, "args": ["80"]})
    kubectl.apply(server)
    wait_ready(kubectl, namespace, "talker")
    address = wait_ready(kubectl, namespace, "listener")["status"]["podIP"]
    url = f"http://{address}/"
    assert eventually("the listener", lambda: http_get(kubelet, namespace, "talker", url)) == "200"
    kubelet.cut(namespace, "listener")
    try:
        result = kubelet.exec(
            namespace,
            "talker",
            ["python", "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2)"],
        )
        assert result.code != 0
        assert "timed out" in result.stderr or "unreachable" in result.stderr, result.stderr
    finally:
        kubelet.plug(namespace, "listener")
    assert eventually("the listener back", lambda: http_get(kubelet, namespace, "talker", url))
    # Stop node-d: its processes die, its heartbeats stop, the control plane notices.
    info = kubelet.pod(namespace, "listener")
    assert info is not None
    pid = info["containers"]["main"]["pid"]
    kubelet.stop_node("node-d")
    try:
        assert not Path(f"/proc/{pid}").exists()
        assert kubelet.pod(namespace, "listener") is None

        def not_ready() -> bool:
            return condition(kubectl.get("node", "node-d"), "Ready") == "Unknown"

        eventually("node-d to turn NotReady (Unknown)", not_ready, timeout=120)
    finally:
        kubelet.start_node("node-d")
    eventually(
        "node-d Ready again", lambda: condition(kubectl.get("node", "node-d"), "Ready") == "True"
    )
    eventually("listener running again", lambda: kubelet.pod(namespace, "listener"), timeout=60)


def test_upstream_etcd_member_and_etcdctl_through_client_service(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    from etcd_operator.api.settings import OperatorSettings
    from etcd_operator.api.v1alpha1 import EtcdCluster
    from etcd_operator.components.bootstrap import BootstrapState
    from etcd_operator.components.children import children

    cluster = EtcdCluster.model_validate(
        {
            "apiVersion": "etcd.pyetcd.io/v1alpha1",
            "kind": "EtcdCluster",
            "metadata": {"name": "solo", "namespace": namespace, "uid": os.urandom(8).hex()},
            "spec": {
                "replicas": 1,
                "engine": "etcd",
                "version": "3.5.17",
                "storage": {"size": "1Gi", "placement": {"mode": "Off"}},
            },
        }
    )
    manifests = children(cluster, OperatorSettings(), BootstrapState.NEW)
    for manifest in manifests:
        # No EtcdCluster object exists here: an owner reference to it would be garbage-collected.
        manifest["metadata"].pop("ownerReferences", None)
    kubectl.apply({"apiVersion": "v1", "kind": "List", "items": manifests})
    kubectl.apply(tool_pod("etcd-client", namespace))
    wait_ready(kubectl, namespace, "solo-0", timeout=120)
    wait_ready(kubectl, namespace, "etcd-client")
    endpoint = f"--endpoints=http://solo-client.{namespace}.svc.cluster.local:2379"

    def put() -> bool:
        return (
            kubelet.exec(namespace, "etcd-client", ["etcdctl", endpoint, "put", "k", "v"]).code == 0
        )

    eventually("etcdctl put through the client Service", put)
    got = kubelet.exec(namespace, "etcd-client", ["etcdctl", endpoint, "get", "k", "-w", "json"])
    assert got.code == 0, got.stderr
    assert json.loads(got.stdout)["count"] == 1


def test_volume_above_the_checkout_does_not_hide_the_image_commands(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    """A pod's emptyDir over a parent of the checkout (as ``/tmp`` is of a checkout cloned to
    ``/tmp/x``) and over a parent of the Python installation: the pyetcd image still runs from
    the checkout's virtualenv, and the volumes are still the pod's own."""
    checkout = Path(images.ROOT)
    parents = sorted({str(Path(p).parent) for p in images.RUNTIME_PATHS} - {"/"})
    assert str(checkout.parent) in parents
    # The parent holds more than the checkout on the host: the pod must not see the rest.
    assert set(os.listdir(checkout.parent)) != {checkout.name}
    volumes = [{"name": f"above-{i}", "emptyDir": {}} for i in range(len(parents))]
    mounts = [{"name": f"above-{i}", "mountPath": path} for i, path in enumerate(parents)]
    url = "http://$(POD_IP):2380"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hidden", "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "volumes": [*volumes, {"name": "data", "emptyDir": {}}],
            "containers": [
                {
                    "name": "etcd",
                    "image": "ghcr.io/pyetcd/pyetcd:3.5.17",
                    "args": [
                        "--name=solo",
                        "--data-dir=/var/lib/etcd",
                        "--listen-client-urls=http://0.0.0.0:2379",
                        "--advertise-client-urls=http://$(POD_IP):2379",
                        "--listen-peer-urls=http://0.0.0.0:2380",
                        f"--initial-advertise-peer-urls={url}",
                        f"--initial-cluster=solo={url}",
                    ],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                    ],
                    "volumeMounts": [*mounts, {"name": "data", "mountPath": "/var/lib/etcd"}],
                    "readinessProbe": {
                        "httpGet": {"path": "/health", "port": 2379},
                        "periodSeconds": 1,
                    },
                }
            ],
        },
    }
    kubectl.apply(pod)
    wait_ready(kubectl, namespace, "hidden", timeout=120)
    put = kubelet.exec(namespace, "hidden", ["etcdctl", "put", "greeting", "hello"])
    assert put.code == 0, put.stderr
    got = kubelet.exec(namespace, "hidden", ["etcdctl", "get", "greeting", "--print-value-only"])
    assert got.stdout == "hello\n", got.stderr
    # Inside, the checkout's parent is the emptyDir: only the checkout's mount point is there.
    listing = kubelet.exec(namespace, "hidden", ["ls", "-A", str(checkout.parent)])
    assert listing.stdout.split() == [checkout.name], listing.stderr
    # Writes there land in the pod's volume, not on the host.
    marker = f"{checkout.parent}/marker-{namespace}"
    wrote = kubelet.exec(namespace, "hidden", ["sh", "-c", f"echo kept > {marker}"])
    assert wrote.code == 0, wrote.stderr
    info = kubelet.pod(namespace, "hidden")
    assert info is not None
    index = parents.index(str(checkout.parent))
    assert (Path(info["volumes"][f"above-{index}"]) / Path(marker).name).read_text() == "kept\n"
    assert not Path(marker).exists()


# Prints five lines, then waits on a FIFO in its emptyDir (a writer opening it lets it go on),
# prints one more line and exits 3: restarted, it prints the five lines again and waits.
CHATTY = """
import os, sys
for i in range(1, 6):
    print(f"line-{i}", flush=True)
print("to-stderr", file=sys.stderr, flush=True)
if not os.path.exists("/work/go"):
    os.mkfifo("/work/go")
open("/work/go").read()
print("after-go", flush=True)
sys.exit(3)
"""


def _lines(stream: Any, into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def test_kubectl_logs_tail_follow_previous_and_exec(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str
) -> None:
    """``kubectl logs`` and ``kubectl exec`` through the API server, which reaches the process
    kubelet's HTTPS API at the Node's InternalIP and kubelet port (e2e/kubelet/server.py)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "chatty", "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "containers": [
                {
                    "name": "talk",
                    "image": TOOL_IMAGE,
                    "command": ["python", "-c", CHATTY],
                    "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                }
            ],
        },
    }
    kubectl.apply(pod)
    ns = f"--namespace={namespace}"

    def logs(*args: str) -> str | None:
        result = kubectl.run("logs", ns, "chatty", *args, check=False)
        return result.stdout if result.returncode == 0 and "line-5" in result.stdout else None

    whole = eventually("the container's five lines in kubectl logs", logs, timeout=60)
    assert whole.splitlines() == [*(f"line-{i}" for i in range(1, 6)), "to-stderr"]
    assert kubectl.run("logs", ns, "chatty", "-c", "talk", "--tail=2").stdout == (
        "line-5\nto-stderr\n"
    )
    assert kubectl.run("logs", ns, "chatty", "--limit-bytes=6").stdout == "line-1"
    nothing = kubectl.run("logs", ns, "chatty", "--previous", check=False)
    assert nothing.returncode != 0 and "previous terminated container" in nothing.stderr

    # kubectl exec: stdout, stderr and the exit code; stdin with -i.
    ran = kubectl.run(
        "exec", ns, "chatty", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
    )
    # kubectl's own klog lines (its WebSocket client may log a late frame) are not the pod's.
    pod_stderr = [line for line in ran.stderr.splitlines() if not KLOG_LINE.match(line)]
    assert (ran.returncode, ran.stdout, pod_stderr[0]) == (3, "out\n", "err")
    echoed = kubectl.run("exec", "-i", ns, "chatty", "-c", "talk", "--", "cat", input="hi\n")
    assert echoed.stdout == "hi\n"
    # A kubectl speaking SPDY itself (as before 1.30): the API server passes the upgrade through
    # to the kubelet instead of translating WebSocket to SPDY.
    argv = [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "exec", ns, "chatty"]
    old = subprocess.run(
        [*argv, "--", "echo", "spdy"], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"},
    )  # fmt: skip
    assert (old.returncode, old.stdout) == (0, "spdy\n"), old.stderr

    # -f streams what comes next and ends with the run: after-go, then the container exits.
    argv = [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "logs", "-f", ns, "chatty"]
    follower = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(follower.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        seen: list[str | None] = []
        while "to-stderr\n" not in seen:
            seen.append(lines.get(timeout=max(deadline - time.monotonic(), 0.1)))
        kubectl.run("exec", ns, "chatty", "--", "sh", "-c", "echo go > /work/go")
        while seen[-1] is not None:
            seen.append(lines.get(timeout=max(deadline - time.monotonic(), 0.1)))
        assert follower.wait(timeout=30) == 0, follower.stderr.read() if follower.stderr else ""
    finally:
        follower.kill()
        follower.wait()
    assert seen[-2:] == ["after-go\n", None]

    # Restarted: the previous run's logs end with after-go, the current run's do not.
    def restarted() -> str | None:
        status = kubectl.get("pod", "chatty", namespace)["status"]["containerStatuses"][0]
        return logs() if status["restartCount"] >= 1 and "running" in status["state"] else None

    current = eventually("chatty to restart and print again", restarted, timeout=60)
    assert "after-go" not in current
    previous = kubectl.run("logs", ns, "chatty", "--previous").stdout
    assert previous.splitlines()[-1] == "after-go" and "--- start" not in previous
