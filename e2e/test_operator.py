"""The operator end to end: ``helm install`` the chart, ``kubectl apply`` the examples.

The operator runs as a pod of the chart's Deployment (in-cluster config, through the process
kubelet), and every assertion reads what a user would: the EtcdCluster's status and printer
columns, where its pods landed, and etcdctl through the client Service from another pod.
Deadlines through ``eventually``, never fixed sleeps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from e2e.conftest import OperatorRelease
from e2e.kube import Kubectl, eventually
from e2e.kubelet.faults import KubeletHandle
from e2e.test_kubelet import SSD_LABEL, condition, tool_pod, wait_ready

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PRINTER_COLUMNS = ["NAME", "REPLICAS", "READY", "VERSION", "LEADER", "PHASE", "AGE"]

Json = dict[str, Any]


def example(name: str, namespace: str) -> Json:
    manifest: Json = yaml.safe_load((EXAMPLES / name).read_text())
    manifest["metadata"]["namespace"] = namespace
    return manifest


def available(kubectl: Kubectl, namespace: str, name: str, replicas: int) -> Json | None:
    """The cluster once Available with ``replicas`` healthy, Ready members in its status."""
    cluster: Json = kubectl.get("etcdcluster", name, namespace)
    status = cluster.get("status") or {}
    members = status.get("members") or []
    healthy = [m for m in members if m.get("healthy")]
    # Available and healthy come from etcd, Ready (readyReplicas) from the pods' readiness.
    ready = status.get("readyReplicas") == replicas
    if (
        condition(cluster, "Available") == "True"
        and ready
        and len(healthy) == replicas == len(members)
    ):
        return cluster
    return None


def wait_available(
    kubectl: Kubectl, namespace: str, name: str, replicas: int, timeout: float = 180
) -> Json:
    try:
        result: Json = eventually(
            f"EtcdCluster {name} Available with {replicas} healthy members",
            lambda: available(kubectl, namespace, name, replicas),
            timeout=timeout,
            interval=1,
        )
    except AssertionError as err:
        status = kubectl.get("etcdcluster", name, namespace).get("status")
        raise AssertionError(f"{err}; status: {json.dumps(status)}") from None
    return result


def member_pods(kubectl: Kubectl, namespace: str, name: str) -> list[Json]:
    pods: list[Json] = kubectl.json(
        "get", "pods", f"--namespace={namespace}", "-l", f"app.kubernetes.io/instance={name}"
    )["items"]
    return pods


def etcdctl_reads_and_writes(
    kubectl: Kubectl, kubelet: KubeletHandle, namespace: str, name: str
) -> None:
    kubectl.apply(tool_pod("etcd-client", namespace))
    wait_ready(kubectl, namespace, "etcd-client")
    endpoint = f"--endpoints=http://{name}-client.{namespace}.svc.cluster.local:2379"

    def put() -> bool:
        argv = ["etcdctl", endpoint, "put", "greeting", "hello"]
        return kubelet.exec(namespace, "etcd-client", argv).code == 0

    eventually("etcdctl put through the client Service", put)
    got = kubelet.exec(
        namespace, "etcd-client", ["etcdctl", endpoint, "get", "greeting", "-w", "json"]
    )
    assert got.code == 0, got.stderr
    kvs = json.loads(got.stdout)["kvs"]
    assert len(kvs) == 1  # values are base64 in etcdctl's JSON
    assert kvs[0]["value"] == "aGVsbG8="


def test_helm_install_runs_the_operator_in_cluster(
    kubectl: Kubectl, operator: OperatorRelease
) -> None:
    def deployment_available() -> bool:
        deployment = kubectl.get("deployment", operator.deployment, operator.namespace)
        return condition(deployment, "Available") == "True"

    eventually("the operator Deployment Available", deployment_available, timeout=120)
    pods = kubectl.json(
        "get", "pods", f"--namespace={operator.namespace}",
        "-l", f"app.kubernetes.io/instance={operator.release}",
    )["items"]  # fmt: skip
    operator_pods = [p for p in pods if p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"]
    assert len(operator_pods) == 1
    pod = operator_pods[0]
    assert condition(pod, "Ready") == "True"
    container = pod["spec"]["containers"][0]
    assert container["image"].startswith("ghcr.io/pyetcd/etcd-operator:")
    # In-cluster config: no kubeconfig given, the service account's token instead.
    assert "KUBECONFIG" not in {e["name"] for e in container.get("env") or []}
    assert pod["spec"]["serviceAccountName"] == operator.deployment


def test_upstream_etcd_example_reaches_available(
    kubectl: Kubectl, kubelet: KubeletHandle, operator: OperatorRelease, namespace: str
) -> None:
    manifest = example("etcdcluster-etcd.yaml", namespace)
    name = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    cluster = wait_available(kubectl, namespace, name, 3)
    pods = member_pods(kubectl, namespace, name)
    assert sorted(p["metadata"]["name"] for p in pods) == [f"{name}-{i}" for i in range(3)]
    assert {m["name"] for m in cluster["status"]["members"]} == {
        p["metadata"]["name"] for p in pods
    }
    nodes = {n["metadata"]["name"]: n for n in kubectl.json("get", "nodes")["items"]}
    placed = [p["spec"]["nodeName"] for p in pods]
    assert len(set(placed)) == 3, placed
    assert all(nodes[n]["metadata"]["labels"].get(SSD_LABEL) == "ssd" for n in placed), placed
    # The printer columns, as `kubectl get etcdclusters` shows them.
    table = kubectl.run("get", "etcdclusters", f"--namespace={namespace}").stdout.splitlines()
    assert table[0].split() == PRINTER_COLUMNS
    row = table[1].split()
    # Version is what the members report: Debian's etcd stands in for the 3.5.17 image here.
    assert row[:4] == [name, "3", "3", cluster["status"]["currentVersion"]]
    assert row[4] in {p["metadata"]["name"] for p in pods}
    assert row[5] == cluster["status"]["phase"]
    etcdctl_reads_and_writes(kubectl, kubelet, namespace, name)


def children(kubectl: Kubectl, namespace: str, name: str) -> dict[str, list[str]]:
    """Every object labelled as part of cluster ``name``, by kind, plus its claims by name."""
    found = kubectl.json(
        "get", "statefulsets,services,poddisruptionbudgets,configmaps,pods",
        f"--namespace={namespace}", "-l", f"app.kubernetes.io/instance={name}",
    )["items"]  # fmt: skip
    kinds: dict[str, list[str]] = {}
    for item in found:
        kinds.setdefault(item["kind"], []).append(item["metadata"]["name"])
    claims = kubectl.json("get", "pvc", f"--namespace={namespace}")["items"]
    members = [c["metadata"]["name"] for c in claims if f"-{name}-" in c["metadata"]["name"]]
    if members:
        kinds["PersistentVolumeClaim"] = members
    return {kind: sorted(names) for kind, names in kinds.items()}


def expected_children(name: str, replicas: int) -> dict[str, list[str]]:
    return {
        "ConfigMap": [f"{name}-bootstrap"],
        "PersistentVolumeClaim": [f"data-{name}-{i}" for i in range(replicas)],
        "Pod": [f"{name}-{i}" for i in range(replicas)],
        "PodDisruptionBudget": [name],
        "Service": sorted([f"{name}-client", f"{name}-peer"]),
        "StatefulSet": [name],
    }


def test_pyetcd_dev_example_reaches_available(
    kubectl: Kubectl, kubelet: KubeletHandle, operator: OperatorRelease, namespace: str
) -> None:
    manifest = example("etcdcluster-dev.yaml", namespace)
    name = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    cluster = wait_available(kubectl, namespace, name, 1)
    assert [m["name"] for m in cluster["status"]["members"]] == [f"{name}-0"]
    assert cluster["status"]["leader"] == f"{name}-0"
    (pod,) = member_pods(kubectl, namespace, name)
    assert pod["spec"]["containers"][0]["image"].startswith("ghcr.io/pyetcd/pyetcd:")
    row = kubectl.run("get", "etcdclusters", name, f"--namespace={namespace}").stdout.splitlines()
    assert row[1].split()[:6] == [name, "1", "1", "3.5.17", f"{name}-0", "Running"]
    etcdctl_reads_and_writes(kubectl, kubelet, namespace, name)


def test_deleting_the_cluster_removes_every_child(
    kubectl: Kubectl, operator: OperatorRelease, namespace: str
) -> None:
    manifest = example("etcdcluster-dev.yaml", namespace)  # volumeRetention: Delete
    name = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    wait_available(kubectl, namespace, name, 1)
    assert children(kubectl, namespace, name) == expected_children(name, 1)
    kubectl.run("delete", "etcdcluster", name, f"--namespace={namespace}", "--timeout=60s")
    assert not kubectl.exists("etcdcluster", name, namespace)

    def all_gone() -> bool:
        return children(kubectl, namespace, name) == {}

    eventually(f"every child of {name} to be deleted", all_gone, timeout=90)


def test_operator_restarted_mid_creation_finishes_without_duplicates(
    kubectl: Kubectl, kubelet: KubeletHandle, operator: OperatorRelease, namespace: str
) -> None:
    selector = f"app.kubernetes.io/instance={operator.release}"

    def operator_pod() -> str | None:
        pods = kubectl.json("get", "pods", f"--namespace={operator.namespace}", "-l", selector)
        ready = [p for p in pods["items"] if condition(p, "Ready") == "True"]
        ready = [p for p in ready if not p["metadata"].get("deletionTimestamp")]
        return str(ready[0]["metadata"]["name"]) if len(ready) == 1 else None

    first = eventually("one Ready operator pod", operator_pod, timeout=120)
    manifest = example("etcdcluster-etcd.yaml", namespace)
    name = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    # Mid-creation: as soon as the operator has started on the cluster (its StatefulSet exists).
    eventually("the operator to start creating", lambda: kubectl.exists("sts", name, namespace))
    kubectl.run(
        "delete", "pod", first, f"--namespace={operator.namespace}", "--wait=false"
    )  # fmt: skip

    def replacement() -> str | None:
        pod = operator_pod()
        return pod if pod not in (None, first) else None

    eventually("a new operator pod Ready", replacement, timeout=120)
    cluster = wait_available(kubectl, namespace, name, 3)
    assert children(kubectl, namespace, name) == expected_children(name, 3)
    assert len({m["id"] for m in cluster["status"]["members"]}) == 3
    # etcd itself: exactly three members, none added twice.
    kubectl.apply(tool_pod("etcd-client", namespace))
    wait_ready(kubectl, namespace, "etcd-client")
    endpoint = f"--endpoints=http://{name}-client.{namespace}.svc.cluster.local:2379"

    def member_list() -> list[Json] | None:
        argv = ["etcdctl", endpoint, "member", "list", "-w", "json"]
        result = kubelet.exec(namespace, "etcd-client", argv)
        return list(json.loads(result.stdout)["members"]) if result.code == 0 else None

    members = eventually("etcdctl member list", member_list)
    assert sorted(m["name"] for m in members) == [f"{name}-{i}" for i in range(3)]
