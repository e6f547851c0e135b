"""The EtcdDefrag kind: one on-demand defragmentation of one EtcdCluster, an operation
(``api.operation``).

A user creates one (``kubectl create``) to defragment a cluster now, rather than waiting for
``spec.maintenance.defrag``'s schedule or thresholds (a cluster needs no such settings to take
one). The cluster's own reconcile pass carries it out, with the same gate and order as every
defragmentation (``reconcile.defrag``): one member at a time, followers first, the leader last,
only while the cluster is healthy and no other operation owns it. Its status follows the
operation phases and records each member's sizes before and after.

Defragmentations of the same member are idempotent, so two requests never conflict: a member
defragmented after a request started counts for every request that asks for it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from etcd_operator.api.operation import OPERATION_SPEC_RULES, OperationSpec, OperationStatus
from etcd_operator.api.v1alpha1 import CLUSTER_NAME_PATTERN, MemberDefrag, list_map

KIND = "EtcdDefrag"
PLURAL = "etcddefrags"
SINGULAR = "etcddefrag"
SHORT_NAMES = ["etcddf"]

SPEC_RULES = OPERATION_SPEC_RULES

# A request the cluster could not carry out for this long fails (a Job's activeDeadlineSeconds).
DEFAULT_DEADLINE_SECONDS = 3600

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterName"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Reclaimed", "type": "integer", "jsonPath": ".status.reclaimedBytes"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]


class EtcdDefragSpec(OperationSpec):
    """One defragmentation of one cluster (immutable once created)."""

    clusterName: str = Field(
        min_length=1,
        max_length=63,
        pattern=CLUSTER_NAME_PATTERN,
        description="The EtcdCluster to defragment, in the same namespace.",
    )
    members: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The members (pod names) to defragment; every member when unset. A name "
        "that is not a member when the request starts rejects it.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    activeDeadlineSeconds: int = Field(
        default=DEFAULT_DEADLINE_SECONDS,
        ge=60,
        le=7 * 24 * 3600,
        description="Fail the request when it has not ended this long after it was created "
        "(the cluster was never healthy enough to defragment all its members).",
    )


class EtcdDefragStatus(OperationStatus):
    """Where the request is and what each member gave back."""

    pending: list[str] = Field(
        default_factory=list, description="Members still to defragment (while Running)."
    )
    members: list[MemberDefrag] = Field(
        default_factory=list,
        description="Each member defragmented for this request, with its sizes.",
        json_schema_extra=list_map("member"),
    )
    reclaimedBytes: int | None = Field(
        default=None, description="Bytes given back to the disk, over every member."
    )


class EtcdDefrag(BaseModel):
    """An on-demand defragmentation of an EtcdCluster's members."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    apiVersion: Literal["etcd.pyetcd.io/v1alpha1"] = "etcd.pyetcd.io/v1alpha1"
    kind: Literal["EtcdDefrag"] = "EtcdDefrag"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: EtcdDefragSpec
    status: EtcdDefragStatus | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "default"))
