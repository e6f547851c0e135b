"""Backups, end to end: EtcdBackup objects on the built control plane, streamed by the operator
from a member of a real cluster into a real S3 server (moto in server mode, on loopback, which
the operator's process pod reaches as any S3 endpoint), with credentials from a Secret.

A backup succeeds with everything its status promises (location, sizes, sha256, revision,
member, cluster id) and the stored object holds the keys written before it (the cluster serves
clients over TLS only: the operator streams with its client certificate); deleting a backup
whose policy is Delete removes the stored object. Failures end ``Failed`` with the cause in the
message and a Warning event, never with a credential in either: a user without permission, a
bucket that does not exist, a Secret that does not exist. A backup of a cluster that does not
exist is Rejected. An ended backup with ``ttlSecondsAfterFinished`` goes away by itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import zstandard

from e2e import etcdclusters
from e2e.chart import OperatorRelease
from e2e.etcdclusters import CLIENT_POD, client_endpoint, client_pod
from e2e.kube import Json, Kubectl, PodExec, eventually
from e2e.kubelet.services import HOST_PORT_ANNOTATION
from e2e.test_kubelet import wait_ready
from e2e.test_operator import etcdctl_put, example, start_client, wait_available
from tools.s3server import S3Server, S3ServerError, moto_server

pytestmark = pytest.mark.any_cluster

CREDENTIALS = "s3-credentials"
ENDED = ("Succeeded", "Failed", "Rejected")


S3_NAMESPACE = "e2e-s3"
S3_SERVICE_PORT = 80


@dataclass(frozen=True)
class S3:
    """The S3 server: the harness reaches it on loopback, pods through a Service."""

    server: S3Server
    endpoint: str  # as the operator's pod reaches it

    @property
    def admin(self) -> Any:
        return self.server.admin

    @property
    def nobody(self) -> Any:
        return self.server.nobody

    def client(self) -> Any:
        return self.server.client()

    def create_bucket(self, name: str) -> str:
        return self.server.create_bucket(name)


def s3_service(port: int) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "s3",
            "namespace": S3_NAMESPACE,
            "annotations": {HOST_PORT_ANNOTATION: str(port)},
        },
        "spec": {"ports": [{"name": "http", "port": S3_SERVICE_PORT, "protocol": "TCP"}]},
    }


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, kubectl: Kubectl) -> Iterator[S3]:
    """moto's S3 server on the host's loopback for the scenarios of this module, and the
    Service ``s3.e2e-s3`` through which the operator's pod reaches it."""
    try:
        with moto_server(tmp_path_factory.mktemp("s3")) as server:
            port = int(server.url.rsplit(":", 1)[1])
            kubectl.run("create", "namespace", S3_NAMESPACE, check=False)
            kubectl.apply(s3_service(port))
            yield S3(server, f"http://s3.{S3_NAMESPACE}.svc.cluster.local:{S3_SERVICE_PORT}")
            kubectl.run("delete", "service", "s3", f"--namespace={S3_NAMESPACE}", check=False)
    except S3ServerError as err:
        pytest.fail(str(err), pytrace=False)


def credentials_secret(kubectl: Kubectl, namespace: str, name: str, access: Any) -> None:
    kubectl.run(
        "create", "secret", "generic", name, f"--namespace={namespace}",
        f"--from-literal=accessKeyId={access.access_key_id}",
        f"--from-literal=secretAccessKey={access.secret_access_key}",
    )  # fmt: skip


def backup_manifest(namespace: str, name: str, cluster: str, store: Json, **spec: Any) -> Json:
    return {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdBackup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterName": cluster, "store": store, **spec},
    }


def store_of(s3: S3, bucket: str, secret: str = CREDENTIALS) -> Json:
    return {
        "bucket": bucket,
        "endpoint": s3.endpoint,
        "forcePathStyle": True,
        "credentialsSecret": secret,
    }


def wait_ended(kubectl: Kubectl, namespace: str, name: str, timeout: float = 120) -> Json:
    def ended() -> Json | None:
        backup: Json = kubectl.get("etcdbackup", name, namespace)
        return backup if (backup.get("status") or {}).get("phase") in ENDED else None

    try:
        result: Json = eventually(f"EtcdBackup {name} to end", ended, timeout=timeout, interval=1)
    except AssertionError as err:
        status = kubectl.get("etcdbackup", name, namespace).get("status")
        raise AssertionError(f"{err}; status: {status}") from None
    return result


