"""The decisions of one backup run, pure: whether it may start, from which member, where it goes,
and the status each outcome writes.

A run is refused before it starts (``Rejected``) when it cannot mean anything: the cluster does
not exist, or no store is named (neither the backup's ``spec.store`` nor the cluster's
``spec.backup.store``). It fails (``Failed``) when it could run but the world did not let it:
no member to stream from (no leader: no quorum; or no healthy member), or the stream or the store
failed (the runtime passes the library's one-line message). The snapshot comes from a healthy
follower where there is one, so that the leader, which carries the write load, does not also
stream the database; the follower that has applied the most is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from etcd_operator.api.backup import BackupStore, Compression
from etcd_operator.api.etcdbackup import EtcdBackup, EtcdBackupStatus
from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile import operations
from etcd_operator.reconcile.observed import EtcdMember, EtcdView
from etcd_operator.reconcile.operations import advance

CLUSTER_NOT_FOUND = "ClusterNotFound"
NO_STORE = "NoStore"
NO_QUORUM = "NoQuorum"
NO_HEALTHY_MEMBER = "NoHealthyMember"
INTERRUPTED = "Interrupted"
STARTED = "SnapshotStreaming"
SUCCEEDED = "BackupSucceeded"

# The file name suffixes of a stored backup, so that a listing of the bucket says what it holds.
_SUFFIX = {Compression.NONE: "", Compression.GZIP: ".gz", Compression.ZSTD: ".zst"}


@dataclass(frozen=True)
class Refusal:
    """Why a run cannot start: the phase it ends in, a reason and a message."""

    phase: OperationPhase
    reason: str
    message: str


def default_prefix(namespace: str, cluster: str) -> str:
    """The key prefix of a cluster's backups when its store sets none."""
    return f"{namespace}/{cluster}/"


def store_of(backup: EtcdBackup, cluster: EtcdCluster) -> BackupStore | None:
    """The store a backup goes to: its own, else its cluster's ``spec.backup.store``."""
    if backup.spec.store is not None:
        return backup.spec.store
    return cluster.spec.backup.store if cluster.spec.backup is not None else None


def object_name(backup: str, compression: Compression | str, encrypted: bool) -> str:
    """The name of a backup's object under the store's prefix: ``<backup>.db`` and suffixes
    for its compression and encryption (``.zst``, ``.enc``)."""
    return f"{backup}.db{_SUFFIX[Compression(compression)]}{'.enc' if encrypted else ''}"


def refusal(backup: EtcdBackup, cluster: EtcdCluster | None) -> Refusal | None:
    """Why the run cannot start at all, or None."""
    namespace = backup.namespace
    if cluster is None:
        return Refusal(
            OperationPhase.REJECTED,
            CLUSTER_NOT_FOUND,
            f"EtcdCluster {backup.spec.clusterName} does not exist in namespace {namespace}",
        )
    if store_of(backup, cluster) is None:
        return Refusal(
            OperationPhase.REJECTED,
            NO_STORE,
            f"no store to write to: set spec.store on the EtcdBackup, or spec.backup.store on "
            f"EtcdCluster {cluster.name}",
        )
    return None


def source_member(view: EtcdView | None, cluster: str) -> EtcdMember | Refusal:
    """The member to stream the snapshot from: a healthy follower (the one that applied the
    most), else the healthy leader; or why there is none."""
    if view is None:
        return Refusal(
            OperationPhase.FAILED,
            NO_HEALTHY_MEMBER,
            f"no member of EtcdCluster {cluster} answered: nothing to take a snapshot from",
        )
    if view.leader is None:
        return Refusal(
            OperationPhase.FAILED,
            NO_QUORUM,
            f"EtcdCluster {cluster} has no leader (no quorum): a snapshot now could miss "
            "acknowledged writes",
        )
    healthy = [m for m in view.voters if m.healthy and m.started and m.client_urls]
    followers = [m for m in healthy if not m.leader]
    if followers:
        return max(followers, key=lambda m: (m.raft_index or 0, m.revision or 0, m.name))
    if healthy:
        return healthy[0]
    return Refusal(
        OperationPhase.FAILED,
        NO_HEALTHY_MEMBER,
        f"no healthy member of EtcdCluster {cluster} to take a snapshot from",
    )


def ended(
    status: EtcdBackupStatus, phase: OperationPhase, reason: str, message: str, now: datetime
) -> EtcdBackupStatus:
    """``status`` moved to a terminal ``phase``, with its condition."""
    return operations.ended(status, phase, now, reason=reason, message=message)


def running(
    status: EtcdBackupStatus,
    member: EtcdMember,
    store: BackupStore,
    view: EtcdView,
    now: datetime,
) -> EtcdBackupStatus:
    """``status`` moved to Running: the member streams, what it holds is recorded."""
    moved = advance(
        status,
        OperationPhase.RUNNING,
        now,
        reason=STARTED,
        message=f"streaming the snapshot of member {member.name} to {store.bucket}",
    )
    return moved.model_copy(
        update={
            "member": member.name,
            "revision": member.revision,
            "etcdVersion": member.version,
            "clusterID": f"{view.cluster_id:x}",
            "store": store,
        }
    )
