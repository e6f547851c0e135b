"""The shape every one-off operation object shares (etcd-druid's ``EtcdOpsTask``): an immutable
spec, a phase that only moves forward, terminal states, and a time to live once it ended.

An operation (an on-demand backup, a defragmentation, a restore) is one object per run: its
spec says what to do and is never edited (a CEL rule on the kind refuses any change; a different
run is a new object); its status says where the run is. The phase goes
``Pending -> Running -> Succeeded | Failed``, or ``Pending -> Rejected`` when the operation is
refused before it starts (the cluster does not exist, another operation of the same kind runs).
Terminal phases never change again, so a user (or a script) can wait for one. An object whose
``ttlSecondsAfterFinished`` is set is deleted that long after it ended.

The kinds that use it embed ``OperationStatus`` and ``OPERATION_SPEC_RULES``; the pure state
machine over these types is ``reconcile.operations``.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from etcd_operator.api.v1alpha1 import Condition, Rule, list_map, rules


class OperationPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REJECTED = "Rejected"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class OperationConditionType(StrEnum):
    """As a Job's: ``Complete`` once it succeeded, ``Failed`` once it failed or was rejected
    (``kubectl wait --for=condition=Complete`` works on every operation kind)."""

    COMPLETE = "Complete"
    FAILED = "Failed"


TERMINAL = frozenset({OperationPhase.SUCCEEDED, OperationPhase.FAILED, OperationPhase.REJECTED})

# The only moves a phase makes; anything else is refused by ``reconcile.operations``.
TRANSITIONS: dict[OperationPhase, frozenset[OperationPhase]] = {
    OperationPhase.PENDING: frozenset(
        {OperationPhase.RUNNING, OperationPhase.REJECTED, OperationPhase.FAILED}
    ),
    OperationPhase.RUNNING: frozenset({OperationPhase.SUCCEEDED, OperationPhase.FAILED}),
    OperationPhase.SUCCEEDED: frozenset(),
    OperationPhase.FAILED: frozenset(),
    OperationPhase.REJECTED: frozenset(),
}

# The spec of an operation never changes once created: a changed run is a new object.
OPERATION_SPEC_RULES = rules(
    Rule("self == oldSelf", "spec is immutable: create a new object for a different run")
)


class OperationSpec(BaseModel):
    """The fields every operation's spec has; a kind's spec extends it."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    clusterName: str = Field(
        description="The EtcdCluster (same namespace) the operation acts on.",
        min_length=1,
        max_length=63,
    )
    ttlSecondsAfterFinished: int | None = Field(
        default=None,
        ge=0,
        description="Delete the object this many seconds after it ended; kept when unset.",
    )


class OperationStatus(BaseModel):
    """Where a run is; written by the operator only."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    phase: OperationPhase = Field(
        default=OperationPhase.PENDING,
        description="Pending, Running, Succeeded, Failed or Rejected; never moves backwards.",
    )
    reason: str | None = Field(default=None, description="A CamelCase word saying why.")
    message: str | None = Field(default=None, description="Details for humans.")
    startedAt: str | None = Field(default=None, description="When it started running (RFC 3339).")
    completedAt: str | None = Field(default=None, description="When it ended (RFC 3339).")
    observedGeneration: int | None = Field(
        default=None, description="The generation of the object this status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Complete or Failed, as a Job's.",
        json_schema_extra=list_map("type"),
    )
