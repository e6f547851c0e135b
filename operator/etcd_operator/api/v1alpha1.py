"""The EtcdCluster API, etcd.pyetcd.io/v1alpha1: the single source of the CRD in crds/.

Pydantic models describe the spec and status; ``crd.py`` turns them into the CustomResource-
Definition (OpenAPI schema with CEL rules, printer columns, status and scale subresources). Field
names follow Kubernetes API conventions (camelCase on the wire); rules that the CRD enforces are
declared next to the fields they guard, with messages a user understands.

Every CEL rule on the spec that does not look at ``oldSelf`` is mirrored by a pydantic validator,
so that a spec the API server accepts parses here and one it refuses does not (the tests hold both
sides to the same examples). Transition rules (``oldSelf``) and the rule on ``metadata.name`` exist
only on the server: the models also parse bodies without metadata.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
# A volume size: a positive quantity in bytes, with a binary or decimal suffix ("4Gi", "1.5G",
# "500M"). Stricter than QUANTITY_PATTERN on purpose: no sign, no zero, no exponent and no milli
# ("100m" would be a tenth of a byte), so a typo is refused at apply time instead of leaving a
# StatefulSet whose volume claims Kubernetes rejects.
STORAGE_SIZE_PATTERN = (
    r"^(0*[1-9][0-9]*(\.[0-9]+)?|0*\.[0-9]*[1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
)
# Go durations as etcd parses --auto-compaction-retention for periodic mode ("1h", "30m"),
# or a bare number (hours in periodic mode, revisions in revision mode).
RETENTION_PATTERN = r"^([0-9]+|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"
# Revision mode keeps a number of revisions: etcd refuses a duration there.
REVISIONS_PATTERN = r"^[0-9]+$"
# A DNS subdomain (RFC 1123), as StorageClass names are.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# The cluster's name becomes the StatefulSet, Service and pod host names: a DNS-1035 label
# (Services refuse anything else), at most 52 characters because the StatefulSet controller
# labels pods with "<name>-<10-character revision hash>", which must fit in 63.
CLUSTER_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
CLUSTER_NAME_MAX_LENGTH = 52

HEARTBEAT_TO_ELECTION_RATIO = 5


class Rule(NamedTuple):
    """One CEL rule: the expression, the message shown when it is false, and optionally the
    field the error is reported on (``fieldPath``, relative to the node carrying the rule)."""

    rule: str
    message: str
    field_path: str | None = None


def rules(*items: Rule | tuple[str, str]) -> dict[str, Any]:
    """CEL validation rules for a field or object: ``Rule``s or (rule, message) pairs."""
    out: list[dict[str, str]] = []
    for item in items:
        r = Rule(*item)
        entry = {"rule": r.rule, "message": r.message}
        if r.field_path is not None:
            entry["fieldPath"] = r.field_path
        out.append(entry)
    return {"x-kubernetes-validations": out}


PRESERVE_UNKNOWN: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


def list_map(*keys: str) -> dict[str, Any]:
    """A list merged item by item on ``keys`` (server-side apply, strategic merge), like
    ``metav1.Condition`` lists; the API server also refuses two items with the same keys."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


class _Model(BaseModel):
    """Wire names are camelCase; unknown fields are refused in Python (the CRD prunes them)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", use_enum_values=True)


class Engine(StrEnum):
    """The server image members run."""

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
        description="Capacity of each member's volume: a positive Kubernetes quantity (4Gi).",
        pattern=STORAGE_SIZE_PATTERN,
        max_length=64,
    )
    storageClassName: str | None = Field(
        default=None,
        description="StorageClass of the volumes; the cluster default when unset. Immutable: "
        "it can be neither changed, set nor unset once the cluster exists.",
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
    )
    placement: DiskPlacement = Field(
        default_factory=DiskPlacement,
        description="Which nodes members may run on, by disk type.",
    )
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
    nodeSelector: dict[str, str] | None = Field(
        default=None, description="Node labels the member pods must match, as in a Pod spec."
    )
    tolerations: list[dict[str, Any]] | None = Field(
        default=None,
        description="Tolerations of the member pods, as in a Pod spec.",
        json_schema_extra={"items": {"type": "object", **PRESERVE_UNKNOWN}},
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Extra affinity; merged with the operator's anti-affinity and SSD placement.",
        json_schema_extra=PRESERVE_UNKNOWN,
    )
    priorityClassName: str | None = Field(
        default=None, description="PriorityClass of the member pods.", max_length=253
    )
    labels: dict[str, str] | None = Field(
        default=None,
        description="Extra labels of the member pods; the operator's own labels win on conflict.",
    )
    annotations: dict[str, str] | None = Field(
        default=None, description="Extra annotations of the member pods."
    )


AUTO_COMPACTION_RULES = rules(
    Rule(
        "!has(self.mode) || self.mode != 'revision' || !has(self.retention)"
        f" || self.retention.matches('{REVISIONS_PATTERN}')",
        "autoCompaction.retention must be a number of revisions (e.g. 1000) in revision mode",
        ".retention",
    )
)


class AutoCompaction(_Model):
    """etcd's automatic compaction of old revisions (--auto-compaction-*)."""

    model_config = ConfigDict(json_schema_extra=AUTO_COMPACTION_RULES)

    mode: Literal["periodic", "revision"] = Field(
        default="periodic",
        description="periodic: keep a window of time; revision: keep a number of revisions.",
        json_schema_extra={"maxLength": 16},  # for the CEL cost estimate; the enum is not
    )
    retention: str = Field(
        default="1h",
        description="periodic: a duration (1h, 30m) or hours; revision: revisions to keep. "
        '"0" turns automatic compaction off.',
        pattern=RETENTION_PATTERN,
        max_length=32,
    )

    @model_validator(mode="after")
    def _revisions_in_revision_mode(self) -> AutoCompaction:
        if self.mode == "revision" and not re.match(REVISIONS_PATTERN, self.retention):
            raise ValueError(AUTO_COMPACTION_RULES["x-kubernetes-validations"][0]["message"])
        return self


