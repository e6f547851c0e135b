"""EtcdClusters and EtcdBackups as kubectl returns them, built from the API models: a field the
plugin reads under a name the models do not have fails the tests that use these."""

from __future__ import annotations

from typing import Any, Literal

from etcd_operator.api.backup import BackupSpec, BackupStore
from etcd_operator.api.etcdbackup import EtcdBackup, EtcdBackupSpec, EtcdBackupStatus
from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.v1alpha1 import (
    BackupRef,
    ClusterBackupStatus,
    Condition,
    EtcdCluster,
    EtcdClusterSpec,
    EtcdClusterStatus,
    MemberStatus,
    Phase,
)
from etcd_operator.reconcile.backup_requests import TRIGGER_LABEL

Json = dict[str, Any]

NAMESPACE = "prod"
CLUSTER = "main"
CREATED = "2026-12-06T10:00:00Z"
LAST_SUCCESS = "main-20261206-1200"
LAST_FAILURE = "main-ondemand-3f1c2a9b0d"
MiB = 1024 * 1024


def store() -> BackupStore:
    return BackupStore(
        bucket="etcd-backups",
        endpoint="http://s3.prod.svc:80",
        forcePathStyle=True,
        credentialsSecret="s3-credentials",
    )


def condition(
    kind: str, status: Literal["True", "False", "Unknown"], reason: str, message: str = ""
) -> Condition:
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        lastTransitionTime="2026-12-06T10:05:00Z",
    )


def running_status(name: str = CLUSTER) -> EtcdClusterStatus:
    return EtcdClusterStatus(
        phase=Phase.RUNNING,
        conditions=[
            condition("Available", "True", "QuorumHealthy", "3 of 3 voting members healthy"),
            condition("Progressing", "False", "Stable"),
            condition("Degraded", "False", "AllMembersHealthy"),
            condition("BackupReady", "True", "BackupSucceeded", f"{LAST_SUCCESS} succeeded"),
        ],
        members=[
            MemberStatus(
                name=f"{name}-0",
                id="8211f1d0f64f3269",
                healthy=True,
                version="3.5.17",
                dbSize=2 * MiB,
                revision=48213,
            ),
            MemberStatus(
                name=f"{name}-1",
                id="91bc3c398fb3c146",
                leader=True,
                healthy=True,
                version="3.5.17",
                dbSize=3 * MiB,
                revision=48213,
            ),
            MemberStatus(name=f"{name}-2", id="fd422379fda50e48", learner=True),
        ],
        replicas=3,
        readyReplicas=2,
        currentVersion="3.5.17",
        clusterVersion="3.5.0",
        leader=f"{name}-1",
        clusterID="cdf818194e3a8c32",
        backup=ClusterBackupStatus(
            lastSuccessful=BackupRef(
                name=LAST_SUCCESS, time="2026-12-06T12:00:30Z", revision=48000
            ),
            lastSuccessfulTime="2026-12-06T12:00:30Z",
            lastFailed=BackupRef(
                name=LAST_FAILURE,
                time="2026-12-06T12:03:00Z",
                message="AccessDenied: the store refused the upload",
            ),
            nextScheduledTime="2026-12-06T18:00:00Z",
            lastRequest="ticket-42",
        ),
        observedGeneration=2,
    )


def cluster(
    name: str = CLUSTER,
    namespace: str = NAMESPACE,
    *,
    backup: bool = True,
    status: EtcdClusterStatus | None = None,
    created: str = CREATED,
    **spec: Any,
) -> Json:
    """A cluster as the API server returns it: defaults filled in, metadata and all."""
    model = EtcdCluster(
        metadata={
            "name": name,
            "namespace": namespace,
            "uid": "0f3c8e2a-5b7d-4c1e-9a6f-2d8b4e7c1a90",
            "generation": 2,
            "resourceVersion": "4711",
            "creationTimestamp": created,
            "labels": {"app.kubernetes.io/managed-by": "Helm", "team": "storage"},
            "annotations": {"etcd.pyetcd.io/backup": "ticket-42", "meta.helm.sh/release-name": "x"},
        },
        spec=EtcdClusterSpec(
            version="3.5.17",
            backup=BackupSpec(store=store(), schedule="0 */6 * * *") if backup else None,
            **spec,
        ),
        status=status,
    )
    return model.model_dump(mode="json", exclude_none=True)


def etcd_backup(
    name: str,
    cluster: str = CLUSTER,
    *,
    phase: OperationPhase | None = OperationPhase.SUCCEEDED,
    created: str = "2026-12-06T12:00:00Z",
    trigger: str | None = "schedule",
    namespace: str = NAMESPACE,
    **status: Any,
) -> Json:
    """An EtcdBackup; ``phase`` None: no status written yet."""
    labels = {"etcd.pyetcd.io/cluster": cluster, TRIGGER_LABEL: trigger} if trigger else {}
    if phase == OperationPhase.SUCCEEDED:
        status = {
            "revision": 48213,
            "sizeBytes": 913408,
            "snapshotSizeBytes": 2 * MiB,
            "location": f"s3://etcd-backups/{namespace}/{cluster}/{name}.db.zst",
            "startedAt": created,
            "completedAt": created.replace(":00Z", ":04Z"),
            "encrypted": False,
            **status,
        }
    model = EtcdBackup(
        metadata={
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "labels": labels,
        },
        spec=EtcdBackupSpec(clusterName=cluster),
        status=EtcdBackupStatus(phase=phase, **status) if phase is not None else None,
    )
    return model.model_dump(mode="json", exclude_none=True)
