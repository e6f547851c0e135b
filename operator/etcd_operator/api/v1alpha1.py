"""The EtcdCluster API, etcd.pyetcd.io/v1alpha1: the single source of the CRD in crds/.

Pydantic models describe the spec and status; ``crd.py`` turns them into the CustomResource-
Definition (OpenAPI schema with CEL rules, printer columns, status and scale subresources). Field
names follow Kubernetes API conventions (camelCase on the wire); rules that the CRD enforces are
declared next to the fields they guard, with messages a user understands.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP = "etcd.pyetcd.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "EtcdCluster"
PLURAL = "etcdclusters"
SINGULAR = "etcdcluster"
SHORT_NAMES = ["etcd", "ec"]

DEFAULT_SSD_LABEL = "etcd.pyetcd.io/disk=ssd"

# Kubernetes quantities ("1Gi", "500m", "2e3").
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
# Go durations as etcd parses --auto-compaction-retention for periodic mode ("1h", "30m"),
# or a bare number (hours in periodic mode, revisions in revision mode).
RETENTION_PATTERN = r"^([0-9]+|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"


def rules(*pairs: tuple[str, str]) -> dict[str, Any]:
    """CEL validation rules for a field or object: (rule, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in pairs]}


PRESERVE_UNKNOWN: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


class _Model(BaseModel):
    """Wire names are camelCase; unknown fields are refused in Python (the CRD prunes them)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", use_enum_values=True)


class Engine(StrEnum):
    PYETCD = "pyetcd"
    ETCD = "etcd"


class PlacementMode(StrEnum):
    """How strongly members are tied to SSD nodes."""

    REQUIRED = "Required"
    PREFERRED = "Preferred"
    OFF = "Off"


class DiskPlacement(_Model):
    """Node placement by disk type: by default members only run on nodes labelled as SSD."""

    mode: PlacementMode = Field(
        default=PlacementMode.REQUIRED,
        description="Required: only nodes with the label; Preferred: those first; Off: any node.",
    )
    nodeLabel: str = Field(
        default=DEFAULT_SSD_LABEL,
        description="The node label (key=value) that marks SSD nodes.",
        pattern=r"^([a-z0-9A-Z]([-a-z0-9A-Z_./]*[a-z0-9A-Z])?)=([-a-z0-9A-Z_.]*)$",
        max_length=316,
    )


class Storage(_Model):
    """The persistent volume of each member."""

    size: str = Field(
        default="4Gi",
        description="Capacity of each member's volume (a Kubernetes quantity).",
        pattern=QUANTITY_PATTERN,
    )
    storageClassName: str | None = Field(
        default=None,
        description="StorageClass of the volumes; the cluster default when unset. Immutable.",
        max_length=253,
    )
    placement: DiskPlacement = Field(default_factory=DiskPlacement)
    volumeRetention: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="What happens to the volumes when the EtcdCluster is deleted.",
    )


class PodTemplate(_Model):
    """What users may set on the member pods."""

    resources: dict[str, Any] | None = Field(
        default=None,
        description="Container resources (requests and limits), as in a Pod spec.",
        json_schema_extra=PRESERVE_UNKNOWN,
    )
    nodeSelector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = Field(
        default=None, json_schema_extra={"items": {"type": "object", **PRESERVE_UNKNOWN}}
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Extra affinity; merged with the operator's anti-affinity and SSD placement.",
        json_schema_extra=PRESERVE_UNKNOWN,
    )
    priorityClassName: str | None = Field(default=None, max_length=253)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class AutoCompaction(_Model):
    mode: Literal["periodic", "revision"] = "periodic"
    retention: str = Field(
        default="1h",
        description="periodic: a duration (1h, 30m) or hours; revision: revisions to keep.",
        pattern=RETENTION_PATTERN,
    )


class EtcdOptions(_Model):
    """etcd flags the operator sets on every member."""

    heartbeatIntervalMs: int = Field(default=100, ge=10, le=5000)
    electionTimeoutMs: int = Field(default=1000, ge=50, le=50000)
    quotaBackendBytes: int | None = Field(
        default=None,
        ge=0,
        le=8 * 1024**3,
        description="Backend size quota; etcd's default (2 GiB) when unset; 8 GiB at most.",
    )
    autoCompaction: AutoCompaction | None = Field(default_factory=AutoCompaction)
    snapshotCount: int | None = Field(default=None, ge=1)


class EtcdClusterSpec(_Model):
    replicas: int = Field(
        default=3,
        ge=1,
        le=9,
        description="Number of members: 1, 3 or 5 are the sane choices; 1 to 9 are accepted.",
    )
    engine: Engine = Field(
        default=Engine.PYETCD,
        description="pyetcd (the bundled image) or etcd (upstream images): both speak etcd's API.",
    )
    version: str = Field(
        description="The image tag to run, e.g. 3.5.17.",
        pattern=r"^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$",
        max_length=64,
    )
    storage: Storage = Field(default_factory=Storage)
    podTemplate: PodTemplate = Field(default_factory=PodTemplate)
    etcd: EtcdOptions = Field(default_factory=EtcdOptions)
    # Reserved for later: client/peer TLS, backups to S3, bootstrap from a backup.
    tls: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE_UNKNOWN)
    backup: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE_UNKNOWN)
    bootstrap: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE_UNKNOWN)


class ConditionType(StrEnum):
    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class Condition(_Model):
    """A Kubernetes condition (metav1.Condition)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    lastTransitionTime: str
    observedGeneration: int | None = None


