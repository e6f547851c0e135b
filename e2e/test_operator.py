"""The operator end to end: ``helm install`` the chart, ``kubectl apply`` the examples.

The operator runs as a pod of the chart's Deployment (in-cluster config, through the process
kubelet), and every assertion reads what a user would: the EtcdCluster's status and printer
columns, where its pods landed, and etcdctl through the client Service from another pod.
Deadlines through ``eventually``, never fixed sleeps.

Every scenario here is marked ``any_cluster``: ``pytest e2e --kubeconfig=PATH`` runs them on
that cluster (see e2e/README.md), so they exec through ``pod_exec`` and use images a real
cluster can pull.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_operator.components import pki

from e2e import etcdclusters
from e2e.chart import OPERATOR_IMAGE, OperatorRelease
from e2e.chart import wait_available as operator_available
from e2e.etcdclusters import CLIENT_POD, client_endpoint, client_pod
from e2e.kube import ExecResult, Kubectl, PodExec, condition, eventually
from e2e.test_kubelet import SSD_LABEL, wait_ready

pytestmark = pytest.mark.any_cluster

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
# "LAST BACKUP" is one column of two words.
PRINTER_COLUMNS = [
    "NAME", "REPLICAS", "READY", "VERSION", "LEADER", "PHASE", "LAST", "BACKUP", "AGE",
]  # fmt: skip
# kopf's finalizer, which the operator's versions with a per-cluster status timer made kopf add.
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"

Json = dict[str, Any]


def example(name: str, namespace: str) -> Json:
    manifest: Json = yaml.safe_load((EXAMPLES / name).read_text())
    manifest["metadata"]["namespace"] = namespace
    return manifest


def wait_available(
    kubectl: Kubectl, namespace: str, name: str, replicas: int, timeout: float = 240
) -> Json:
    """The cluster once Available with ``replicas`` healthy members and Ready pods."""

    def probe() -> Json | None:
        cluster: Json = kubectl.get("etcdcluster", name, namespace)
        return cluster if etcdclusters.available(cluster, replicas) else None

    try:
        result: Json = eventually(
            f"EtcdCluster {name} Available with {replicas} healthy members",
            probe,
            timeout=timeout,
            interval=1,
        )
    except AssertionError as err:
        cluster = kubectl.get("etcdcluster", name, namespace)
        raise AssertionError(f"{err}; status: {etcdclusters.describe(cluster)}") from None
    return result


def member_pods(kubectl: Kubectl, namespace: str, name: str) -> list[Json]:
    pods: list[Json] = kubectl.json(
        "get", "pods", f"--namespace={namespace}", "-l", f"app.kubernetes.io/instance={name}"
    )["items"]
    return pods


def start_client(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(client_pod(namespace))
    wait_ready(kubectl, namespace, CLIENT_POD, timeout=120)


def etcdctl_put(pod_exec: PodExec, namespace: str, name: str, key: str, value: str) -> bool:
    """``etcdctl put`` through the cluster's client Service, from the client pod."""
    argv = ["etcdctl", client_endpoint(name, namespace), "put", key, value]
    return pod_exec.exec(namespace, CLIENT_POD, argv).code == 0


def etcdctl_get(pod_exec: PodExec, namespace: str, name: str, key: str) -> str | None:
    """The value of ``key`` (decoded; ``""`` when absent), or None when etcdctl fails."""
    argv = ["etcdctl", client_endpoint(name, namespace), "get", key, "-w", "json"]
    got = pod_exec.exec(namespace, CLIENT_POD, argv)
    if got.code != 0:
        return None
    kvs = json.loads(got.stdout).get("kvs") or []
    assert len(kvs) <= 1, kvs
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else ""  # base64 in etcdctl's JSON


def etcdctl_reads_and_writes(
    kubectl: Kubectl, pod_exec: PodExec, namespace: str, name: str
) -> None:
    start_client(kubectl, namespace)
    eventually(
        "etcdctl put through the client Service",
        lambda: etcdctl_put(pod_exec, namespace, name, "greeting", "hello"),
    )
    assert etcdctl_get(pod_exec, namespace, name, "greeting") == "hello"


def member_list(pod_exec: PodExec, namespace: str, name: str) -> list[Json] | None:
    """etcd's member list through the client Service, from the client pod; None on failure."""
    argv = ["etcdctl", client_endpoint(name, namespace), "member", "list", "-w", "json"]
    result = pod_exec.exec(namespace, CLIENT_POD, argv)
    return list(json.loads(result.stdout)["members"]) if result.code == 0 else None


