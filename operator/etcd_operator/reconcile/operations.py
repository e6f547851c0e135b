"""The state machine of one-off operations (``api.operation``): pure transitions and expiry.

``advance`` moves a status to a new phase, or raises ``IllegalTransitionError``: a phase never
moves backwards and a terminal phase never changes, whatever a retried or restarted operator
pass asks. Start and completion times are set on the moves into Running and into a terminal
phase, once. ``expired`` tells when an ended operation with a time to live is to be deleted.
Each operation kind decides *when* to move (it observes its own work); this module only makes
sure every kind moves the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

from etcd_operator.api.operation import (
    TRANSITIONS,
    OperationConditionType,
    OperationPhase,
    OperationSpec,
    OperationStatus,
)
from etcd_operator.api.times import RFC3339, rfc3339
from etcd_operator.api.v1alpha1 import Condition

S = TypeVar("S", bound=OperationStatus)


class IllegalTransitionError(ValueError):
    """A phase change the operation state machine does not allow."""


def _parse(value: str) -> datetime:
    return datetime.strptime(value, RFC3339).replace(tzinfo=UTC)


def advance(
    status: S,
    phase: OperationPhase,
    now: datetime,
    *,
    reason: str | None = None,
    message: str | None = None,
) -> S:
    """``status`` moved to ``phase`` (the same phase: only reason and message change)."""
    current = OperationPhase(status.phase)
    if phase != current and phase not in TRANSITIONS[current]:
        raise IllegalTransitionError(f"an operation cannot go from {current} to {phase}")
    if phase == current and current.terminal:
        return status  # ended: nothing about it changes any more
    update: dict[str, object] = {"phase": phase}
    if reason is not None:
        update["reason"] = reason
    if message is not None:
        update["message"] = message
    if phase == OperationPhase.RUNNING and status.startedAt is None:
        update["startedAt"] = rfc3339(now)
    if phase.terminal:
        update["completedAt"] = rfc3339(now)
    return status.model_copy(update=update)


def conditions(status: OperationStatus, now: datetime) -> list[Condition]:
    """Complete or Failed, as a Job's, once the operation ended; none before."""
    phase = OperationPhase(status.phase)
    if not phase.terminal:
        return []
    kind = (
        OperationConditionType.COMPLETE
        if phase == OperationPhase.SUCCEEDED
        else OperationConditionType.FAILED
    )
    return [
        Condition(
            type=kind,
            status="True",
            reason=status.reason or str(phase),
            message=status.message or "",
            lastTransitionTime=rfc3339(now),
        )
    ]


def ended(status: S, phase: OperationPhase, now: datetime, *, reason: str, message: str) -> S:
    """``status`` moved to a terminal ``phase``, with its condition."""
    moved = advance(status, phase, now, reason=reason, message=message)
    return moved.model_copy(update={"conditions": conditions(moved, now)})


def seconds_until_expiry(spec: OperationSpec, status: OperationStatus, now: datetime) -> float:
    """Seconds until the ended operation is to be deleted (negative once past); infinite when
    it has no time to live or has not ended."""
    if spec.ttlSecondsAfterFinished is None or status.completedAt is None:
        return float("inf")
    if not OperationPhase(status.phase).terminal:
        return float("inf")
    due = _parse(status.completedAt) + timedelta(seconds=spec.ttlSecondsAfterFinished)
    return (due - now).total_seconds()


def expired(spec: OperationSpec, status: OperationStatus, now: datetime) -> bool:
    """The operation ended more than ``ttlSecondsAfterFinished`` ago: delete the object."""
    return seconds_until_expiry(spec, status, now) <= 0
