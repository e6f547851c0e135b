"""The backup runner over an in-memory Kubernetes and etcd: the phases it writes, the events it
posts, what it does with Secrets, failures and restarts. The S3 side is a stand-in upload here;
the real library against real S3 servers is tested in tests/integration/test_backup_s3.py, and
the whole path on a real control plane in e2e/test_backups.py."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from etcd_operator import metrics
from etcd_operator.api.backup import Compression
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.backup import AccessDeniedError, StoreSettings, UploadResult
from etcd_operator.backup.metadata import ObjectMetadata, SnapshotInfo
from etcd_operator.runtime.backups import BackupRunner

from tests.unit.operator.runtime.fake_etcd import FakeEtcd
from tests.unit.operator.runtime.fake_kube import FakeKube
from tests.unit.operator.runtime.test_reconciler import body as cluster_body
from tests.unit.operator.runtime.test_reconciler import sample

SETTINGS = OperatorSettings(etcd_timeout_seconds=0.5)
NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
ACCESS, SECRET = "AKIAEXAMPLE", "s3cr3t-value-never-shown"
STORE = {"bucket": "backups", "endpoint": "http://s3:9000", "credentialsSecret": "creds"}


def backup_body(name: str = "b", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdBackup",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"clusterName": "demo", "store": STORE, **spec},
    }


def secret(name: str, **values: str) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {"kind": "Secret", "metadata": {"name": name, "namespace": "ns"}, "data": data}


class Uploads:
    """Stands in for ``upload_snapshot``: reads the stream, records, answers or fails."""

    def __init__(self, error: Exception | None = None, raw_size: int | None = None) -> None:
        self.error = error
        self.raw_size = raw_size
        self.calls: list[tuple[StoreSettings, str, bytes, SnapshotInfo | None]] = []
        self.keys: list[bytes | None] = []
        self.compressions: list[str] = []

    async def __call__(
        self,
        chunks: AsyncIterator[bytes],
        store: StoreSettings,
        key: str,
        *,
        compression: Compression | str = Compression.ZSTD,
        encryption_key: bytes | None = None,
        metadata: SnapshotInfo | None = None,
    ) -> UploadResult:
        data = b"".join([c async for c in chunks])
        self.calls.append((store, key, data, metadata))
        self.keys.append(encryption_key)
        self.compressions.append(str(compression))
        if self.error is not None:
            raise self.error
        return UploadResult(
            location=store.location(key),
            bucket=store.bucket,
            key=key,
            stored_size=5,
            raw_size=self.raw_size if self.raw_size is not None else len(data),
            sha256="ab" * 32,
            parts=0,
            metadata=ObjectMetadata(compression=Compression(compression), encryption="none"),
        )


def world(*, with_secret: bool = True) -> tuple[FakeKube, FakeEtcd]:
    kube = FakeKube()
    kube.put(cluster_body())
    kube.put({"kind": "StatefulSet", "metadata": {"name": "demo", "namespace": "ns"}})
    if with_secret:
        kube.put(secret("creds", accessKeyId=ACCESS, secretAccessKey=SECRET))
    return kube, FakeEtcd()


def run(
    kube: FakeKube,
    etcd: FakeEtcd,
    upload: Uploads,
    *bodies: dict[str, Any],
    settings: OperatorSettings = SETTINGS,
    check: Any = None,
) -> None:
    """Start each backup's run and wait for it to end, in order."""
    runner = BackupRunner(
        settings,
        lambda: kube,
        lambda endpoints, timeout, tls=None, auth=None, /: etcd,
        clock=lambda: NOW,
        upload=upload,
        **({"check": check} if check is not None else {}),
    )

    async def scenario() -> None:
        for b in bodies:
            kube.put(b)
            runner.start(kube.live(b))
            await runner.wait()

    asyncio.run(scenario())


def status_of(kube: FakeKube, name: str = "b") -> dict[str, Any]:
    found = kube.objects[("EtcdBackup", "ns", name)]["status"]
    assert isinstance(found, dict)
    return found