def voting_members(pod_exec: PodExec, namespace: str, name: str) -> list[str] | None:
    """The names of started, voting members (None while etcd lists a learner or an unstarted
    member, or does not answer)."""
    members = member_list(pod_exec, namespace, name)
    if members is None or any(m.get("isLearner") or not m.get("name") for m in members):
        return None
    return sorted(str(m["name"]) for m in members)


def test_helm_install_runs_the_operator_in_cluster(
    kubectl: Kubectl, operator: OperatorRelease
) -> None:
    name = operator_available(kubectl, operator)
    pod = kubectl.get("pod", name, operator.namespace)
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert condition(pod, "Ready") == "True"
    container = pod["spec"]["containers"][0]
    assert container["image"].startswith(f"{OPERATOR_IMAGE}:")
    # In-cluster config: no kubeconfig given, the service account's token instead.
    assert "KUBECONFIG" not in {e["name"] for e in container.get("env") or []}
    assert pod["spec"]["serviceAccountName"] == operator.deployment
    # The CRD is in no category: `kubectl delete all --all` must leave EtcdClusters alone.
    in_all = kubectl.run("api-resources", "--categories=all", "-o", "name").stdout.split()
    assert "etcdclusters.etcd.pyetcd.io" not in in_all
    assert "statefulsets.apps" in in_all  # the check itself works