def events_of(kubectl: Kubectl, namespace: str, name: str) -> list[Json]:
    found: list[Json] = kubectl.json(
        "get", "events", f"--namespace={namespace}", f"--field-selector=involvedObject.name={name}"
    )["items"]
    return found


def test_a_backup_streams_a_member_into_s3_and_its_deletion_removes_it(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str, s3: S3
) -> None:
    manifest = example("etcdcluster-dev.yaml", namespace)
    cluster = manifest["metadata"]["name"]
    # Client TLS: the operator streams the snapshot over https with its client certificate.
    manifest["spec"]["tls"] = {"client": {"source": "Generated"}}
    kubectl.apply(manifest)
    wait_available(kubectl, namespace, cluster, 1)
    kubectl.apply(client_pod(namespace, tls_secret=f"{cluster}-client-tls"))
    wait_ready(kubectl, namespace, CLIENT_POD, timeout=120)
    put = [
        "etcdctl",
        client_endpoint(cluster, namespace, secure=True),
        *etcdclusters.tls_flags(),
        "put",
        "backed-up",
        "value-in-the-backup",
    ]
    eventually(
        "etcdctl put before the backup",
        lambda: pod_exec.exec(namespace, CLIENT_POD, put).code == 0,
    )
    bucket = s3.create_bucket(f"e2e-{uuid.uuid4().hex[:12]}")
    credentials_secret(kubectl, namespace, CREDENTIALS, s3.admin)
    kubectl.apply(
        backup_manifest(namespace, "first", cluster, store_of(s3, bucket), deletionPolicy="Delete")
    )
    backup = wait_ended(kubectl, namespace, "first")
    status = backup["status"]
    assert status["phase"] == "Succeeded", status
    key = f"{namespace}/{cluster}/first.db.zst"
    assert status["location"] == f"s3://{bucket}/{key}"
    assert status["member"] == f"{cluster}-0"
    assert status["revision"] > 1 and re.fullmatch(r"[0-9a-f]+", status["clusterID"])
    assert status["compression"] == "zstd" and status["encrypted"] is False
    assert [c["type"] for c in status["conditions"]] == ["Complete"]
    assert status["startedAt"] <= status["completedAt"]

    # The stored object is the snapshot etcd streamed: its sha256 and size as the status says,
    # and the key written before the backup is in it.
    stored = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(stored) == status["sizeBytes"]
    snapshot = zstandard.ZstdDecompressor().decompressobj().decompress(stored)
    assert len(snapshot) == status["snapshotSizeBytes"]
    assert hashlib.sha256(snapshot).hexdigest() == status["sha256"]
    assert hashlib.sha256(snapshot[:-32]).digest() == snapshot[-32:]  # etcd's own trailer
    assert b"backed-up" in snapshot and b"value-in-the-backup" in snapshot

    reasons = [e["reason"] for e in events_of(kubectl, namespace, "first")]
    assert "BackupSucceeded" in reasons, reasons

    # Printer columns: what `kubectl get etcdbackups` shows.
    table = kubectl.run("get", "etcdbackups", f"--namespace={namespace}").stdout.splitlines()
    assert table[0].split() == ["NAME", "CLUSTER", "PHASE", "REVISION", "SIZE", "AGE"]
    assert table[1].split()[:3] == ["first", cluster, "Succeeded"]

    # deletionPolicy Delete: the stored backup goes with the object.
    kubectl.run("delete", "etcdbackup", "first", f"--namespace={namespace}", "--wait=true")
    listed = s3.client().list_objects_v2(Bucket=bucket).get("Contents") or []
    assert listed == [], listed