def test_a_backup_streams_a_follower_and_records_what_it_stored() -> None:
    kube, etcd = world()
    upload = Uploads()
    before = sample(
        "etcd_operator_backup_last_success_timestamp_seconds", namespace="ns", cluster="demo"
    )
    run(kube, etcd, upload, backup_body())
    status = status_of(kube)
    assert status["phase"] == "Succeeded", status
    assert status["member"] != "demo-0"  # demo-0 leads: a follower streams
    assert etcd.snapshots_from == [f"http://c{status['member'][-1]}:2379"]
    ((store, key, data, info),) = upload.calls
    assert key == "ns/demo/b.db.zst" and data == b"snapshot"
    assert store.credentials is not None and store.credentials.secret_access_key == SECRET
    assert info is not None and info.member == status["member"]
    assert status["location"] == "s3://backups/ns/demo/b.db.zst"
    assert (status["sizeBytes"], status["snapshotSizeBytes"]) == (5, len(b"snapshot"))
    assert status["clusterID"] == "cafe" and status["store"]["bucket"] == "backups"
    phases = [p["phase"] for _, name, p in kube.status_patches if name == "b"]
    assert phases == ["Pending", "Running", "Succeeded"]
    assert [e[:2] for e in kube.events()] == [("Normal", "BackupSucceeded")]
    after = sample(
        "etcd_operator_backup_last_success_timestamp_seconds", namespace="ns", cluster="demo"
    )
    assert after > before


def test_the_clusters_compression_and_encryption_key_are_used() -> None:
    import hashlib

    kube, etcd = world()
    key = hashlib.sha256(b"k").digest()
    kube.put(secret("backup-key", key=base64.b64encode(key).decode()))
    cluster = kube.objects[("EtcdCluster", "ns", "demo")]
    cluster["spec"]["backup"] = {
        "store": STORE,
        "compression": "gzip",
        "encryption": {"keySecret": {"name": "backup-key", "key": "key"}},
    }
    upload = Uploads()
    run(kube, etcd, upload, backup_body())
    status = status_of(kube)
    assert status["phase"] == "Succeeded", status
    ((_, object_key, _, _),) = upload.calls
    assert object_key == "ns/demo/b.db.gz.enc"
    assert upload.keys == [key] and upload.compressions == ["gzip"]
    assert status["encrypted"] is True


def test_a_failed_upload_fails_the_backup_with_a_message_without_credentials() -> None:
    kube, etcd = world()
    failures = sample("etcd_operator_backup_failures_total", namespace="ns", cluster="demo")
    upload = Uploads(AccessDeniedError(f"access denied to bucket backups for key {SECRET}"))
    run(kube, etcd, upload, backup_body())
    status = status_of(kube)
    assert (status["phase"], status["reason"]) == ("Failed", "AccessDenied")
    assert "access denied to bucket backups" in status["message"]
    everything = str(kube.status_patches) + str(kube.created)
    assert SECRET not in everything and "<redacted>" in status["message"]
    # A Warning on the backup and one on its cluster.
    assert [(e[0], e[1]) for e in kube.events()] == [
        ("Warning", "BackupFailed"),
        ("Warning", "BackupFailed"),
    ]
    involved = [e["involvedObject"]["kind"] for e in kube.created]
    assert involved == ["EtcdBackup", "EtcdCluster"]
    after = sample("etcd_operator_backup_failures_total", namespace="ns", cluster="demo")
    assert after == failures + 1


def test_a_missing_secret_or_cluster_says_so() -> None:
    kube, etcd = world(with_secret=False)
    orphan = backup_body("orphan")
    orphan["spec"]["clusterName"] = "gone"
    run(kube, etcd, Uploads(), backup_body(), orphan)
    status = status_of(kube)
    assert (status["phase"], status["reason"]) == ("Failed", "SecretNotUsable")
    assert status["message"] == "Secret creds (S3 credentials) does not exist in namespace ns"
    rejected = status_of(kube, "orphan")
    assert (rejected["phase"], rejected["reason"]) == ("Rejected", "ClusterNotFound")


def test_a_secret_without_its_keys_says_which() -> None:
    kube, etcd = world(with_secret=False)
    kube.put(secret("creds", accessKeyId=ACCESS))
    run(kube, etcd, Uploads(), backup_body())
    assert "has no secretAccessKey" in status_of(kube)["message"]