def test_upstream_etcd_example_reaches_available(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str
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
    etcdctl_reads_and_writes(kubectl, pod_exec, namespace, name)
    defragments_on_request(kubectl, namespace, name, cluster["status"]["leader"])


def defragments_on_request(kubectl: Kubectl, namespace: str, name: str, leader: str) -> None:
    """An EtcdDefrag defragments every member, the leader last, records what each gave back,
    and is deleted after its ttlSecondsAfterFinished; one naming no cluster is Rejected."""
    request = {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdDefrag",
        "metadata": {"name": "defrag-now", "namespace": namespace},
        "spec": {"clusterName": name, "ttlSecondsAfterFinished": 10},
    }
    kubectl.apply(request)
    nowhere = {**request, "metadata": {"name": "defrag-nowhere", "namespace": namespace}}
    kubectl.apply({**nowhere, "spec": {"clusterName": "no-such-cluster"}})

    def ended(defrag: str) -> Json | None:
        found = kubectl.get("etcddefrag", defrag, namespace)
        status = found.get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed", "Rejected") else None

    done = eventually("the EtcdDefrag to end", lambda: ended("defrag-now"), timeout=120)
    assert (done["phase"], done["reason"]) == ("Succeeded", "Defragmented"), done
    records = done["members"]
    assert sorted(r["member"] for r in records) == [f"{name}-{i}" for i in range(3)], records
    assert all(r["trigger"] == "Request" and r["dbSizeAfter"] > 0 for r in records), records
    # The leader last: one member per pass, so its record is strictly the latest (RFC 3339
    # times of one format order as strings).
    last = max(r["time"] for r in records)
    assert [r["member"] for r in records if r["time"] == last] == [leader], records
    assert done["reclaimedBytes"] == sum(r["reclaimed"] for r in records)
    [complete] = done["conditions"]
    assert (complete["type"], complete["status"]) == ("Complete", "True")
    rejected = eventually("the orphan EtcdDefrag to end", lambda: ended("defrag-nowhere"))
    assert (rejected["phase"], rejected["reason"]) == ("Rejected", "ClusterNotFound"), rejected
    cluster = kubectl.get("etcdcluster", name, namespace)
    assert {m["member"] for m in cluster["status"]["defrag"]["members"]} == {
        r["member"] for r in records
    }
    eventually(
        "the ended EtcdDefrag deleted after its ttlSecondsAfterFinished",
        lambda: not kubectl.exists("etcddefrag", "defrag-now", namespace),
        timeout=90,
    )


def children(kubectl: Kubectl, namespace: str, name: str) -> dict[str, list[str]]:
    """Every object labelled as part of cluster ``name``, by kind, plus its claims by name."""
    found = kubectl.json(
        "get", "statefulsets,services,poddisruptionbudgets,networkpolicies,configmaps,pods",
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
        "NetworkPolicy": [name],  # on by the chart's default
        "Service": sorted([f"{name}-client", f"{name}-peer"]),
        "StatefulSet": [name],
    }


def test_pyetcd_dev_example_reaches_available(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str
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
    etcdctl_reads_and_writes(kubectl, pod_exec, namespace, name)


def endpoint_health(pod_exec: PodExec, namespace: str, endpoint: str) -> ExecResult:
    """``etcdctl endpoint health`` from the client pod of ``namespace``, with short deadlines:
    a connection the NetworkPolicy refuses is dropped (a timeout) or, through the Service,
    closed."""
    argv = ["etcdctl", endpoint, "--dial-timeout=2s", "--command-timeout=3s", "endpoint", "health"]
    return pod_exec.exec(namespace, CLIENT_POD, argv)


def reachable(pod_exec: PodExec, namespace: str, endpoints: list[str]) -> bool:
    return all(endpoint_health(pod_exec, namespace, e).code == 0 for e in endpoints)


def refused(pod_exec: PodExec, namespace: str, endpoints: list[str]) -> bool:
    return all(endpoint_health(pod_exec, namespace, e).code != 0 for e in endpoints)


def test_network_policy_admits_the_namespace_and_the_operator_only(
    kubectl: Kubectl,
    pod_exec: PodExec,
    operator: OperatorRelease,
    namespace: str,
    other_namespace: str,
) -> None:
    """The chart's default puts a NetworkPolicy on every cluster: a pod of the cluster's
    namespace reaches the members, through the client Service and directly; a pod of another
    namespace does neither, while the operator (in its own namespace) keeps the cluster
    Available. ``clients`` moves the admission to the namespaces listed, and the policy goes
    when turned off. (The multi-member scenarios run under the same default, so their members'
    peer traffic is admitted too.)"""
    manifest = example("etcdcluster-dev.yaml", namespace)
    name = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    kubectl.apply(client_pod(other_namespace))
    start_client(kubectl, namespace)
    wait_ready(kubectl, other_namespace, CLIENT_POD, timeout=120)
    # The operator saw the member healthy through the policy, applied before the StatefulSet.
    cluster = wait_available(kubectl, namespace, name, 1)
    assert cluster["status"]["networkPolicy"] == name
    policy = kubectl.get("networkpolicy", name, namespace)
    assert policy["metadata"]["ownerReferences"][0]["uid"] == cluster["metadata"]["uid"]
    (pod,) = member_pods(kubectl, namespace, name)
    endpoints = [
        client_endpoint(name, namespace),
        f"--endpoints=http://{pod['status']['podIP']}:2379",
    ]

    eventually(
        "the cluster's namespace reaches it", lambda: reachable(pod_exec, namespace, endpoints)
    )
    # The kubelet's filters follow the policy within seconds of the member's start; once
    # refused, refused again (not a slow first connection).
    eventually(
        "another namespace refused",
        lambda: refused(pod_exec, other_namespace, endpoints),
        timeout=30,
    )
    assert refused(pod_exec, other_namespace, endpoints)
    assert reachable(pod_exec, namespace, endpoints)
    wait_available(kubectl, namespace, name, 1)

    clients = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other_namespace}}}
    ]
    patch: Json = {"spec": {"networkPolicy": {"clients": clients}}}
    kubectl.run(
        "patch", "etcdcluster", name, f"--namespace={namespace}", "--type=merge",
        f"--patch={json.dumps(patch)}",
    )  # fmt: skip
    eventually(
        "the namespace listed in clients reaches it",
        lambda: reachable(pod_exec, other_namespace, endpoints),
    )
    # Listing clients replaces the default: the cluster's own namespace is no longer admitted.
    eventually("its own namespace refused", lambda: refused(pod_exec, namespace, endpoints))

    patch = {"spec": {"networkPolicy": {"enabled": False}}}
    kubectl.run(
        "patch", "etcdcluster", name, f"--namespace={namespace}", "--type=merge",
        f"--patch={json.dumps(patch)}",
    )  # fmt: skip
    eventually(
        "the policy deleted",
        lambda: not kubectl.exists("networkpolicy", name, namespace),
    )
    eventually("open again", lambda: reachable(pod_exec, namespace, endpoints))
    cluster = wait_available(kubectl, namespace, name, 1)
    assert cluster["status"].get("networkPolicy") is None