def test_failed_backups_say_why_without_credentials_and_expire(
    kubectl: Kubectl, operator: OperatorRelease, namespace: str, s3: S3
) -> None:
    manifest = example("etcdcluster-dev.yaml", namespace)
    cluster = manifest["metadata"]["name"]
    kubectl.apply(manifest)
    wait_available(kubectl, namespace, cluster, 1)
    bucket = s3.create_bucket(f"e2e-{uuid.uuid4().hex[:12]}")
    credentials_secret(kubectl, namespace, "nobody", s3.nobody)
    credentials_secret(kubectl, namespace, CREDENTIALS, s3.admin)
    cases = {
        # name: (store, phase, reason, words the message must hold)
        "denied": (store_of(s3, bucket, "nobody"), "Failed", "AccessDenied", [bucket]),
        "no-bucket": (store_of(s3, "no-such-bucket"), "Failed", "NoSuchBucket", ["no-such-bucket"]),
        "no-secret": (store_of(s3, bucket, "missing"), "Failed", "SecretNotUsable", ["missing"]),
    }
    for name, (store, *_) in cases.items():
        kubectl.apply(backup_manifest(namespace, name, cluster, store))
    kubectl.apply(backup_manifest(namespace, "orphan", "no-such-cluster", store_of(s3, bucket)))
    secrets = {s3.nobody.secret_access_key, s3.admin.secret_access_key}
    secrets |= {s3.nobody.access_key_id, s3.admin.access_key_id}
    for name, (_, phase, reason, words) in cases.items():
        status = wait_ended(kubectl, namespace, name)["status"]
        assert (status["phase"], status["reason"]) == (phase, reason), status
        assert all(w in status["message"] for w in words), status["message"]
        assert [c["type"] for c in status["conditions"]] == ["Failed"]
        warnings = [e for e in events_of(kubectl, namespace, name) if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["BackupFailed"], warnings
        shown = str(status) + str(warnings)
        assert not any(s in shown for s in secrets), f"a credential shows in {name}"
    orphan = wait_ended(kubectl, namespace, "orphan")["status"]
    assert (orphan["phase"], orphan["reason"]) == ("Rejected", "ClusterNotFound"), orphan
    # The cluster hears of its failed backups too.
    cluster_warnings = [
        e["message"]
        for e in events_of(kubectl, namespace, cluster)
        if e["reason"] == "BackupFailed"
    ]
    assert len(cluster_warnings) == len(cases), cluster_warnings
    assert not any(s in str(cluster_warnings) for s in secrets)

    # ttlSecondsAfterFinished: the ended object goes away by itself.
    kubectl.apply(
        backup_manifest(
            namespace, "short-lived", cluster, store_of(s3, bucket, "nobody"),
            ttlSecondsAfterFinished=1,
        )
    )  # fmt: skip
    eventually(
        "the expired EtcdBackup to be deleted",
        lambda: not kubectl.exists("etcdbackup", "short-lived", namespace),
        timeout=60,
    )


def operator_backups(kubectl: Kubectl, namespace: str, cluster: str) -> list[Json]:
    found: list[Json] = kubectl.json(
        "get", "etcdbackups", f"--namespace={namespace}", "-l", f"etcd.pyetcd.io/cluster={cluster}"
    )["items"]
    return found


def phase(backup: Json) -> str | None:
    return (backup.get("status") or {}).get("phase")


def backup_ready(kubectl: Kubectl, namespace: str, cluster: str) -> tuple[str, str] | None:
    status = kubectl.get("etcdcluster", cluster, namespace).get("status") or {}
    for c in status.get("conditions") or []:
        if c["type"] == "BackupReady":
            return c["status"], c["reason"]
    return None


def backed_up_cluster(kubectl: Kubectl, namespace: str, s3: S3, **backup: Any) -> tuple[str, str]:
    """The dev example with spec.backup to a new bucket, Available; (cluster, bucket)."""
    bucket = s3.create_bucket(f"e2e-{uuid.uuid4().hex[:12]}")
    credentials_secret(kubectl, namespace, CREDENTIALS, s3.admin)
    manifest = example("etcdcluster-dev.yaml", namespace)
    cluster: str = manifest["metadata"]["name"]
    manifest["spec"]["backup"] = {"store": store_of(s3, bucket), **backup}
    kubectl.apply(manifest)
    wait_available(kubectl, namespace, cluster, 1)
    return cluster, bucket


def triggered(kubectl: Kubectl, namespace: str, cluster: str, trigger: str) -> list[Json]:
    return [
        b
        for b in operator_backups(kubectl, namespace, cluster)
        if b["metadata"]["labels"].get("etcd.pyetcd.io/backup-trigger") == trigger
    ]


def annotate(kubectl: Kubectl, namespace: str, cluster: str, value: str) -> None:
    kubectl.run("annotate", "etcdcluster", cluster, f"etcd.pyetcd.io/backup={value}",
                "--overwrite", f"--namespace={namespace}")  # fmt: skip


def merge_patch(kubectl: Kubectl, namespace: str, cluster: str, backup: Json) -> None:
    kubectl.run("patch", "etcdcluster", cluster, f"--namespace={namespace}", "--type=merge",
                "-p", json.dumps({"spec": {"backup": backup}}))  # fmt: skip


def test_the_annotation_makes_one_backup_per_value_and_retention_keeps_what_it_says(
    kubectl: Kubectl, operator: OperatorRelease, namespace: str, s3: S3
) -> None:
    cluster, bucket = backed_up_cluster(kubectl, namespace, s3)

    # One backup per new value, however many passes see it.
    for n, value in enumerate(("first", "second"), start=1):
        annotate(kubectl, namespace, cluster, value)

        def all_succeeded(n: int = n) -> bool:
            phases = [phase(b) for b in triggered(kubectl, namespace, cluster, "annotation")]
            return phases == ["Succeeded"] * n

        eventually(f"the backup {value!r} asks for to succeed", all_succeeded, 90, 2)
    status = kubectl.get("etcdcluster", cluster, namespace)["status"]
    assert status["backup"]["lastRequest"] == "second"
    assert status["backup"]["lastSuccessful"]["name"]
    assert len(triggered(kubectl, namespace, cluster, "annotation")) == 2

    # Retention: keep one of the operator's backups; the other goes, with its stored copy.
    merge_patch(kubectl, namespace, cluster, {"retention": {"keepLast": 1}})

    def retained() -> bool:
        kept = [b for b in operator_backups(kubectl, namespace, cluster) if phase(b) == "Succeeded"]
        stored = s3.client().list_objects_v2(Bucket=bucket).get("Contents") or []
        locations = {f"s3://{bucket}/{o['Key']}" for o in stored}
        return len(kept) == 1 and locations == {b["status"]["location"] for b in kept}

    eventually("retention to keep one backup and its object only", retained, timeout=90)

    # Deleting the cluster keeps its backups: that is when they are needed.
    before = {b["metadata"]["name"] for b in operator_backups(kubectl, namespace, cluster)}
    kubectl.run("delete", "etcdcluster", cluster, f"--namespace={namespace}", "--wait=true")
    after = {b["metadata"]["name"] for b in operator_backups(kubectl, namespace, cluster)}
    assert before and before <= after, (before, after)


@pytest.mark.one_storage
def test_the_schedule_backs_up_verifies_and_says_when_backups_fail(
    kubectl: Kubectl, operator: OperatorRelease, namespace: str, s3: S3
) -> None:
    cluster, bucket = backed_up_cluster(
        kubectl, namespace, s3, schedule="* * * * *", verify={"everyNth": 1}
    )

    # A backup for the first slot after the cluster was created.
    def scheduled_success() -> Json | None:
        done = [
            b for b in triggered(kubectl, namespace, cluster, "schedule") if phase(b) == "Succeeded"
        ]
        return done[0] if done else None

    first = eventually("a scheduled backup to succeed", scheduled_success, timeout=150, interval=2)
    assert re.fullmatch(rf"{cluster}-\d{{8}}-\d{{4}}", first["metadata"]["name"])

    # spec.backup.verify: restored into a scratch directory, its key space reported.
    def verified() -> Json | None:
        found: Json = kubectl.get("etcdbackup", first["metadata"]["name"], namespace)["status"]
        result: Json | None = found.get("verified")
        return result

    check = eventually("the backup to be verified", verified, timeout=60)
    assert check["passed"] is True, check
    # No key was written: the key bucket is empty (revision 0), the others are not.
    assert check["totalKeys"] >= 1 and isinstance(check["hash"], int), check
    eventually(
        "BackupReady True",
        lambda: backup_ready(kubectl, namespace, cluster) == ("True", "BackupSucceeded"),
        timeout=60,
    )
    status = kubectl.get("etcdcluster", cluster, namespace)["status"]["backup"]
    assert status["nextScheduledTime"] > status["lastScheduledTime"]

    # S3 away: the next scheduled backup fails and BackupReady says so.
    dead = {**store_of(s3, bucket), "endpoint": f"http://s3.{S3_NAMESPACE}.svc.cluster.local:81"}
    merge_patch(kubectl, namespace, cluster, {"store": dead})
    eventually(
        "BackupReady False after a failed scheduled backup",
        lambda: backup_ready(kubectl, namespace, cluster) == ("False", "BackupFailed"),
        timeout=150,
        interval=2,
    )
    failed = kubectl.get("etcdcluster", cluster, namespace)["status"]["backup"]["lastFailed"]
    assert "is unreachable" in failed["message"], failed

    # S3 back: a backup on request succeeds, and BackupReady recovers at once.
    merge_patch(kubectl, namespace, cluster, {"store": store_of(s3, bucket)})
    annotate(kubectl, namespace, cluster, "after-the-outage")
    eventually(
        "BackupReady True again once S3 is back",
        lambda: backup_ready(kubectl, namespace, cluster) == ("True", "BackupSucceeded"),
        timeout=90,
        interval=2,
    )


def dev_cluster(namespace: str, name: str, **spec: Any) -> Json:
    manifest = example("etcdcluster-dev.yaml", namespace)
    manifest["metadata"]["name"] = name
    manifest["spec"].pop("podTemplate", None)  # its spread constraint names example-dev
    manifest["spec"].update(spec)
    return manifest


def etcdctl_json(pod_exec: PodExec, namespace: str, cluster: str, *args: str) -> Json | None:
    argv = ["etcdctl", client_endpoint(cluster, namespace), *args, "-w", "json"]
    got = pod_exec.exec(namespace, CLIENT_POD, argv)
    return json.loads(got.stdout) if got.code == 0 else None


def value_of(pod_exec: PodExec, namespace: str, cluster: str, key: str) -> str | None:
    found = etcdctl_json(pod_exec, namespace, cluster, "get", key)
    if found is None or not found.get("kvs"):
        return None
    return base64.b64decode(found["kvs"][0]["value"]).decode()


# One plane: the restore is the operator's; the etcd plane reads an EtcdBackup in the rebuild.
@pytest.mark.one_storage("pyetcd")
def test_new_clusters_start_from_backups_across_engines_and_refuse_a_tampered_one(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str, s3: S3
) -> None:
    bucket = s3.create_bucket(f"e2e-{uuid.uuid4().hex[:12]}")
    credentials_secret(kubectl, namespace, CREDENTIALS, s3.admin)
    start_client(kubectl, namespace)
    store = store_of(s3, bucket)
    sources = {"src-pyetcd": "pyetcd", "src-etcd": "etcd"}
    for name, engine in sources.items():
        kubectl.apply(dev_cluster(namespace, name, engine=engine, backup={"store": store}))
    for name in sources:
        wait_available(kubectl, namespace, name, 1)
        for i in range(3):

            def put(n: str = name, i: int = i) -> bool:
                return etcdctl_put(pod_exec, namespace, n, f"key-{i}", f"{n}-{i}")

            eventually(f"etcdctl put into {name}", put)
        kubectl.apply(backup_manifest(namespace, f"{name}-backup", name, store))
    revisions: dict[str, int] = {}
    for name in sources:
        status = wait_ended(kubectl, namespace, f"{name}-backup")["status"]
        assert status["phase"] == "Succeeded", status
        revisions[name] = status["revision"]
        # The source goes: its backup is what is left of it.
        kubectl.run("delete", "etcdcluster", name, f"--namespace={namespace}", "--wait=true")

    s3_client = s3.client()
    locations = {
        name: kubectl.get("etcdbackup", f"{name}-backup", namespace)["status"]["location"]
        for name in sources
    }

    restores = {
        "pyetcd-to-pyetcd": ("pyetcd", "src-pyetcd"),
        "pyetcd-to-etcd": ("etcd", "src-pyetcd"),
        "etcd-to-pyetcd": ("pyetcd", "src-etcd"),
    }
    for name, (engine, source) in restores.items():
        bootstrap = {"backup": {"name": f"{source}-backup"}}
        # One restores into a cluster with peer TLS: the restored membership holds the https
        # peer URL the member then advertises (its clients stay on http for the checks below).
        tls: dict[str, Any] = {"tls": {"peer": {}}} if name == "pyetcd-to-etcd" else {}
        kubectl.apply(dev_cluster(namespace, name, engine=engine, bootstrap=bootstrap, **tls))
    for name, (_, source) in restores.items():
        wait_available(kubectl, namespace, name, 1)
        for i in range(3):

            def get(n: str = name, i: int = i) -> str | None:
                return value_of(pod_exec, namespace, n, f"key-{i}")

            got = eventually(f"key-{i} in {name}", get)
            assert got == f"{source}-{i}", (name, got)
        # Revisions went forward by the bump: a client's cached revision is never ahead.
        header = (etcdctl_json(pod_exec, namespace, name, "get", "key-0") or {})["header"]
        assert int(header["revision"]) >= revisions[source] + 1_000_000_000, (name, header)
        status = kubectl.get("etcdcluster", name, namespace)["status"]
        restored = status["restoredFrom"]
        assert restored["backup"] == f"{source}-backup"
        scheme = "https" if name == "pyetcd-to-etcd" else "http"
        assert all(m["peerURL"].startswith(f"{scheme}://") for m in status["members"]), status
        assert restored["location"] == locations[source]

    # A backup whose object no longer holds what its EtcdBackup recorded: the member does not
    # start, and the cluster says why.
    py_key = locations["src-pyetcd"].removeprefix(f"s3://{bucket}/")
    etcd_key = locations["src-etcd"].removeprefix(f"s3://{bucket}/")
    s3_client.copy_object(Bucket=bucket, Key=py_key, CopySource={"Bucket": bucket, "Key": etcd_key})
    kubectl.apply(
        dev_cluster(namespace, "from-tampered", bootstrap={"backup": {"name": "src-pyetcd-backup"}})
    )

    def degraded() -> str | None:
        status = kubectl.get("etcdcluster", "from-tampered", namespace).get("status") or {}
        for c in status.get("conditions") or []:
            if c["type"] == "Degraded" and c["reason"] == "RestoreFailed":
                return str(c["message"])
        return None

    message = eventually("Degraded RestoreFailed", degraded, timeout=120, interval=2)
    assert "tampered" in message and "sha256" in message, message
    status = kubectl.get("etcdcluster", "from-tampered", namespace)["status"]
    available = [c for c in status["conditions"] if c["type"] == "Available"]
    assert [c["status"] for c in available] == ["False"], available


# One plane: the restore itself runs the same on both (the API server's storage plays no part),
# and restores across engines are covered above.
@pytest.mark.one_storage
def test_a_cluster_that_lost_every_member_is_rebuilt_from_its_latest_backup_with_consent(
    kubectl: Kubectl, pod_exec: PodExec, operator: OperatorRelease, namespace: str, s3: S3
) -> None:
    cluster, bucket = backed_up_cluster(kubectl, namespace, s3)
    start_client(kubectl, namespace)
    for i in range(3):

        def put(i: int = i) -> bool:
            return etcdctl_put(pod_exec, namespace, cluster, f"kept-{i}", "v")

        eventually(f"put kept-{i}", put)
    kubectl.apply(backup_manifest(namespace, "before-loss", cluster, store_of(s3, bucket)))
    backup = wait_ended(kubectl, namespace, "before-loss")["status"]
    assert backup["phase"] == "Succeeded", backup
    assert etcdctl_put(pod_exec, namespace, cluster, "after-backup", "lost")
    # The only member's volume is lost: its new pod starts empty and no member answers.
    member = f"{cluster}-0"
    kubectl.run("delete", "pvc", f"data-{member}", f"--namespace={namespace}", "--wait=false")
    kubectl.run("delete", "pod", member, f"--namespace={namespace}", "--wait=false")

    def unreachable() -> bool:
        status = kubectl.get("etcdcluster", cluster, namespace).get("status") or {}
        return any(
            c["type"] == "Available" and c["reason"] == "EtcdUnreachable"
            for c in status.get("conditions") or []
        )

    eventually("no member answering", unreachable, timeout=120, interval=2)
    kubectl.run(
        "annotate", "etcdcluster", cluster, f"--namespace={namespace}",
        "etcd.pyetcd.io/recover-quorum=from-backup-1",
    )  # fmt: skip

    def recovered() -> Json | None:
        status = kubectl.get("etcdcluster", cluster, namespace).get("status") or {}
        record = status.get("quorumRecovery") or {}
        return record if record.get("phase") == "Succeeded" else None

    record = eventually("the rebuild from the backup", recovered, timeout=240, interval=2)
    assert record["backup"] == "before-loss" and record["token"] == "from-backup-1", record
    assert record["revisionBefore"] == backup["revision"], record
    assert record["revisionAfter"] >= backup["revision"] + 1_000_000_000, record
    wait_available(kubectl, namespace, cluster, 1)
    for i in range(3):
        # Through the client Service, whose endpoints follow the new pod a moment later.
        def kept(i: int = i) -> str | None:
            return value_of(pod_exec, namespace, cluster, f"kept-{i}")

        assert eventually(f"kept-{i} read back", kept) == "v"
    found = etcdctl_json(pod_exec, namespace, cluster, "get", "after-backup")
    assert found is not None and not found.get("kvs"), found
    status = kubectl.get("etcdcluster", cluster, namespace)["status"]
    assert status["restoredFrom"]["backup"] == "before-loss"
    reasons = {e["reason"] for e in events_of(kubectl, namespace, cluster)}
    assert {"QuorumRecoveryStarted", "QuorumRecovered"} <= reasons, reasons