def test_a_run_interrupted_by_a_restart_ends_failed_on_resume() -> None:
    kube, etcd = world()
    upload = Uploads()
    running = backup_body()
    running["status"] = {"phase": "Running", "startedAt": "2026-12-06T09:59:00Z"}
    run(kube, etcd, upload, running)
    status = status_of(kube)
    assert (status["phase"], status["reason"]) == ("Failed", "Interrupted")
    assert upload.calls == []


def test_an_ended_backup_is_not_run_again_and_expires_after_its_ttl() -> None:
    kube, etcd = world()
    upload = Uploads()
    run(kube, etcd, upload, backup_body(ttlSecondsAfterFinished=0))
    assert ("EtcdBackup", "ns", "b") in kube.deleted
    done = backup_body("done")
    done["status"] = {"phase": "Succeeded", "completedAt": "2026-12-06T09:00:00Z"}
    run(kube, etcd, upload, done)
    assert len(upload.calls) == 1  # only the first backup ran
    assert ("EtcdBackup", "ns", "done") not in kube.deleted  # no ttl: kept


def test_no_quorum_fails_without_streaming() -> None:
    kube, etcd = world()
    etcd.leader = 0
    upload = Uploads()
    run(kube, etcd, upload, backup_body())
    status = status_of(kube)
    assert (status["phase"], status["reason"]) == ("Failed", "NoQuorum")
    assert upload.calls == [] and etcd.snapshots_from == []


# -- the cluster's side: the annotation through a reconcile pass --------------------------------


def test_the_annotation_makes_exactly_one_backup_across_passes() -> None:
    from etcd_operator.runtime.reconciler import Reconciler

    from tests.unit.operator.runtime.test_reconciler import Events

    kube = FakeKube()
    etcd = FakeEtcd()
    cluster = cluster_body()
    cluster["metadata"]["annotations"] = {"etcd.pyetcd.io/backup": "now"}
    cluster["metadata"]["creationTimestamp"] = "2026-12-06T09:00:00Z"
    cluster["spec"]["backup"] = {"store": STORE}
    kube.put(cluster)
    reconciler = Reconciler(
        SETTINGS,
        kube,
        Events(),
        lambda endpoints, timeout, tls=None, auth=None, /: etcd,
        clock=lambda: NOW,
    )

    async def passes(n: int) -> None:
        for _ in range(n):
            await reconciler.reconcile(kube.live(cluster))

    asyncio.run(passes(4))  # creation, formation, then idle passes
    made = [k for k in kube.objects if k[0] == "EtcdBackup"]
    assert len(made) == 1, made
    backup = kube.objects[made[0]]
    assert backup["metadata"]["labels"]["etcd.pyetcd.io/backup-trigger"] == "annotation"
    status = kube.objects[("EtcdCluster", "ns", "demo")]["status"]
    assert status["backup"]["lastRequest"] == "now"
    ready = [c for c in status["conditions"] if c["type"] == "BackupReady"]
    assert [(c["status"], c["reason"]) for c in ready] == [("Unknown", "NoBackupYet")]
    gauge = "etcd_operator_cluster_backup_ready"
    assert metrics.REGISTRY.get_sample_value(gauge, {"namespace": "ns", "cluster": "demo"}) == 0


def test_the_backup_gauges_come_from_the_status_so_they_survive_a_restart() -> None:
    from etcd_operator.api.v1alpha1 import EtcdCluster
    from etcd_operator.runtime.reconciler import record_metrics

    cluster = EtcdCluster.model_validate(cluster_body())
    labels = {"namespace": "ns", "cluster": "demo"}
    status = {
        "conditions": [{"type": "BackupReady", "status": "True"}],
        "backup": {"lastSuccessfulTime": "2026-12-06T10:00:00Z"},
    }
    record_metrics(cluster, status)
    last = metrics.REGISTRY.get_sample_value(
        "etcd_operator_backup_last_success_timestamp_seconds", labels
    )
    assert last == NOW.timestamp()
    assert metrics.REGISTRY.get_sample_value("etcd_operator_cluster_backup_ready", labels) == 1
    metrics.forget_cluster("ns", "demo")
    assert metrics.REGISTRY.get_sample_value("etcd_operator_cluster_backup_ready", labels) is None