def test_tls_example_serves_only_clients_with_its_certificate(
    request: pytest.FixtureRequest,
    kubectl: Kubectl,
    pod_exec: PodExec,
    operator: OperatorRelease,
    namespace: str,
) -> None:
    """spec.tls Generated on both planes: the operator's CAs and certificates in Secrets the
    cluster owns, the members on https (peers too), Available, TLSReady with the expiry in the
    status; etcdctl with the client certificate Secret mounted reads, writes and checks every
    member by its own name; without the certificate it is refused. On the etcd plane the
    members run upstream etcd, on the pyetcd plane pyetcd: the same flags, the same files.

    The example has spec.auth too: the operator made user root (password in the Secret
    <name>-root-auth, created by the operator) and turned etcd's auth on (AuthReady); etcdctl
    with root's password works, and a put without a user is refused as etcd refuses it."""
    manifest = example("etcdcluster-tls.yaml", namespace)
    name = manifest["metadata"]["name"]
    # The plane's own storage engine, as the replacement scenarios choose it; pyetcd on a
    # given cluster (no plane of ours).
    callspec = getattr(request.node, "callspec", None)
    storage = callspec.params.get("control_plane") if callspec is not None else None
    engine = "etcd" if storage == "etcd" else "pyetcd"
    manifest["spec"]["engine"] = engine
    kubectl.apply(manifest)
    cluster = wait_available(kubectl, namespace, name, 3)
    images = {p["spec"]["containers"][0]["image"] for p in member_pods(kubectl, namespace, name)}
    want = "gcr.io/etcd-development/etcd:" if engine == "etcd" else "ghcr.io/pyetcd/pyetcd:"
    assert all(i.startswith(want) for i in images), images
    assert condition(cluster, "TLSReady") == "True", etcdclusters.describe(cluster)
    # Available comes with auth still being turned on in the same pass or the next.
    eventually(
        "AuthReady True",
        lambda: condition(kubectl.get("etcdcluster", name, namespace), "AuthReady") == "True",
    )
    cluster = kubectl.get("etcdcluster", name, namespace)
    assert cluster["status"]["auth"] == {"enabled": True, "rootSecretName": f"{name}-root-auth"}
    root_secret = kubectl.get("secret", f"{name}-root-auth", namespace)
    assert root_secret["type"] == "kubernetes.io/basic-auth"
    assert root_secret["metadata"]["ownerReferences"][0]["name"] == name
    assert base64.b64decode(root_secret["data"]["username"]) == b"root"
    password = base64.b64decode(root_secret["data"]["password"]).decode()
    tls_status = cluster["status"]["tls"]
    assert {c["secret"] for c in tls_status["certificates"]} == {
        f"{name}-{role}"
        for role in ("client-ca", "server-tls", "client-tls", "peer-ca", "peer-tls")
    }
    assert tls_status["notAfter"] and tls_status["lastRenewal"]
    members = cluster["status"]["members"]
    assert all(m["clientURL"].startswith("https://") for m in members), members
    assert all(m["peerURL"].startswith("https://") for m in members), members
    secret = kubectl.get("secret", f"{name}-client-tls", namespace)
    assert secret["type"] == "kubernetes.io/tls"
    assert sorted(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]
    assert secret["metadata"]["ownerReferences"][0]["name"] == name

    kubectl.apply(client_pod(namespace, tls_secret=f"{name}-client-tls"))
    wait_ready(kubectl, namespace, CLIENT_POD, timeout=120)
    endpoint = client_endpoint(name, namespace, secure=True)

    def etcdctl(*args: str, cert: bool = True, user: bool = True) -> ExecResult:
        who = [f"--user=root:{password}"] if user else []
        argv = ["etcdctl", endpoint, *etcdclusters.tls_flags(cert=cert), *who, *args]
        return pod_exec.exec(namespace, CLIENT_POD, argv)

    eventually("etcdctl put over TLS", lambda: etcdctl("put", "greeting", "secure").code == 0)
    got = etcdctl("get", "greeting", "--print-value-only")
    assert (got.code, got.stdout.strip()) == (0, "secure"), got
    # Every member by the client URL it advertises (its own DNS name): the certificate's
    # names cover them all.
    health = etcdctl("endpoint", "health", "--cluster", "-w", "json")
    assert health.code == 0, health
    checked = json.loads(health.stdout)
    assert len(checked) == 3 and all(h["health"] for h in checked), checked
    # Without a password etcd takes the client certificate's CN as the user (etcd's
    # AuthInfoFromTLS); the client Secret's CN is no etcd user, so it may do nothing.
    anonymous = etcdctl("put", "greeting", "anyone", "--command-timeout=5s", user=False)
    assert anonymous.code != 0 and "etcdserver: permission denied" in anonymous.stderr, anonymous
    refused = etcdctl("get", "greeting", "--dial-timeout=3s", "--command-timeout=5s", cert=False)
    assert refused.code != 0, refused
    plain = pod_exec.exec(
        namespace,
        CLIENT_POD,
        ["etcdctl", client_endpoint(name, namespace), "get", "greeting", "--command-timeout=5s"],
    )
    assert plain.code != 0, plain
    certificate_issued_anew_is_served_without_a_restart(
        kubectl, pod_exec, operator, namespace, name
    )


