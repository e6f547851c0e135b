"""Keyspace analyses, end to end: a cluster with ``spec.backup`` and ``spec.analysis`` on the
built control plane, data planted through etcdctl from a client pod (a big prefix holding the
biggest value, a key written over and over, a lease holding no key), a backup on request, then
an analysis on request (``etcd.pyetcd.io/analyze``): the operator downloads the backup from the
S3 server of ``test_backups`` (moto), runs pyetcdutl analyze on it, records ``status.keyspace``
and stores the report next to the backup, where the harness reads it. The same annotation value
asks for nothing more; deleting the backup (its policy is Delete: the operator made it) takes
the report out of the bucket along with the backup.

With ``spec.analysis.writes`` the operator watches the live cluster for a window: a writer in
the client pod puts keys under a hot prefix four times as often as under a cold one, and
``status.keyspace.writes`` must name the hot prefix first and the cold one after it.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from e2e import test_backups
from e2e.chart import OperatorRelease
from e2e.etcdclusters import CLIENT_POD, client_endpoint
from e2e.kube import Json, Kubectl, PodExec, eventually
from e2e.test_backups import (
    CREDENTIALS,
    S3,
    annotate,
    credentials_secret,
    events_of,
    phase,
    store_of,
    triggered,
)
from e2e.test_operator import etcdctl_put, example, start_client, wait_available

pytestmark = pytest.mark.any_cluster

# The S3 server of the backup scenarios, for this module too (a module-scoped fixture).
s3 = test_backups.s3

ANALYZE_ANNOTATION = "etcd.pyetcd.io/analyze"
BIG_PREFIX = "/big/blob/"
BIG_KEYS = 4
HUGE_KEY = "/big/blob/huge"
HUGE_VALUE = 24 * 1024
HOT_KEY = "/hot/keys/counter"
HOT_WRITES = 12


def put(pod_exec: PodExec, namespace: str, cluster: str, key: str, value: str) -> None:
    eventually(
        f"etcdctl put {key}",
        lambda: etcdctl_put(pod_exec, namespace, cluster, key, value),
        timeout=60,
    )


def plant(pod_exec: PodExec, namespace: str, cluster: str) -> None:
    """What the analysis must find: the biggest value under the biggest prefix, a hot key, and
    a lease that holds no key."""
    for i in range(BIG_KEYS):
        put(pod_exec, namespace, cluster, f"{BIG_PREFIX}{i:02d}", f"{i}" * 4096)
    put(pod_exec, namespace, cluster, HUGE_KEY, "h" * HUGE_VALUE)
    for i in range(HOT_WRITES):
        put(pod_exec, namespace, cluster, HOT_KEY, str(i))
    grant = ["etcdctl", client_endpoint(cluster, namespace), "lease", "grant", "3600"]
    eventually(
        "etcdctl lease grant",
        lambda: pod_exec.exec(namespace, CLIENT_POD, grant).code == 0,
        timeout=60,
    )


def analysed_cluster(kubectl: Kubectl, namespace: str, s3: S3, **analysis: Any) -> tuple[str, str]:
    """The dev example with spec.backup to a new bucket and spec.analysis, Available."""
    bucket = s3.create_bucket(f"e2e-{uuid.uuid4().hex[:12]}")
    credentials_secret(kubectl, namespace, CREDENTIALS, s3.admin)
    manifest = example("etcdcluster-dev.yaml", namespace)
    cluster: str = manifest["metadata"]["name"]
    manifest["spec"]["backup"] = {"store": store_of(s3, bucket)}
    manifest["spec"]["analysis"] = analysis
    kubectl.apply(manifest)
    wait_available(kubectl, namespace, cluster, 1)
    return cluster, bucket


def keyspace(kubectl: Kubectl, namespace: str, cluster: str) -> Json:
    found: Json = (kubectl.get("etcdcluster", cluster, namespace).get("status") or {}).get(
        "keyspace"
    ) or {}
    return found


def ask(kubectl: Kubectl, namespace: str, cluster: str, value: str) -> None:
    kubectl.run("annotate", "etcdcluster", cluster, f"{ANALYZE_ANNOTATION}={value}",
                "--overwrite", f"--namespace={namespace}")  # fmt: skip


@pytest.mark.one_storage
@pytest.mark.timeout(600)
def test_an_analysis_on_request_records_the_keyspace_and_stores_the_report_beside_the_backup(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str, s3: S3
) -> None:
    cluster, bucket = analysed_cluster(kubectl, namespace, s3, top=10)
    start_client(kubectl, namespace)
    plant(pod_exec, namespace, cluster)

    # Nothing to read yet: no backup. An analysis asked for now fails saying so.
    ask(kubectl, namespace, cluster, "too-early")

    def ended(value: str) -> Json | None:
        found = keyspace(kubectl, namespace, cluster)
        run = found.get("lastRun") or {}
        done = found.get("lastRequest") == value and run.get("phase") in ("Succeeded", "Failed")
        return found if done else None

    early = eventually("the early analysis to end", lambda: ended("too-early"), 90, 2)
    assert (early["lastRun"]["phase"], early["lastRun"]["reason"]) == (
        "Failed",
        "NoSuccessfulBackup",
    ), early

    # A backup on request, then an analysis of it on request.
    annotate(kubectl, namespace, cluster, "for-the-analysis")
    backup = eventually(
        "the requested backup to succeed",
        lambda: next(
            (
                b
                for b in triggered(kubectl, namespace, cluster, "annotation")
                if phase(b) == "Succeeded"
            ),
            None,
        ),
        timeout=120,
        interval=2,
    )
    name = backup["metadata"]["name"]
    ask(kubectl, namespace, cluster, "first")
    found = eventually("the analysis to end", lambda: ended("first"), 180, 2)
    run = found["lastRun"]
    assert (run["phase"], run["trigger"], run["backup"]) == ("Succeeded", "Annotation", name), run
    assert found["backup"] == name
    assert found["revision"] >= backup["status"]["revision"]
    assert found["liveKeys"] >= BIG_KEYS + 2
    assert found["biggestKey"] == {"key": HUGE_KEY, "valueSize": HUGE_VALUE}
    assert found["hottestKey"] == {"key": HOT_KEY, "revisions": HOT_WRITES}
    assert found["leasesWithoutKeys"] == 1
    assert found["prefixes"][0]["prefix"] == BIG_PREFIX
    assert found["prefixes"][0]["liveKeys"] == BIG_KEYS + 1
    assert found["dbSize"] >= found["dbSizeInUse"] > 0
    reasons = [e["reason"] for e in events_of(kubectl, namespace, cluster)]
    assert "KeyspaceAnalyzed" in reasons and "KeyspaceAnalysisFailed" in reasons, reasons

    # The report: pyetcdutl's JSON, next to the backup in its bucket.
    backup_key = backup["status"]["location"].removeprefix(f"s3://{bucket}/")
    report_key = f"{backup_key}.keyspace.json"
    assert found["report"] == f"s3://{bucket}/{report_key}"
    report = json.loads(s3.client().get_object(Bucket=bucket, Key=report_key)["Body"].read())
    assert report["schemaVersion"] == 1
    assert report["options"] == {"separator": "/", "depth": 2, "top": 10}
    assert report["hotKeys"][0]["key"] == HOT_KEY
    assert report["totals"]["liveKeys"] == found["liveKeys"]

    # Deleting the backup (the operator made it: policy Delete) takes its report along.
    kubectl.run("delete", "etcdbackup", name, f"--namespace={namespace}", "--wait=true")
    listed = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents") or []]
    assert backup_key not in listed and report_key not in listed, listed


HOT_PREFIX = "/hot/writes/"
COLD_PREFIX = "/cold/writes/"


def write_for(pod_exec: PodExec, namespace: str, cluster: str, seconds: int) -> threading.Thread:
    """A writer in the client pod for ``seconds``: four puts under HOT_PREFIX (three keys) for
    one under COLD_PREFIX, over and over."""
    put = f"etcdctl {client_endpoint(cluster, namespace)} put"
    loop = (
        f"end=$(( $(date +%s) + {seconds} )); n=0; "
        "while [ $(date +%s) -lt $end ]; do "
        f"for i in 0 1 2 3; do {put} {HOT_PREFIX}k$(( (n + i) % 3 )) v >/dev/null; done; "
        f"{put} {COLD_PREFIX}k v >/dev/null; n=$((n + 1)); done"
    )
    thread = threading.Thread(
        target=pod_exec.exec,
        args=(namespace, CLIENT_POD, ["sh", "-c", loop]),
        kwargs={"timeout": seconds + 60},
        daemon=True,
    )
    thread.start()
    return thread


@pytest.mark.one_storage
@pytest.mark.timeout(420)
def test_writes_on_the_live_cluster_are_sampled_by_prefix(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str, s3: S3
) -> None:
    cluster, _ = analysed_cluster(kubectl, namespace, s3)
    start_client(kubectl, namespace)
    # Sampling turned on while the writer runs: its first window is due at once.
    writer = write_for(pod_exec, namespace, cluster, 150)
    kubectl.run(
        "patch", "etcdcluster", cluster, f"--namespace={namespace}", "--type=merge",
        "-p", json.dumps({"spec": {"analysis": {"writes": {"windowSeconds": 15,
                                                           "intervalSeconds": 60}}}}),
    )  # fmt: skip

    def sampled() -> Json | None:
        writes: Json = keyspace(kubectl, namespace, cluster).get("writes") or {}
        prefixes = [p["prefix"] for p in writes.get("prefixes") or []]
        return writes if prefixes[:2] == [HOT_PREFIX, COLD_PREFIX] else None

    writes = eventually("a window with the hot prefix first", sampled, timeout=180, interval=3)
    writer.join(timeout=200)
    hot, cold = writes["prefixes"][0]["writes"], writes["prefixes"][1]["writes"]
    assert hot >= 2 * cold > 0, writes
    assert writes["writes"] >= hot + cold
    assert writes["toRevision"] - writes["fromRevision"] >= hot + cold - 1, writes
    assert writes["windowSeconds"] >= 15
    assert writes["hottestKey"]["key"].startswith(HOT_PREFIX)
    # Turned off: the last window goes with it.
    kubectl.run(
        "patch", "etcdcluster", cluster, f"--namespace={namespace}", "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/analysis/writes"}]),
    )  # fmt: skip
    eventually(
        "status.keyspace.writes cleared",
        lambda: "writes" not in keyspace(kubectl, namespace, cluster),
        timeout=60,
        interval=2,
    )
