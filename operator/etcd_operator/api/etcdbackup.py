"""The EtcdBackup kind: one object per backup of one EtcdCluster, an operation (``api.operation``).

A backup object is created by the operator (on the cluster's schedule or its backup annotation)
or by a user (``kubectl create``); its spec names the cluster and, optionally, a store that
overrides the cluster's ``spec.backup.store``, and never changes. Its status follows the
operation phases (Pending -> Running -> Succeeded | Failed, or Rejected before it starts) and,
once it succeeded, says where the backup is and what it holds: enough to restore it or to check
it by hand (``aws s3 cp`` and ``sha256sum`` of the decoded snapshot).

Backups are deliberately not owned by their cluster: deleting a cluster keeps its backups,
because that is when they are needed. ``deletionPolicy`` says what deleting the *object* does
to the stored backup.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from etcd_operator.api.backup import BackupStore, DeletionPolicy
from etcd_operator.api.operation import OPERATION_SPEC_RULES, OperationSpec, OperationStatus
from etcd_operator.api.v1alpha1 import CLUSTER_NAME_PATTERN

KIND = "EtcdBackup"
PLURAL = "etcdbackups"
SINGULAR = "etcdbackup"
SHORT_NAMES = ["etcdbk"]

SPEC_RULES = OPERATION_SPEC_RULES

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterName"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Revision", "type": "integer", "jsonPath": ".status.revision"},
    {"name": "Size", "type": "integer", "jsonPath": ".status.sizeBytes"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Location", "type": "string", "jsonPath": ".status.location", "priority": 1},
]


class EtcdBackupSpec(OperationSpec):
    """One backup of one cluster (immutable once created)."""

    clusterName: str = Field(
        min_length=1,
        max_length=63,
        pattern=CLUSTER_NAME_PATTERN,
        description="The EtcdCluster to back up, in the same namespace.",
    )
    store: BackupStore | None = Field(
        default=None, description="Where to write it; the cluster's spec.backup.store if unset."
    )
    deletionPolicy: DeletionPolicy = Field(
        default=DeletionPolicy.RETAIN,
        description="Retain: deleting this object keeps the stored backup; Delete removes it.",
    )


class Verification(BaseModel):
    """What the verification of a stored backup found (spec.backup.verify)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    passed: bool = Field(description="The backup restored and its structure checked out.")
    verifiedAt: str = Field(description="When (RFC 3339).")
    revision: int | None = Field(default=None, description="The snapshot's latest revision.")
    totalKeys: int | None = Field(default=None, description="Keys in it (etcd's totalKey).")
    hash: int | None = Field(default=None, description="etcd's hash of its key space.")
    message: str | None = Field(default=None, description="What failed, when it did.")


class EtcdBackupStatus(OperationStatus):
    """Where the backup run is and, once it succeeded, what it stored."""

    location: str | None = Field(default=None, description="s3://bucket/key of the backup.")
    sizeBytes: int | None = Field(
        default=None, description="Size of the stored object (after compression, encryption)."
    )
    snapshotSizeBytes: int | None = Field(
        default=None, description="Size of the snapshot as etcd streamed it."
    )
    sha256: str | None = Field(
        default=None,
        description="sha256 of the snapshot as etcd streamed it, before compression and "
        "encryption (etcd's trailing hash included).",
    )
    revision: int | None = Field(
        default=None,
        description="The member's revision when the snapshot started: every write up to it is "
        "in the backup.",
    )
    etcdVersion: str | None = Field(default=None, description="The member's etcd version.")
    clusterID: str | None = Field(default=None, description="etcd's cluster ID in hex.")
    member: str | None = Field(default=None, description="The member the snapshot came from.")
    store: BackupStore | None = Field(
        default=None,
        description="The store it went to, as resolved when it started (the spec's, else the "
        "cluster's): where a restore or a deletion finds it.",
    )
    compression: str | None = Field(default=None, description="none, gzip or zstd.")
    encrypted: bool | None = Field(
        default=None, description="Whether the object is encrypted client-side."
    )
    verified: Verification | None = Field(
        default=None, description="The verification's result, when spec.backup.verify asks."
    )


class EtcdBackup(BaseModel):
    """A backup of an EtcdCluster to S3-compatible storage."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    apiVersion: Literal["etcd.pyetcd.io/v1alpha1"] = "etcd.pyetcd.io/v1alpha1"
    kind: Literal["EtcdBackup"] = "EtcdBackup"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: EtcdBackupSpec
    status: EtcdBackupStatus | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "default"))