def tls_secret(name: str, namespace: str, pair: pki.KeyPair, ca: bytes) -> Json:
    data = {"tls.crt": pair.cert, "tls.key": pair.key, "ca.crt": ca}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


@pytest.mark.one_storage  # the Secrets' checks are the operator's: no storage plays a part
def test_tls_from_the_users_secrets_waits_for_them_and_then_serves(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str
) -> None:
    """source Secret: a cluster whose Secrets do not exist yet says so (TLSReady False,
    SecretMissing, naming them, and a Warning event) and is not created; once they exist it
    comes up on them, and etcdctl with the user's own client certificate works."""
    manifest = example("etcdcluster-dev.yaml", namespace)
    name = manifest["metadata"]["name"]
    manifest["spec"]["tls"] = {
        "client": {"source": "Secret", "serverSecretName": "srv", "clientSecretName": "cli"}
    }
    kubectl.apply(manifest)

    def missing() -> Json | None:
        cluster: Json = kubectl.get("etcdcluster", name, namespace)
        ready = next(
            (
                c
                for c in (cluster.get("status") or {}).get("conditions") or []
                if c["type"] == "TLSReady"
            ),
            None,
        )
        return ready if ready is not None and ready["reason"] == "SecretMissing" else None

    ready = eventually("TLSReady False, SecretMissing", missing, timeout=60)
    assert ready["status"] == "False"
    assert "Server Secret srv does not exist" in ready["message"], ready
    assert "Client Secret cli does not exist" in ready["message"], ready
    assert not kubectl.exists("statefulset", name, namespace)

    def warned() -> list[Json] | None:
        # The event is posted after the status of the same pass: it may trail the condition.
        items: list[Json] = kubectl.json(
            "get", "events", f"--namespace={namespace}", "--field-selector",
            f"involvedObject.name={name},reason=TLSNotReady",
        )["items"]  # fmt: skip
        return items or None

    events = eventually("a TLSNotReady event", warned, timeout=30)
    assert events[0]["type"] == "Warning", events

    now = datetime.now(UTC)
    ca = pki.new_ca("my CA", now)
    server = pki.CertificateRequest(
        "srv",
        dns_names=(
            f"*.{name}-peer.{namespace}.svc.cluster.local",
            f"{name}-client.{namespace}.svc.cluster.local",
        ),
        server=True,
    )
    kubectl.apply(tls_secret("srv", namespace, pki.issue(server, now, ca), ca.cert))
    client = pki.CertificateRequest("my-app", client=True)
    kubectl.apply(tls_secret("cli", namespace, pki.issue(client, now, ca), ca.cert))
    cluster = wait_available(kubectl, namespace, name, 1)
    assert condition(cluster, "TLSReady") == "True", etcdclusters.describe(cluster)
    assert not kubectl.exists("secret", f"{name}-client-ca", namespace)  # nothing generated

    kubectl.apply(client_pod(namespace, tls_secret="cli"))
    wait_ready(kubectl, namespace, CLIENT_POD, timeout=120)
    argv = ["etcdctl", client_endpoint(name, namespace, secure=True), *etcdclusters.tls_flags()]
    eventually(
        "etcdctl put with the user's client certificate",
        lambda: pod_exec.exec(namespace, CLIENT_POD, [*argv, "put", "mine", "yes"]).code == 0,
    )


# Run in the operator's pod (it reaches the members, as its passes do; its image has Python):
# the SHA-256 of the certificate a member serves, with the client certificate given in argv.
SERVED_CERTIFICATE = """
import base64, hashlib, os, socket, ssl, sys
ca, cert, key = (base64.b64decode(a) for a in sys.argv[1:4])
def path(data):
    fd = os.memfd_create("pem")
    os.write(fd, data)
    return f"/proc/self/fd/{fd}"
context = ssl.create_default_context(cadata=ca.decode())
context.load_cert_chain(path(cert), path(key))
with socket.create_connection((sys.argv[4], 2379), timeout=5) as raw:
    with context.wrap_socket(raw, server_hostname=sys.argv[4]) as conn:
        print(hashlib.sha256(conn.getpeercert(binary_form=True)).hexdigest())
"""