ELECTION_TIMEOUT_RULE = Rule(
    "!has(self.etcd) || !has(self.etcd.heartbeatIntervalMs)"
    " || !has(self.etcd.electionTimeoutMs)"
    f" || self.etcd.electionTimeoutMs >= {HEARTBEAT_TO_ELECTION_RATIO}"
    " * self.etcd.heartbeatIntervalMs",
    "etcd.electionTimeoutMs must be at least 5 times etcd.heartbeatIntervalMs",
    ".etcd.electionTimeoutMs",
)


class EtcdOptions(_Model):
    """etcd flags the operator sets on every member."""

    heartbeatIntervalMs: int = Field(
        default=100,
        ge=10,
        le=5000,
        description="--heartbeat-interval in milliseconds: about the round trip between members.",
    )
    electionTimeoutMs: int = Field(
        default=1000,
        ge=50,
        le=50000,
        description="--election-timeout in milliseconds: at least 5 times the heartbeat interval.",
    )
    quotaBackendBytes: int | None = Field(
        default=None,
        ge=0,
        le=8 * 1024**3,
        description="Backend size quota; etcd's default (2 GiB) when unset or 0; 8 GiB at most.",
    )
    autoCompaction: AutoCompaction | None = Field(
        default_factory=AutoCompaction,
        description="Automatic compaction; periodic, keeping one hour, unless set.",
    )
    snapshotCount: int | None = Field(
        default=None,
        ge=1,
        description="--snapshot-count: applied entries between Raft snapshots; etcd's when unset.",
    )

    @model_validator(mode="after")
    def _election_timeout_covers_heartbeats(self) -> EtcdOptions:
        if self.electionTimeoutMs < HEARTBEAT_TO_ELECTION_RATIO * self.heartbeatIntervalMs:
            raise ValueError(ELECTION_TIMEOUT_RULE.message)
        return self


class EtcdClusterSpec(_Model):
    """The desired cluster."""

    replicas: int = Field(
        default=3,
        ge=1,
        le=9,
        description="Number of members: 1, 3 or 5 are the sane choices; 1 to 9 are accepted "
        "(an even number adds no fault tolerance and the operator says so with an event).",
    )
    engine: Engine = Field(
        default=Engine.PYETCD,
        description="pyetcd (the bundled image) or etcd (upstream images): both speak etcd's API. "
        "Immutable.",
        # Bounds the string for the CEL cost estimate of the immutability rule; the enum
        # alone does not.
        json_schema_extra={"maxLength": 16},
    )
    version: str = Field(
        description="The image tag to run, e.g. 3.5.17.",
        pattern=r"^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$",
        max_length=64,
    )
    storage: Storage = Field(default_factory=Storage, description="The members' volumes.")
    podTemplate: PodTemplate = Field(
        default_factory=PodTemplate, description="What users may set on the member pods."
    )
    etcd: EtcdOptions = Field(
        default_factory=EtcdOptions, description="etcd flags set on every member."
    )
    # Reserved for later: client/peer TLS, backups to S3, bootstrap from a backup.
    tls: dict[str, Any] | None = Field(
        default=None,
        description="Reserved: client and peer TLS.",
        json_schema_extra=PRESERVE_UNKNOWN,
    )
    backup: dict[str, Any] | None = Field(
        default=None,
        description="Reserved: scheduled backups to S3-compatible storage.",
        json_schema_extra=PRESERVE_UNKNOWN,
    )
    bootstrap: dict[str, Any] | None = Field(
        default=None,
        description="Reserved: how a new cluster gets its data (empty, or from a backup).",
        json_schema_extra=PRESERVE_UNKNOWN,
    )


