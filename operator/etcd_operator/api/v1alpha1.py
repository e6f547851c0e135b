"""The EtcdCluster API, etcd.pyetcd.io/v1alpha1: the single source of the CRD in crds/.

Pydantic models describe the spec and status; ``crd.py`` turns them into the CustomResource-
Definition (OpenAPI schema with CEL rules, printer columns, status and scale subresources). Field
names follow Kubernetes API conventions (camelCase on the wire); rules that the CRD enforces are
declared next to the fields they guard, with messages a user understands.

Every CEL rule on the spec that does not look at ``oldSelf`` is mirrored by a pydantic validator,
so that a spec the API server accepts parses here and one it refuses does not (the tests hold both
sides to the same examples). Transition rules (``oldSelf``) and the rule on ``metadata.name`` exist
only on the server: the models also parse bodies without metadata.

The Kubernetes types that ``podTemplate`` embeds come in two forms. The small ones (a toleration,
an image pull secret) are pydantic models here, their fields checked against the Kubernetes
OpenAPI by the tests. The big ones (resources, affinity, topology spread constraints, the pod
security context) are dicts whose schema is generated from the Kubernetes OpenAPI into
``corev1`` (see ``tools/kubeschemas.py``): that schema is both the CRD's and the one ``structural``
validates them against here, so a typo (``cpu: lots``, ``podAntiAfinity``) is refused on both
sides.

The TLS types live in ``tls`` (as the backup types live in ``backup``), the NetworkPolicy's in
``network``.

The module is long on purpose (some 650 lines): it is one API version's types, each with the
rules that guard it beside it, as Kubernetes keeps a group version's types in one ``types.go``;
the schemas generated from Kubernetes live apart, in ``corev1``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from etcd_operator.api import corev1, structural
from etcd_operator.api.analysis import ANALYSIS_NEEDS_BACKUP, AnalysisSpec, KeyspaceStatus
from etcd_operator.api.auth import AUTH_REMOVE_RULE, AUTH_SECRET_RULE, AuthSpec
from etcd_operator.api.backup import BackupSpec, BackupStore, BootstrapSpec, SecretKeyRef
from etcd_operator.api.maintenance import MaintenanceSpec
from etcd_operator.api.network import NetworkPolicySpec
from etcd_operator.api.tls import TLS_CHANGE_RULE, TLSSpec
from etcd_operator.api.versions import (
    VERSION_CHANGE_RULE,
    VERSION_MAX_LENGTH,
    VERSION_PATTERN,
)

GROUP = "etcd.pyetcd.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "EtcdCluster"
PLURAL = "etcdclusters"
SINGULAR = "etcdcluster"
SHORT_NAMES = ["etcd", "ec"]

DEFAULT_SSD_LABEL = "etcd.pyetcd.io/disk=ssd"

# Kubernetes quantities ("1Gi", "500m", "2e3"): apimachinery's resource.Quantity, as
# controller-gen writes it into CRDs.
QUANTITY_PATTERN = corev1.QUANTITY_PATTERN
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
# A toleration's key: empty, or a label key (a qualified name: an optional DNS subdomain prefix
# and "/", then at most 63 characters); and its value, a label value. As Kubernetes checks them.
TOLERATION_KEY_PATTERN = (
    r"^(([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"

HEARTBEAT_TO_ELECTION_RATIO = 5
# The most members a cluster has: its pods are <name>-0 .. <name>-8 whatever its history (the
# StatefulSet reuses ordinals), which is what lets a certificate name every member in advance.
MAX_REPLICAS = 9


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


def conforming(schema: dict[str, Any]) -> AfterValidator:
    """A pydantic check of a dict (or list) against a generated Kubernetes schema. Used beside
    ``WithJsonSchema`` of the same schema, which puts it in the CRD: one schema for both sides."""

    def check(value: Any) -> Any:
        problems = structural.errors(schema, value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    return AfterValidator(check)


RUN_AS_ROOT_RULE = Rule(
    "!has(self.runAsUser) || self.runAsUser != 0 || (has(self.runAsNonRoot) && !self.runAsNonRoot)",
    "securityContext.runAsUser 0 (root) needs runAsNonRoot: false: members run as non-root "
    "unless told otherwise, and the kubelet would refuse to start them",
    ".runAsUser",
)
POD_SECURITY_CONTEXT_SCHEMA = {**corev1.POD_SECURITY_CONTEXT, **rules(RUN_AS_ROOT_RULE)}


def _not_root_by_accident(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("runAsUser") == 0 and value.get("runAsNonRoot") is not False:
        raise ValueError(RUN_AS_ROOT_RULE.message)
    return value


Resources = Annotated[
    dict[str, Any], WithJsonSchema(corev1.RESOURCES), conforming(corev1.RESOURCES)
]
Affinity = Annotated[dict[str, Any], WithJsonSchema(corev1.AFFINITY), conforming(corev1.AFFINITY)]
TopologySpreadConstraints = Annotated[
    list[dict[str, Any]],
    WithJsonSchema(corev1.TOPOLOGY_SPREAD_CONSTRAINTS),
    conforming(corev1.TOPOLOGY_SPREAD_CONSTRAINTS),
]
PodSecurityContext = Annotated[
    dict[str, Any],
    WithJsonSchema(POD_SECURITY_CONTEXT_SCHEMA),
    conforming(POD_SECURITY_CONTEXT_SCHEMA),
    AfterValidator(_not_root_by_accident),
]

# Kubernetes' own checks of a toleration (ValidateTolerations), which would otherwise only fail
# when the operator applies the StatefulSet.
TOLERATION_RULES = [
    Rule(
        "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
        "a toleration without a key must have operator Exists (it then tolerates every taint)",
        ".operator",
    ),
    Rule(
        "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
        "a toleration with operator Exists has no value: it matches every value of its key",
        ".value",
    ),
    Rule(
        "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        "tolerationSeconds needs effect NoExecute: it is how long a NoExecute taint is tolerated",
        ".effect",
    ),
]


class Toleration(_Model):
    """A toleration of the member pods (core/v1 Toleration), checked as Kubernetes checks it."""

    model_config = ConfigDict(json_schema_extra=rules(*TOLERATION_RULES))

    key: str | None = Field(
        default=None,
        description="The taint key tolerated; empty (with operator Exists) for every taint.",
        pattern=TOLERATION_KEY_PATTERN,
        max_length=317,
    )
    operator: Literal["Equal", "Exists"] | None = Field(
        default=None,
        description="Equal (the default): the taint's value must be value; Exists: any value.",
        json_schema_extra={"maxLength": 8},  # for the CEL cost estimate; the enum is not
    )
    value: str | None = Field(
        default=None,
        description="The taint value tolerated, with operator Equal.",
        pattern=LABEL_VALUE_PATTERN,
        max_length=63,
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None,
        description="The taint effect tolerated; every effect when unset.",
        json_schema_extra={"maxLength": 16},
    )
    tolerationSeconds: int | None = Field(
        default=None,
        description="With effect NoExecute: how long a member stays on a node after the taint; "
        "forever when unset.",
    )

    @model_validator(mode="after")
    def _as_kubernetes_checks_it(self) -> Toleration:
        if not self.key and self.operator != "Exists":
            raise ValueError(TOLERATION_RULES[0].message)
        if self.operator == "Exists" and self.value:
            raise ValueError(TOLERATION_RULES[1].message)
        if self.tolerationSeconds is not None and self.effect != "NoExecute":
            raise ValueError(TOLERATION_RULES[2].message)
        return self


class ImagePullSecret(_Model):
    """A Secret that lets the kubelet pull the member image (core/v1 LocalObjectReference)."""

    # Not x-kubernetes-map-type: atomic, as Kubernetes marks the type: a CRD's map-list items
    # must be granular.
    name: str = Field(
        description="Name of a kubernetes.io/dockerconfigjson Secret in the cluster's namespace.",
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )


class PodTemplate(_Model):
    """What users may set on the member pods."""

    resources: Resources | None = Field(
        default=None,
        description="Resources of the etcd container (requests and limits, e.g. cpu: 500m, "
        "memory: 1Gi), as in a Pod spec.",
    )
    nodeSelector: dict[str, str] | None = Field(
        default=None, description="Node labels the member pods must match, as in a Pod spec."
    )
    tolerations: list[Toleration] | None = Field(
        default=None,
        description="Tolerations of the member pods, as in a Pod spec.",
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    affinity: Affinity | None = Field(
        default=None,
        description="Extra affinity; merged with the operator's anti-affinity and SSD placement.",
    )
    topologySpreadConstraints: TopologySpreadConstraints | None = Field(
        default=None,
        description="The member pods' topology spread constraints, used as given. Select the "
        "members with labelSelector.matchLabels etcd.pyetcd.io/cluster: <cluster name>.",
    )
    priorityClassName: str | None = Field(
        default=None,
        description="PriorityClass of the member pods.",
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
    )
    imagePullSecrets: list[ImagePullSecret] | None = Field(
        default=None,
        description="Secrets the kubelet uses to pull the member image from a private registry.",
        json_schema_extra=list_map("name"),
    )
    securityContext: PodSecurityContext | None = Field(
        default=None,
        description="The pod's securityContext, merged field by field over the operator's "
        "(non-root 65532, seccomp RuntimeDefault); a field set here also replaces the etcd "
        "container's own.",
    )
    labels: dict[str, str] | None = Field(
        default=None,
        description="Extra labels of the member pods; the operator's own labels win on conflict.",
    )
    annotations: dict[str, str] | None = Field(
        default=None, description="Extra annotations of the member pods."
    )

    @model_validator(mode="after")
    def _one_entry_per_pull_secret(self) -> PodTemplate:
        # The list merges by name (server-side apply): the API server refuses a duplicate.
        names = [secret.name for secret in self.imagePullSecrets or []]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"imagePullSecrets[{index}]: Duplicate value: name {name!r}")
        return self


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


class ReplacementPolicy(StrEnum):
    """What the operator does when a member has lost its data."""

    AUTOMATIC = "Automatic"
    MANUAL = "Manual"


# The annotation that approves a replacement under the Manual policy: its value names the member
# (``<cluster>-<n>``), optionally followed by ``:<anything>`` to approve the same member again
# later (a value is used once: ``status.lastReplacement.approval`` records it).
REPLACE_MEMBER_ANNOTATION = "etcd.pyetcd.io/replace-member"
# The user's consent to rebuild a cluster that lost its quorum for good from the surviving member
# with the highest raft index; any value, used once (``status.recoverQuorumToken`` records it).
RECOVER_QUORUM_ANNOTATION = "etcd.pyetcd.io/recover-quorum"


class ReplacementSpec(_Model):
    """Replacement of members whose data is gone (a wiped or new volume, a lost log)."""

    policy: ReplacementPolicy = Field(
        default=ReplacementPolicy.AUTOMATIC,
        description="Automatic: a member that lost its data is re-added under a new ID, one at "
        "a time, while the others keep a quorum. Manual: reported (MemberDataLost) until the "
        f"annotation {REPLACE_MEMBER_ANNOTATION}=<member name>.",
        json_schema_extra={"maxLength": 16},
    )
    nodeLostAfterSeconds: int = Field(
        default=300,
        ge=30,
        le=7 * 24 * 3600,
        description="A member whose node has not been Ready for this long, while its volume is "
        "local to that node (the volume's node affinity names the node), counts as having lost "
        "its data: it is replaced on another node. Members on network volumes are not: their "
        "data is not on the node.",
    )


class QuorumLossPolicy(StrEnum):
    """What the operator does when the quorum is lost for good."""

    MANUAL = "Manual"
    AUTOMATIC = "Automatic"


class RecoverySpec(_Model):
    """Recovery from a permanent loss of quorum (see docs/operations.md)."""

    quorumLoss: QuorumLossPolicy = Field(
        default=QuorumLossPolicy.MANUAL,
        description="Manual: a lost quorum is reported (QuorumLost) and rebuilt from the "
        f"survivor on the annotation {RECOVER_QUORUM_ANNOTATION}=<token>. Automatic: also by "
        "itself after quorumLostAfterSeconds, once every member gone says its data is lost "
        "(docs/api.md).",
        json_schema_extra={"maxLength": 16},
    )
    quorumLostAfterSeconds: int = Field(
        default=600,
        ge=60,
        le=7 * 24 * 3600,
        description="Automatic only: how long the cluster must have been unavailable first.",
    )


class RolloutSpec(_Model):
    """How a change to what the members run (version, image, flags, resources) reaches them:
    one member at a time, followers first and the leader last, each step only while every member
    is healthy and caught up (see docs/operations.md)."""

    progressDeadlineSeconds: int = Field(
        default=600,
        ge=30,
        le=24 * 3600,
        description="How long a rollout may go without a member restarted and back healthy "
        "before it counts as stuck (Progressing=False, reason RolloutStuck, and a Warning "
        "event). A stuck rollout restarts no further member; it goes on by itself once every "
        "member is healthy again.",
    )
    minReadySeconds: int = Field(
        default=10,
        ge=0,
        le=3600,
        description="How long every member pod must have been Ready before the next member is "
        "restarted (as a StatefulSet's minReadySeconds): a member that crashes again right "
        "after it rejoined holds the rollout instead of letting it take the next one down.",
    )


class EtcdClusterSpec(_Model):
    """The desired cluster."""

    replicas: int = Field(
        default=3,
        ge=0,
        le=MAX_REPLICAS,
        description="Number of members: 1, 3 or 5 (1 to 9 accepted). 0 hibernates the cluster: "
        "the members stop, keeping their volumes, and come back when replicas is set again.",
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
        description="The image tag to run, e.g. 3.5.17. It may move forward by patch versions "
        "and to the next minor version; a downgrade or a skipped minor is refused.",
        pattern=VERSION_PATTERN,
        max_length=VERSION_MAX_LENGTH,
    )
    storage: Storage = Field(default_factory=Storage, description="The members' volumes.")
    podTemplate: PodTemplate = Field(
        default_factory=PodTemplate, description="What users may set on the member pods."
    )
    etcd: EtcdOptions = Field(
        default_factory=EtcdOptions, description="etcd flags set on every member."
    )
    tls: TLSSpec | None = Field(
        default=None,
        description="Client and peer TLS: https, client certificates required, certificates "
        "generated by the operator or from Secrets. Set at creation; immutable afterwards.",
    )
    auth: AuthSpec | None = Field(
        default=None,
        description="etcd's auth on, the operator connecting as root. Cannot be removed.",
    )
    backup: BackupSpec | None = Field(
        default=None,
        description="Backups to S3-compatible storage: where, when, how, and for how long.",
    )
    analysis: AnalysisSpec | None = Field(
        default=None,
        description="Analyse the newest backup's key space on a schedule or on request "
        "(status.keyspace). Needs backup.",
    )
    bootstrap: BootstrapSpec | None = Field(
        default=None,
        description="A new cluster's data from a backup; only at creation (immutable).",
    )
    replacement: ReplacementSpec = Field(
        default_factory=ReplacementSpec,
        description="What happens to a member whose data is lost.",
    )
    recovery: RecoverySpec = Field(
        default_factory=RecoverySpec,
        description="What happens when the quorum is lost for good.",
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="How changes that restart members are rolled out.",
    )
    maintenance: MaintenanceSpec = Field(
        default_factory=MaintenanceSpec,
        description="Upkeep the operator does by itself: defragmentation.",
    )
    networkPolicy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec,
        description="Who may reach the members: a NetworkPolicy admitting peers only between "
        "members, clients from the cluster's namespace (or the peers listed) and the operator, "
        "and metrics scrapers listed.",
    )

    @model_validator(mode="after")
    def _analysis_needs_backup(self) -> EtcdClusterSpec:
        if self.analysis is not None and self.backup is None:
            raise ValueError(ANALYSIS_NEEDS_BACKUP[1])
        return self


class ConditionType(StrEnum):
    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    BACKUP_READY = "BackupReady"
    TLS_READY = "TLSReady"
    AUTH_READY = "AuthReady"


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
    HIBERNATED = "Hibernated"


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


class BackupRef(_Model):
    """One EtcdBackup, as the cluster's status names it."""

    name: str = Field(description="The EtcdBackup object.")
    time: str | None = Field(default=None, description="When it ended (RFC 3339).")
    revision: int | None = Field(default=None, description="The revision it holds.")
    message: str | None = Field(default=None, description="Why it failed.")