def certificate_issued_anew_is_served_without_a_restart(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str, name: str
) -> None:
    """The members' serving certificate Secret deleted: the operator issues it anew from the
    same CA, the kubelet refreshes the mounted files, and every member serves the new
    certificate from its next handshake: no member restarts, clients keep working."""
    operator_pod = operator_available(kubectl, operator)
    client = kubectl.get("secret", f"{name}-client-tls", namespace)["data"]
    hosts = [f"{name}-{i}.{name}-peer.{namespace}.svc.cluster.local" for i in range(3)]

    def served(host: str) -> str | None:
        argv = ["python", "-c", SERVED_CERTIFICATE, client["ca.crt"], client["tls.crt"]]
        got = pod_exec.exec(operator.namespace, operator_pod, [*argv, client["tls.key"], host])
        return got.stdout.strip() if got.code == 0 else None

    def fingerprint(secret: Json) -> str:
        pem = base64.b64decode(secret["data"]["tls.crt"]).decode()
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()

    old = kubectl.get("secret", f"{name}-server-tls", namespace)
    assert [served(h) for h in hosts] == [fingerprint(old)] * 3
    restarts = {
        p["metadata"]["name"]: (
            p["metadata"]["uid"],
            p["status"]["containerStatuses"][0]["restartCount"],
        )
        for p in member_pods(kubectl, namespace, name)
    }
    kubectl.run("delete", "secret", f"{name}-server-tls", f"--namespace={namespace}")

    def issued() -> Json | None:
        if not kubectl.exists("secret", f"{name}-server-tls", namespace):
            return None
        secret: Json = kubectl.get("secret", f"{name}-server-tls", namespace)
        return secret if secret["data"]["tls.crt"] != old["data"]["tls.crt"] else None

    new = eventually("the serving certificate issued anew", issued, timeout=90)
    assert new["data"]["ca.crt"] == old["data"]["ca.crt"]  # the same CA: trusted throughout
    want = fingerprint(new)
    eventually(
        "every member serving the new certificate",
        lambda: all(served(h) == want for h in hosts),
        timeout=90,
        interval=2,
    )
    after = {
        p["metadata"]["name"]: (
            p["metadata"]["uid"],
            p["status"]["containerStatuses"][0]["restartCount"],
        )
        for p in member_pods(kubectl, namespace, name)
    }
    assert after == restarts  # the same pods, no container restarted
    wait_available(kubectl, namespace, name, 3)


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


def scale_operator(kubectl: Kubectl, operator: OperatorRelease, replicas: int) -> None:
    kubectl.run(
        "scale", "deployment", operator.deployment, f"--replicas={replicas}",
        f"--namespace={operator.namespace}",
    )  # fmt: skip


def operator_pods(kubectl: Kubectl, operator: OperatorRelease) -> list[str]:
    pods = kubectl.json(
        "get", "pods", f"--namespace={operator.namespace}", "-l", operator.selector
    )["items"]  # fmt: skip
    return [str(p["metadata"]["name"]) for p in pods]


def test_a_cluster_needs_no_operator_to_be_deleted(
    kubectl: Kubectl, operator: OperatorRelease, namespace: str
) -> None:
    """No finalizer: created with kopf's finalizer on it (as clusters of operator versions with a
    status timer carry it), the cluster loses it as soon as the operator sees it; then, with
    the operator scaled to zero, deleting the cluster completes at once and the garbage
    collector removes its children (the claims too: the StatefulSet's retention policy)."""
    manifest = example("etcdcluster-dev.yaml", namespace)  # volumeRetention: Delete
    manifest["metadata"]["finalizers"] = [KOPF_FINALIZER]
    name = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    wait_available(kubectl, namespace, name, 1)

    def finalizers() -> list[str]:
        meta = kubectl.get("etcdcluster", name, namespace)["metadata"]
        return list(meta.get("finalizers") or [])

    eventually("kopf's finalizer removed", lambda: finalizers() == [], timeout=60)
    assert children(kubectl, namespace, name) == expected_children(name, 1)

    scale_operator(kubectl, operator, 0)
    try:
        eventually("no operator pod", lambda: operator_pods(kubectl, operator) == [], timeout=120)
        kubectl.run("delete", "etcdcluster", name, f"--namespace={namespace}", "--wait=false")
        eventually(
            f"EtcdCluster {name} deleted with no operator running",
            lambda: not kubectl.exists("etcdcluster", name, namespace),
            timeout=30,
        )
        eventually(
            f"every child of {name} collected",
            lambda: children(kubectl, namespace, name) == {},
            timeout=120,
        )
        assert operator_pods(kubectl, operator) == []  # all of it without an operator
    finally:
        scale_operator(kubectl, operator, 1)
        operator_available(kubectl, operator)