class Phase(StrEnum):
    PENDING = "Pending"
    CREATING = "Creating"
    RUNNING = "Running"
    SCALING = "Scaling"
    UPGRADING = "Upgrading"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class MemberStatus(_Model):
    name: str
    id: str | None = Field(default=None, description="Member ID in hex, as etcdctl prints it.")
    peerURL: str | None = None
    clientURL: str | None = None
    leader: bool = False
    learner: bool = False
    healthy: bool = False
    version: str | None = None
    dbSize: int | None = None
    revision: int | None = None


class EtcdClusterStatus(_Model):
    phase: Phase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    members: list[MemberStatus] = Field(default_factory=list)
    replicas: int | None = Field(default=None, description="Observed members (scale subresource).")
    readyReplicas: int | None = None
    currentVersion: str | None = None
    leader: str | None = Field(default=None, description="Name of the leader member.")
    clusterID: str | None = None
    selector: str | None = Field(default=None, description="Pod label selector (scale).")
    observedGeneration: int | None = None


class EtcdCluster(_Model):
    apiVersion: Literal["etcd.pyetcd.io/v1alpha1"] = "etcd.pyetcd.io/v1alpha1"
    kind: Literal["EtcdCluster"] = "EtcdCluster"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: EtcdClusterSpec
    status: EtcdClusterStatus | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "default"))


# CEL rules on the spec as a whole; crd.py attaches them to the spec schema.
SPEC_RULES = rules(
    (
        "!has(oldSelf.storage) || !has(oldSelf.storage.storageClassName) || "
        "(has(self.storage) && has(self.storage.storageClassName) && "
        "self.storage.storageClassName == oldSelf.storage.storageClassName)",
        "storage.storageClassName is immutable: create a new cluster to change the class",
    ),
    (
        "!has(self.etcd) || !has(self.etcd.heartbeatIntervalMs)"
        " || !has(self.etcd.electionTimeoutMs)"
        " || self.etcd.electionTimeoutMs >= 5 * self.etcd.heartbeatIntervalMs",
        "etcd.electionTimeoutMs must be at least 5 times etcd.heartbeatIntervalMs",
    ),
    (
        "!has(oldSelf.engine) || !has(self.engine) || self.engine == oldSelf.engine",
        "engine is immutable: the data format of a running cluster cannot change engines",
    ),
)