class RecoveryPoint(_Model):
    """A point a new cluster can be restored to: a revision, and when it was written."""

    revision: int = Field(description="The revision.")
    time: str | None = Field(default=None, description="Its time.")


class ContinuousBackupStatus(_Model):
    """The continuous backup: the chain the operator extends, and how far it reaches."""

    backup: str = Field(description="The EtcdBackup extended.")
    baseRevision: int = Field(description="Its revision.")
    revision: int = Field(description="The last revision stored.")
    time: str | None = Field(default=None, description="Every write until then is stored.")
    segments: int = Field(default=0, description="Segments stored.")
    broken: str | None = Field(default=None, description="Why the chain broke.")
    message: str | None = Field(default=None, description="Why it is not recording.")


class ClusterBackupStatus(_Model):
    """The cluster's backups: the last success and failure, what comes next, and what the
    operator acted on (so that the same annotation or schedule slot never makes two)."""

    lastSuccessful: BackupRef | None = Field(default=None, description="The newest success.")
    lastSuccessfulTime: str | None = Field(
        default=None, description="When it ended (RFC 3339): the printer column's age."
    )
    lastFailed: BackupRef | None = Field(
        default=None, description="The newest failure, when newer than the last success."
    )
    nextScheduledTime: str | None = Field(
        default=None, description="The next slot of the schedule (RFC 3339)."
    )
    lastScheduledTime: str | None = Field(
        default=None, description="The slot of the last scheduled backup created (RFC 3339)."
    )
    lastRequest: str | None = Field(
        default=None,
        description="The last value of the etcd.pyetcd.io/backup annotation acted on.",
    )
    continuous: ContinuousBackupStatus | None = Field(
        default=None, description="The continuous backup."
    )
    recoverableFrom: RecoveryPoint | None = Field(
        default=None, description="The earliest point a restore can pick."
    )
    recoverableTo: RecoveryPoint | None = Field(
        default=None, description="The latest point a restore can pick."
    )


