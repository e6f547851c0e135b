"""Smoke tests of the control plane itself, run once per storage backend (etcd, pyetcd).

No kubelet yet: Deployments stay unavailable, but the controller-manager must create their
ReplicaSets and Pods, and the scheduler must bind a Pod to a Node registered by hand. The
project's CRD is applied to the real API server: every example is accepted, every invalid example
is refused with the message of its ``# expect:`` line.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from e2e.controlplane import DEBIAN_ETCDCTL, ControlPlane
from e2e.k8s.build import KUBERNETES_VERSION
from e2e.kube import Kubectl, eventually

ROOT = Path(__file__).resolve().parent.parent
CRD = ROOT / "crds" / "etcd.pyetcd.io_etcdclusters.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID = sorted((ROOT / "examples" / "invalid").glob("*.yaml"))
INVALID_UPDATES = sorted((ROOT / "examples" / "invalid" / "updates").glob("*.old.yaml"))


def _expected(path: Path) -> str:
    match = re.search(r"^# expect: (.+)$", path.read_text(), re.M)
    assert match, f"{path} has no '# expect:' line"
    return match.group(1).strip()


def test_readyz_and_version(kubectl: Kubectl, control_plane: ControlPlane) -> None:
    assert kubectl.run("get", "--raw", "/readyz").stdout.strip() == "ok"
    verbose = kubectl.run("get", "--raw", "/readyz?verbose").stdout
    assert "[+]etcd ok" in verbose
    version = kubectl.json("version")
    assert version["serverVersion"]["gitVersion"] == KUBERNETES_VERSION
    control_plane.check_alive()


def test_namespace_and_configmap(kubectl: Kubectl, namespace: str) -> None:
    assert kubectl.get("namespace", namespace)["status"]["phase"] == "Active"
    kubectl.run(
        "create", "configmap", "settings", f"--namespace={namespace}", "--from-literal=answer=42"
    )
    kubectl.run(
        "patch",
        "configmap",
        "settings",
        f"--namespace={namespace}",
        "--type=merge",
        "-p",
        '{"data":{"more":"yes"}}',
    )
    data = kubectl.get("configmap", "settings", namespace)["data"]
    assert data == {"answer": "42", "more": "yes"}
    # The controller-manager publishes the root CA and a default ServiceAccount in each namespace.
    eventually(
        "kube-root-ca.crt", lambda: kubectl.exists("configmap", "kube-root-ca.crt", namespace)
    )
    eventually(
        "default ServiceAccount", lambda: kubectl.exists("serviceaccount", "default", namespace)
    )


def test_deployment_gets_replicaset_and_pods(kubectl: Kubectl, namespace: str) -> None:
    kubectl.run(
        "create",
        "deployment",
        "web",
        f"--namespace={namespace}",
        "--image=registry.k8s.io/pause:3.10",
        "--replicas=2",
    )
    deployment = kubectl.get("deployment", "web", namespace)

    def replicaset() -> dict[str, Any] | None:
        for rs in kubectl.json("get", "replicasets", f"--namespace={namespace}")["items"]:
            owners = rs["metadata"].get("ownerReferences", [])
            if any(
                o["kind"] == "Deployment" and o["uid"] == deployment["metadata"]["uid"]
                for o in owners
            ):
                return dict(rs)
        return None

    rs = eventually("the Deployment's ReplicaSet", replicaset)
    assert rs["spec"]["replicas"] == 2

    def pods() -> list[dict[str, Any]] | None:
        items = kubectl.json("get", "pods", f"--namespace={namespace}", "-l", "app=web")["items"]
        return items if len(items) == 2 else None

    for pod in eventually("the ReplicaSet's two Pods", pods):
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    # No kubelet: nothing becomes available.
    assert kubectl.get("deployment", "web", namespace)["status"].get("availableReplicas", 0) == 0


def test_paginated_list(kubectl: Kubectl, namespace: str) -> None:
    names = [f"page-{i}" for i in range(5)]
    for name in names:
        kubectl.run(
            "create", "configmap", name, f"--namespace={namespace}", f"--from-literal=n={name}"
        )
    # --chunk-size=2 makes kubectl follow continue tokens (limit=2&continue=...).
    listed = kubectl.run(
        "get", "configmaps", f"--namespace={namespace}", "--chunk-size=2", "-o", "name", "-v=6"
    )
    got = sorted(line.removeprefix("configmap/") for line in listed.stdout.split())
    assert [n for n in got if n.startswith("page-")] == names
    assert "continue=" in listed.stderr  # the request log of -v=6 shows the follow-up pages
    raw = json.loads(
        kubectl.run("get", "--raw", f"/api/v1/namespaces/{namespace}/configmaps?limit=2").stdout
    )
    assert len(raw["items"]) == 2
    assert raw["metadata"]["continue"]
    assert raw["metadata"]["remainingItemCount"] >= 3


def _etcdctl(control_plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(DEBIAN_ETCDCTL), f"--endpoints={control_plane.storage_url}", *args]
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=False)


def test_apiserver_compacts_its_storage(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str
) -> None:
    status = _etcdctl(control_plane, "endpoint", "status", "-w", "json")
    assert status.returncode == 0, status.stderr
    start = int(json.loads(status.stdout)[0]["Status"]["header"]["revision"])
    key = f"/registry/configmaps/{namespace}/churn"
    kubectl.run("create", "configmap", "churn", f"--namespace={namespace}", "--from-literal=i=0")
    old = _etcdctl(control_plane, "get", key, "--rev", str(start), "--keys-only")
    assert old.returncode == 0, old.stderr

    def compacted() -> str | None:
        # Keep writing, so the compactor (every --etcd-compaction-interval) has revisions to drop.
        kubectl.run(
            "patch", "configmap", "churn", f"--namespace={namespace}", "-p", '{"data":{"i":"1"}}'
        )
        result = _etcdctl(control_plane, "get", key, "--rev", str(start), "--keys-only")
        return result.stderr if result.returncode != 0 else None

    error = eventually("the API server to compact past the start revision", compacted, timeout=90)
    assert "required revision has been compacted" in error
    # Everything keeps working on top of the compacted storage: writes, reads, watches.
    kubectl.run(
        "patch", "configmap", "churn", f"--namespace={namespace}", "-p", '{"data":{"i":"2"}}'
    )
    assert kubectl.get("configmap", "churn", namespace)["data"] == {"i": "2"}
    kubectl.run("create", "deployment", "after", f"--namespace={namespace}", "--image=pause")
    eventually(
        "a ReplicaSet created after the compaction",
        lambda: kubectl.json("get", "replicasets", f"--namespace={namespace}")["items"] or None,
    )


def _register_node(kubectl: Kubectl, name: str) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, "e2e.pyetcd.io/node": name},
            },
        }
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "registered by the e2e test",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
        }
    }
    kubectl.run(
        "patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )


def test_scheduler_binds_pod_to_registered_node(kubectl: Kubectl, namespace: str) -> None:
    node = f"e2e-node-{uuid.uuid4().hex[:6]}"
    _register_node(kubectl, node)
    try:
        eventually(
            "default ServiceAccount", lambda: kubectl.exists("serviceaccount", "default", namespace)
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "bound", "namespace": namespace},
            "spec": {
                "nodeSelector": {"e2e.pyetcd.io/node": node},
                # Whatever taints the node lifecycle controller puts on a node without a kubelet.
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}],
            },
        }
        kubectl.apply(pod)

        def bound() -> str | None:
            spec = kubectl.get("pod", "bound", namespace)["spec"]
            return spec.get("nodeName") or None

        assert eventually("the scheduler to bind the Pod", bound) == node
        conditions = {
            c["type"]: c for c in kubectl.get("pod", "bound", namespace)["status"]["conditions"]
        }
        assert conditions["PodScheduled"]["status"] == "True"
    finally:
        kubectl.run(
            "delete",
            "pod",
            "bound",
            f"--namespace={namespace}",
            "--grace-period=0",
            "--force",
            "--ignore-not-found",
        )
        kubectl.run("delete", "node", node, "--ignore-not-found")


@pytest.fixture(scope="session")
def crd(kubectl: Kubectl) -> str:
    kubectl.run("apply", "--server-side", "-f", str(CRD))
    name = "etcdclusters.etcd.pyetcd.io"

    def established() -> bool:
        conditions = kubectl.get("crd", name).get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    eventually("the CRD to be Established", established)
    # Discovery must serve the new resource before kubectl can map the kind.
    eventually(
        "discovery of etcdclusters",
        lambda: kubectl.run("get", "etcdclusters", "-A", check=False).returncode == 0,
    )
    return name


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_crd_accepts_example(kubectl: Kubectl, crd: str, namespace: str, example: Path) -> None:
    kubectl.run("create", f"--namespace={namespace}", "-f", str(example))
    name = kubectl.json("create", "--dry-run=client", "-f", str(example))["metadata"]["name"]
    stored = kubectl.get("etcdclusters", name, namespace)
    assert stored["kind"] == "EtcdCluster"
    # `kubectl get etcdclusters` uses the CRD's printer columns.
    table = kubectl.run("get", "etcdclusters", name, f"--namespace={namespace}").stdout
    assert name in table


@pytest.mark.parametrize("example", INVALID, ids=[p.stem for p in INVALID])
def test_crd_refuses_invalid_example(
    kubectl: Kubectl, crd: str, namespace: str, example: Path
) -> None:
    result = kubectl.run("create", f"--namespace={namespace}", "-f", str(example), check=False)
    assert result.returncode != 0, f"{example.name} was accepted: {result.stdout}"
    assert _expected(example) in result.stderr


@pytest.mark.parametrize(
    "old", INVALID_UPDATES, ids=[p.name.removesuffix(".old.yaml") for p in INVALID_UPDATES]
)
def test_crd_refuses_invalid_update(kubectl: Kubectl, crd: str, namespace: str, old: Path) -> None:
    new = old.with_name(old.name.replace(".old.yaml", ".new.yaml"))
    kubectl.run("apply", f"--namespace={namespace}", "-f", str(old))
    result = kubectl.run("apply", f"--namespace={namespace}", "-f", str(new), check=False)
    assert result.returncode != 0, (
        f"{new.name} was accepted as an update of {old.name}: {result.stdout}"
    )
    assert _expected(new) in result.stderr


def test_crd_accepts_forward_version_changes(kubectl: Kubectl, crd: str, namespace: str) -> None:
    """The real API server runs the version transition rule (Kubernetes' CEL strings library):
    patches forward and the next minor are accepted, one after the other."""

    def cluster(version: str) -> dict[str, object]:
        return {
            "apiVersion": "etcd.pyetcd.io/v1alpha1",
            "kind": "EtcdCluster",
            "metadata": {"name": "version-forward", "namespace": namespace},
            "spec": {"engine": "etcd", "version": version},
        }

    for version in ("3.4.23", "3.4.30", "v3.5.0", "3.5.17"):
        kubectl.apply(cluster(version))
        stored = kubectl.get("etcdclusters", "version-forward", namespace)
        assert stored["spec"]["version"] == version
    back = kubectl.run(
        "apply", f"--namespace={namespace}", "-f", "-",
        input=json.dumps(cluster("3.5.16")), check=False,
    )  # fmt: skip
    assert back.returncode != 0 and "version may only move forward" in back.stderr, back