class ConditionType(StrEnum):
    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class Condition(_Model):
    """A Kubernetes condition (metav1.Condition)."""

    type: str = Field(description="Available, Progressing or Degraded.", max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(description="A CamelCase word saying why.", max_length=1024)
    message: str = Field(default="", description="Details for humans.", max_length=32768)
    lastTransitionTime: str = Field(description="When status last changed (RFC 3339).")
    observedGeneration: int | None = Field(
        default=None, description="The spec generation the condition was computed from."
    )


class Phase(StrEnum):
    """A one-word summary of the cluster's state."""

    PENDING = "Pending"
    CREATING = "Creating"
    RUNNING = "Running"
    SCALING = "Scaling"
    UPGRADING = "Upgrading"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class MemberStatus(_Model):
    """One etcd member as the operator last saw it."""

    name: str = Field(description="Member (and pod) name.")
    id: str | None = Field(default=None, description="Member ID in hex, as etcdctl prints it.")
    peerURL: str | None = Field(default=None, description="The member's peer URL.")
    clientURL: str | None = Field(default=None, description="The member's client URL.")
    leader: bool = Field(default=False, description="Whether the member leads the cluster.")
    learner: bool = Field(default=False, description="Whether the member is a learner.")
    healthy: bool = Field(default=False, description="Whether the member answered its check.")
    version: str | None = Field(default=None, description="The server version it reports.")
    dbSize: int | None = Field(default=None, description="Backend file size in bytes.")
    revision: int | None = Field(default=None, description="The member's current revision.")


class EtcdClusterStatus(_Model):
    """The observed cluster; written by the operator only."""

    phase: Phase | None = Field(default=None, description="A one-word summary.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Available, Progressing and Degraded.",
        json_schema_extra=list_map("type"),
    )
    members: list[MemberStatus] = Field(
        default_factory=list,
        description="The etcd members.",
        json_schema_extra=list_map("name"),
    )
    replicas: int | None = Field(default=None, description="Observed members (scale subresource).")
    readyReplicas: int | None = Field(
        default=None,
        description=(
            "Member pods that are Ready (their readiness probe, etcd's /health, passes), counted "
            "as a StatefulSet counts them, learners included; etcd's own view of each member "
            "is members[].healthy."
        ),
    )
    currentVersion: str | None = Field(default=None, description="The version members run.")
    leader: str | None = Field(default=None, description="Name of the leader member.")
    clusterID: str | None = Field(default=None, description="etcd's cluster ID in hex.")
    selector: str | None = Field(default=None, description="Pod label selector (scale).")
    observedGeneration: int | None = Field(
        default=None, description="The spec generation this status describes."
    )


class EtcdCluster(_Model):
    """An etcd cluster: a StatefulSet of pyetcd or etcd members, and its day 2 operations."""

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


# CEL rules on the spec as a whole; crd.py attaches them to the spec schema. The immutability
# rules look at oldSelf, so they run on updates only; they sit on the spec (not on the fields)
# because a rule on a field is skipped when the field is added or removed, and setting or
# unsetting storageClassName would change the StatefulSet's volume claims just the same.
SPEC_RULES = rules(
    Rule(
        "has(self.storage) && has(self.storage.storageClassName)"
        " ? (has(oldSelf.storage) && has(oldSelf.storage.storageClassName)"
        " && self.storage.storageClassName == oldSelf.storage.storageClassName)"
        " : !(has(oldSelf.storage) && has(oldSelf.storage.storageClassName))",
        "storage.storageClassName is immutable: create a new cluster to change the class",
        ".storage.storageClassName",
    ),
    ELECTION_TIMEOUT_RULE,
    Rule(
        "!has(oldSelf.engine) || !has(self.engine) || self.engine == oldSelf.engine",
        "engine is immutable: the data format of a running cluster cannot change engines",
        ".engine",
    ),
)

# CEL rules on the whole object: only metadata.name and metadata.generateName are visible there.
ROOT_RULES = rules(
    Rule(
        f"self.metadata.name.size() <= {CLUSTER_NAME_MAX_LENGTH}"
        f" && self.metadata.name.matches('{CLUSTER_NAME_PATTERN}')",
        f"metadata.name must be a DNS-1035 label (lower case letters, digits and '-', starting "
        f"with a letter) of at most {CLUSTER_NAME_MAX_LENGTH} characters: it names the "
        f"cluster's Services and pods",
    ),
)