class RestoredFrom(_Model):
    """The backup a cluster was created from, as the operator resolved it at creation: what each
    founding member's restore init container fetches (recorded, so that the members' pod
    template never changes afterwards, even when the EtcdBackup object goes away)."""

    backup: str | None = Field(default=None, description="The EtcdBackup, when named.")
    location: str = Field(description="s3://bucket/key of the backup object.")
    store: BackupStore = Field(description="Where the object is.")
    sha256: str | None = Field(
        default=None, description="The snapshot's sha256 the EtcdBackup recorded, checked."
    )
    encrypted: bool | None = Field(default=None, description="Whether it is encrypted.")
    encryptionKeySecret: SecretKeyRef | None = Field(
        default=None, description="The key that decrypts it."
    )
    bumpRevision: int = Field(description="Added to every restored revision.")
    markCompacted: bool = Field(description="The restored revisions are marked compacted.")
    toRevision: int | None = Field(default=None, description="Replayed up to this revision.")
    toTime: str | None = Field(default=None, description="Replayed up to this time.")
    baseRevision: int | None = Field(default=None, description="The backup's revision.")


class MemberReplacement(_Model):
    """One replacement of a member whose data was lost."""

    member: str = Field(description="The member (and pod) name.")
    oldID: str | None = Field(
        default=None, description="The member ID removed from etcd (hex); none for a re-add."
    )
    reason: str = Field(description="The evidence: why the member's data counts as lost.")
    time: str = Field(description="When the operator replaced it (RFC 3339).")
    approval: str | None = Field(
        default=None,
        description="The value of the replace-member annotation that approved it (Manual).",
    )