def test_operator_restarted_mid_creation_finishes_without_duplicates(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str
) -> None:
    first = operator_available(kubectl, operator)
    manifest = example("etcdcluster-etcd.yaml", namespace)
    name = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    # Mid-creation: as soon as the operator has started on the cluster (its StatefulSet exists).
    eventually("the operator to start creating", lambda: kubectl.exists("sts", name, namespace))
    kubectl.run(
        "delete", "pod", first, f"--namespace={operator.namespace}", "--wait=false"
    )  # fmt: skip

    def replacement() -> str | None:
        pods = kubectl.json(
            "get", "pods", f"--namespace={operator.namespace}", "-l", operator.selector
        )["items"]
        ready = [
            str(p["metadata"]["name"])
            for p in pods
            if condition(p, "Ready") == "True" and not p["metadata"].get("deletionTimestamp")
        ]
        return ready[0] if len(ready) == 1 and ready[0] != first else None

    eventually("a new operator pod Ready", replacement, timeout=120)
    cluster = wait_available(kubectl, namespace, name, 3)
    assert children(kubectl, namespace, name) == expected_children(name, 3)
    assert len({m["id"] for m in cluster["status"]["members"]}) == 3
    # etcd itself: exactly three members, none added twice.
    start_client(kubectl, namespace)
    members = eventually("etcdctl member list", lambda: member_list(pod_exec, namespace, name))
    assert sorted(m["name"] for m in members) == [f"{name}-{i}" for i in range(3)]


def expected_error(path: Path) -> str:
    match = re.search(r"^# expect: (.+)$", path.read_text(), re.M)
    assert match, f"{path} has no '# expect:' line"
    return match.group(1).strip()


def test_invalid_examples_are_refused_and_nothing_is_created(
    kubectl: Kubectl, operator: OperatorRelease, namespace: str
) -> None:
    """With the CRD as the chart installs it: each invalid example is refused by the API server
    with its message, and neither the API server nor the operator creates anything for it."""
    names = []
    for path in INVALID:
        manifest: Json = yaml.safe_load(path.read_text())
        names.append(manifest["metadata"]["name"])
        result = kubectl.run("apply", f"--namespace={namespace}", "-f", str(path), check=False)
        assert result.returncode != 0, f"{path.name} was accepted: {result.stdout}"
        assert expected_error(path) in result.stderr, (path.name, result.stderr)
    # A valid cluster after them, as a barrier: once the operator has brought it up, it has
    # seen every event there was to see in this namespace.
    manifest = example("etcdcluster-dev.yaml", namespace)
    valid = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    wait_available(kubectl, namespace, valid, 1)
    clusters = kubectl.json("get", "etcdclusters", f"--namespace={namespace}")["items"]
    assert [c["metadata"]["name"] for c in clusters] == [valid]
    created = kubectl.json(
        "get", "statefulsets,services,poddisruptionbudgets,networkpolicies,configmaps,pods,pvc",
        f"--namespace={namespace}",
    )["items"]  # fmt: skip
    for item in created:
        assert not any(item["metadata"]["name"].startswith(n) for n in names), item["metadata"]
    events = kubectl.json("get", "events", f"--namespace={namespace}")["items"]
    involved = {e["involvedObject"].get("name") for e in events}
    assert not involved & set(names), sorted(involved & set(names))


def full_condition(obj: Json, kind: str) -> Json | None:
    """Condition ``kind`` of ``obj`` whole (status, reason, message), else None."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return None


def ssd_nodes(kubectl: Kubectl) -> int:
    """Schedulable nodes labelled as SSD-backed: where members may run by default."""
    nodes = kubectl.json("get", "nodes")["items"]
    return sum(
        1
        for n in nodes
        if n["metadata"].get("labels", {}).get(SSD_LABEL) == "ssd"
        and not n["spec"].get("unschedulable")
    )


def scale_to(kubectl: Kubectl, pod_exec: PodExec, namespace: str, name: str, replicas: int) -> None:
    """``kubectl scale`` the cluster, then: Available with ``replicas`` healthy voting members,
    not Degraded, and etcd's member list, the status and the pods agreeing."""
    kubectl.run("scale", "etcdcluster", name, f"--replicas={replicas}", f"-n={namespace}")

    def settled() -> Json | None:
        # Done: no longer Progressing. Available with every member healthy is not enough: a
        # learner that has started but that etcd does not let be promoted yet (it lags the
        # leader) is healthy too, and a scale-in ends with the removed members' claims.
        cluster: Json = kubectl.get("etcdcluster", name, namespace)
        done = (
            etcdclusters.available(cluster, replicas)
            and condition(cluster, "Degraded") == "False"
            and condition(cluster, "Progressing") == "False"
        )
        return cluster if done else None

    try:
        cluster = eventually(
            f"{name} Available with {replicas} members, not Degraded, not Progressing",
            settled,
            timeout=420,
        )
    except AssertionError as err:
        now = kubectl.get("etcdcluster", name, namespace)
        raise AssertionError(f"{err}; status: {etcdclusters.describe(now)}") from None
    want = [f"{name}-{i}" for i in range(replicas)]
    assert sorted(m["name"] for m in cluster["status"]["members"]) == want
    assert not any(m.get("learner") for m in cluster["status"]["members"])
    assert cluster["status"]["replicas"] == replicas
    assert cluster["status"]["phase"] == "Running"
    eventually(
        f"etcdctl member list with {want}",
        lambda: voting_members(pod_exec, namespace, name) == want,
        timeout=60,
    )
    pods = sorted(p["metadata"]["name"] for p in member_pods(kubectl, namespace, name))
    assert pods == want