def test_without_spec_backup_there_are_no_backup_gauges_to_alert_on() -> None:
    """A one-off EtcdBackup of a cluster without spec.backup sets the last-success time; the
    next status (no BackupReady) removes it, or EtcdBackupTooOld would fire a day later."""
    from etcd_operator.api.v1alpha1 import EtcdCluster
    from etcd_operator.runtime.reconciler import record_metrics

    cluster = EtcdCluster.model_validate(cluster_body())
    labels = {"namespace": "ns", "cluster": "demo"}
    record_metrics(cluster, {"conditions": [{"type": "BackupReady", "status": "False"}]})
    metrics.record_backup("ns", "demo", 1.0, 5)
    assert metrics.REGISTRY.get_sample_value("etcd_operator_cluster_backup_ready", labels) == 0
    record_metrics(cluster, {"conditions": [{"type": "Available", "status": "True"}]})
    for gauge in (
        "etcd_operator_cluster_backup_ready",
        "etcd_operator_backup_last_success_timestamp_seconds",
    ):
        assert metrics.REGISTRY.get_sample_value(gauge, labels) is None, gauge
    metrics.forget_cluster("ns", "demo")


class Checks:
    """Stands in for ``verify_backup``: records the keys it is asked to check."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.keys: list[str] = []

    async def __call__(self, store: StoreSettings, key: str, encryption_key: bytes | None) -> Any:
        from etcd_operator.backup.verify import Verified

        self.keys.append(key)
        if self.error is not None:
            raise self.error
        return Verified(revision=42, total_keys=7, hash=1234)


def verifying_world(every: int) -> FakeKube:
    kube, _ = world()
    cluster = kube.objects[("EtcdCluster", "ns", "demo")]
    cluster["spec"]["backup"] = {"store": STORE, "verify": {"everyNth": every}}
    return kube


def test_verification_records_what_the_restored_backup_holds() -> None:
    kube = verifying_world(1)
    checks = Checks()
    run(kube, FakeEtcd(), Uploads(), backup_body(), check=checks)
    status = status_of(kube)
    assert status["phase"] == "Succeeded"
    assert status["verified"] == {
        "passed": True,
        "verifiedAt": "2026-12-06T10:00:00Z",
        "revision": 42,
        "totalKeys": 7,
        "hash": 1234,
    }
    assert checks.keys == ["ns/demo/b.db.zst"]
    assert [e[1] for e in kube.events()] == ["BackupSucceeded", "BackupVerified"]


def test_a_failed_verification_warns_and_leaves_the_backup_succeeded() -> None:
    from etcd_operator.backup.verify import VerificationError

    kube = verifying_world(1)
    run(
        kube,
        FakeEtcd(),
        Uploads(),
        backup_body(),
        check=Checks(VerificationError("snapshot status: bad page")),
    )
    status = status_of(kube)
    assert status["phase"] == "Succeeded"
    assert status["verified"]["passed"] is False
    assert status["verified"]["message"] == "snapshot status: bad page"
    warnings = [
        (e["involvedObject"]["kind"], e["reason"]) for e in kube.created if e["type"] == "Warning"
    ]
    assert warnings == [
        ("EtcdBackup", "BackupVerificationFailed"),
        ("EtcdCluster", "BackupVerificationFailed"),
    ]


def test_every_nth_success_is_verified() -> None:
    kube = verifying_world(2)
    checks = Checks()
    run(
        kube,
        FakeEtcd(),
        Uploads(),
        backup_body("one"),
        backup_body("two"),
        backup_body("three"),
        check=checks,
    )
    assert checks.keys == ["ns/demo/two.db.zst"]
    assert "verified" not in status_of(kube, "one") and "verified" not in status_of(kube, "three")


def test_a_verification_that_would_not_fit_the_scratch_space_is_refused() -> None:
    kube = verifying_world(1)
    checks = Checks()
    small = OperatorSettings(etcd_timeout_seconds=0.5, scratch_size_mib=64)
    big = Uploads(raw_size=100 << 20)
    run(kube, FakeEtcd(), big, backup_body(), settings=small, check=checks)
    verified = status_of(kube)["verified"]
    assert verified["passed"] is False and checks.keys == []
    assert "needs 216 MiB of scratch space and the operator has 64 MiB" in verified["message"]