class QuorumRecoveryPhase(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class QuorumRecovery(_Model):
    """One rebuild of a cluster that lost its quorum, from its surviving member or, when none
    survived, from its latest backup: the record of what may have been lost (writes the
    survivor had not received, or everything after the backup)."""

    token: str = Field(description="The recover-quorum annotation's value that consented.")
    phase: QuorumRecoveryPhase = Field(description="Running, Succeeded or Failed.")
    member: str | None = Field(
        default=None, description="The surviving member the cluster was rebuilt from."
    )
    memberID: str | None = Field(
        default=None, description="Its member ID (hex), kept by the rebuild."
    )
    backup: str | None = Field(
        default=None,
        description="The EtcdBackup the cluster was rebuilt from, when no member survived.",
    )
    raftIndex: int | None = Field(
        default=None, description="The survivor's raft index when the rebuild started."
    )
    revisionBefore: int | None = Field(
        default=None,
        description="The survivor's revision when the rebuild started, or the backup's.",
    )
    revisionAfter: int | None = Field(
        default=None, description="The rebuilt cluster's revision when it first answered."
    )
    removed: list[str] = Field(
        default_factory=list, description="The members removed (their volumes deleted)."
    )
    startedAt: str = Field(description="When the rebuild started (RFC 3339).")
    completedAt: str | None = Field(default=None, description="When it ended (RFC 3339).")
    message: str | None = Field(default=None, description="How it ended, or why it failed.")


class RolloutStatus(_Model):
    """The latest rollout: the members restarted one at a time onto a new pod template."""

    revision: str = Field(description="The StatefulSet revision the members are rolled to.")
    startedAt: str = Field(description="When the first member was found outdated (RFC 3339).")
    updatedMembers: int = Field(description="Members running the revision.")
    members: int = Field(description="Members in all.")
    lastRestarted: str | None = Field(
        default=None, description="The member restarted last by this rollout."
    )
    lastRestartedAt: str | None = Field(default=None, description="When (RFC 3339).")
    completedAt: str | None = Field(
        default=None, description="When every member ran the revision and was healthy."
    )
    supersededRevision: str | None = Field(
        default=None,
        description="The revision of an unfinished rollout this one replaced: a member that "
        "rollout left down (a crash on its template) is restarted first.",
    )


class MemberDefrag(_Model):
    """The last defragmentation of one member."""

    member: str = Field(description="The member (and pod) name.")
    time: str = Field(description="When it was defragmented (RFC 3339).")
    trigger: str = Field(description="Schedule, FreeSpace, QuotaUsage, NoSpace or Request.")
    dbSizeBefore: int | None = Field(default=None, description="Its db file before, in bytes.")
    dbSizeAfter: int | None = Field(default=None, description="Its db file after, in bytes.")
    reclaimed: int | None = Field(default=None, description="Bytes given back to the disk.")


class DefragStatus(_Model):
    """Defragmentation: the run under way and the last result per member."""

    pending: list[str] = Field(
        default_factory=list, description="Members still to defragment in the run under way."
    )
    trigger: str | None = Field(default=None, description="What started the run under way.")
    lastScheduledTime: str | None = Field(
        default=None, description="The schedule slot last acted on (RFC 3339)."
    )
    members: list[MemberDefrag] = Field(
        default_factory=list,
        description="The last defragmentation of each member.",
        json_schema_extra=list_map("member"),
    )


class CertificateStatus(_Model):
    """One certificate the members or the operator use, as the operator last read it."""

    secret: str = Field(description="The Secret that holds it.")
    plane: str = Field(description="client or peer.")
    role: str = Field(
        description="CA, Server (the members' on the client port), Peer, or Client (the "
        "operator's, its backups', and applications')."
    )
    notAfter: str | None = Field(default=None, description="When it expires (RFC 3339).")
    renewAfter: str | None = Field(
        default=None,
        description="When the operator renews it (source Generated): two thirds of its lifetime.",
    )


class TLSStatus(_Model):
    """TLS as the operator last saw it: each certificate's expiry, and the last renewal."""

    notAfter: str | None = Field(
        default=None,
        description="The earliest expiry among the members' and the client certificates.",
    )
    certificates: list[CertificateStatus] = Field(
        default_factory=list,
        description="Every certificate of the cluster.",
        json_schema_extra=list_map("secret"),
    )
    lastRenewal: str | None = Field(
        default=None, description="When the operator last issued certificates (RFC 3339)."
    )


class AuthStatus(_Model):
    """etcd's auth as the operator last saw it (never a password)."""

    enabled: bool = Field(description="etcd reports auth on.")
    rootSecretName: str | None = Field(default=None, description="root's password's Secret.")


class EtcdClusterStatus(_Model):
    """The observed cluster; written by the operator only."""

    phase: Phase | None = Field(default=None, description="A one-word summary.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Available, Progressing, Degraded and, with spec.backup, BackupReady; with "
        "spec.tls, TLSReady; with spec.auth, AuthReady.",
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
    currentVersion: str | None = Field(
        default=None, description="The version members run: the lowest a healthy member reports."
    )
    clusterVersion: str | None = Field(
        default=None,
        description="The cluster version etcd reports (its /version): the minor version the "
        "cluster runs at, which moves up once every member runs the new one.",
    )
    leader: str | None = Field(default=None, description="Name of the leader member.")
    clusterID: str | None = Field(default=None, description="etcd's cluster ID in hex.")
    selector: str | None = Field(default=None, description="Pod label selector (scale).")
    backup: ClusterBackupStatus | None = Field(
        default=None, description="Backups, when spec.backup is set."
    )
    keyspace: KeyspaceStatus | None = Field(
        default=None, description="The keyspace analyses, when spec.analysis is set."
    )
    restoredFrom: RestoredFrom | None = Field(
        default=None,
        description="The backup the cluster was created from (spec.bootstrap), or rebuilt "
        "from after losing every member (recover-quorum).",
    )
    membersReplaced: int | None = Field(
        default=None, description="How many times a member that lost its data was replaced."
    )
    lastReplacement: MemberReplacement | None = Field(
        default=None, description="The last replacement of a member that lost its data."
    )
    quorumRecovery: QuorumRecovery | None = Field(
        default=None,
        description="The last rebuild after a lost quorum (recover-quorum annotation).",
    )
    recoverQuorumToken: str | None = Field(
        default=None,
        description="The last recover-quorum annotation value acted on or refused: a value is "
        "used once.",
    )
    rollout: RolloutStatus | None = Field(
        default=None, description="The latest rollout of a changed pod template."
    )
    defrag: DefragStatus | None = Field(
        default=None, description="Defragmentation, with spec.maintenance.defrag."
    )
    tls: TLSStatus | None = Field(
        default=None, description="Certificates and their expiry, with spec.tls."
    )
    auth: AuthStatus | None = Field(default=None, description="etcd's auth, with spec.auth.")
    networkPolicy: str | None = Field(
        default=None,
        description="The NetworkPolicy that restricts who reaches the members, while "
        "spec.networkPolicy is in force.",
    )
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
# unsetting storageClassName would change the StatefulSet's volume claims just the same. The
# rules between fields (analysis needs backup) are mirrored by EtcdClusterSpec's validators.
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
        "has(self.bootstrap) == has(oldSelf.bootstrap)"
        " && (!has(self.bootstrap) || self.bootstrap == oldSelf.bootstrap)",
        "bootstrap is immutable: it says where a cluster's data came from when it was created",
        ".bootstrap",
    ),
    Rule(*VERSION_CHANGE_RULE),
    Rule(
        "!has(oldSelf.engine) || !has(self.engine) || self.engine == oldSelf.engine",
        "engine is immutable: the data format of a running cluster cannot change engines",
        ".engine",
    ),
    Rule(*TLS_CHANGE_RULE),
    Rule(*AUTH_REMOVE_RULE),
    Rule(*AUTH_SECRET_RULE),
    Rule(*ANALYSIS_NEEDS_BACKUP),
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