# One plane: scaling is the operator's; the etcd plane deletes claims in the replacements.
@pytest.mark.one_storage("pyetcd")
def test_pyetcd_cluster_scales_out_and_in(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str
) -> None:
    """1 -> 3 -> (one more than there are SSD nodes) -> 3 -> 1 members through the scale
    subresource, as ``kubectl scale`` does it: the operator adds (as learners, then promotes)
    and removes one member at a time, and etcd's own member list agrees with the status at
    each end. The member that no node can take (required anti-affinity, SSD nodes only) makes
    the cluster Degraded with reason MemberUnschedulable and a Warning event, both naming the
    pod with the scheduler's message; scaling back removes it and clears the condition."""
    manifest = example("etcdcluster-dev.yaml", namespace)
    # SSD nodes only (the default placement; the example runs anywhere): a member beyond their
    # number cannot be placed, as members keep to distinct nodes.
    manifest["spec"]["storage"]["placement"] = {"mode": "Required"}
    name = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    wait_available(kubectl, namespace, name, 1)
    etcdctl_reads_and_writes(kubectl, pod_exec, namespace, name)

    scale_to(kubectl, pod_exec, namespace, name, 3)

    beyond = ssd_nodes(kubectl) + 1
    assert beyond > 3, "the scenario needs at least 3 SSD nodes"
    if beyond <= 9:  # spec.replicas' maximum
        kubectl.run("scale", "etcdcluster", name, f"--replicas={beyond}", f"-n={namespace}")
        unplaced = f"{name}-{beyond - 1}"

        def unschedulable() -> tuple[Json, str] | None:
            """The Degraded condition once it names the pod with the scheduler's message."""
            if not kubectl.exists("pod", unplaced, namespace):
                return None
            scheduled = full_condition(kubectl.get("pod", unplaced, namespace), "PodScheduled")
            if scheduled is None or scheduled.get("reason") != "Unschedulable":
                return None
            cluster = kubectl.get("etcdcluster", name, namespace)
            degraded = full_condition(cluster, "Degraded") or {}
            line = f"pod {unplaced} cannot be scheduled: {scheduled['message']}"
            if (degraded.get("status"), degraded.get("reason")) != ("True", "MemberUnschedulable"):
                return None
            return (cluster, line) if line in degraded.get("message", "") else None

        cluster, line = eventually(
            f"Degraded MemberUnschedulable naming {unplaced}", unschedulable, timeout=420
        )
        assert cluster["status"]["phase"] == "Degraded"
        assert condition(cluster, "Available") == "True"  # the members that run are fine

        def warned() -> list[str] | None:
            found = kubectl.json(
                "get", "events", f"--namespace={namespace}", "--field-selector",
                f"involvedObject.name={name},reason=MemberUnschedulable",
            )["items"]  # fmt: skip
            messages = [f"{e['type']}: {e['message']}" for e in found]
            return messages if f"Warning: {line}" in messages else None

        eventually(f"a Warning MemberUnschedulable event: {line}", warned, timeout=60)

        scale_to(kubectl, pod_exec, namespace, name, 3)

    scale_to(kubectl, pod_exec, namespace, name, 1)
    # The data written at one member survived every change.
    got = pod_exec.exec(
        namespace, CLIENT_POD,
        ["etcdctl", client_endpoint(name, namespace), "get", "greeting", "--print-value-only"],
    )  # fmt: skip
    assert got.stdout == "hello\n", got.stderr
