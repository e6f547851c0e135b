"""What the backup decisions know of one EtcdBackup object, and the order they sort it in. Pure.

Retention (``retention``) and the BackupReady condition (``conditions.backup_ready``) read a
cluster's EtcdBackups as ``BackupRecord``s: the name, the phase (``api.operation``), when the
object was created and when it ended, and, for scheduled backups, the slot it was taken for.
The runtime builds them from the objects it lists; nothing here reads Kubernetes.

Order: a backup's time is when it ended (``completed_at``), or when it was created while it has
not ended; equal times are broken by name, so that every decision over the same objects is the
same whichever order they were listed in. Scheduled backups' names embed their slot, so the
name order of two scheduled backups ending in the same second is their schedule order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from etcd_operator.api.operation import TERMINAL, OperationPhase
from etcd_operator.api.times import parse_rfc3339
from etcd_operator.reconcile.backup_requests import SCHEDULED_FOR_ANNOTATION, TRIGGER_LABEL

# Phases that ended without a backup: Failed, and Rejected (refused before it started).
UNSUCCESSFUL = frozenset({OperationPhase.FAILED, OperationPhase.REJECTED})


@dataclass(frozen=True)
class BackupRecord:
    """One EtcdBackup of the cluster, as the decisions need it (times are aware datetimes)."""

    name: str
    phase: OperationPhase
    created_at: datetime
    completed_at: datetime | None = None
    # The schedule's slot this backup was taken for; None for one made on demand or by hand.
    scheduled_for: datetime | None = None
    # The status message (the cause of a failure), for the condition's message.
    message: str | None = None
    # What made it: "schedule" or "annotation" (the operator; retention applies), None for an
    # EtcdBackup a user created (kept until the user deletes it).
    trigger: str | None = None
    revision: int | None = None

    @property
    def time(self) -> datetime:
        """When it ended, or when it was created while it runs."""
        return self.completed_at if self.completed_at is not None else self.created_at

    @property
    def order(self) -> tuple[datetime, str]:
        """The sort key: time, then name."""
        return (self.time, self.name)

    @property
    def succeeded(self) -> bool:
        return self.phase == OperationPhase.SUCCEEDED

    @property
    def unsuccessful(self) -> bool:
        return self.phase in UNSUCCESSFUL

    @property
    def finished(self) -> bool:
        return self.phase in TERMINAL

    @property
    def scheduled(self) -> bool:
        return self.scheduled_for is not None


def oldest_first(records: Iterable[BackupRecord]) -> list[BackupRecord]:
    return sorted(records, key=lambda r: r.order)


def newest(records: Iterable[BackupRecord]) -> BackupRecord | None:
    """The last one in ``order``, or ``None`` when there is none."""
    return max(records, key=lambda r: r.order, default=None)


def backup_record(obj: dict[str, Any]) -> BackupRecord:
    """What the backup decisions know of one EtcdBackup object as the API returned it."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    try:
        phase = OperationPhase(status.get("phase") or OperationPhase.PENDING)
    except ValueError:
        phase = OperationPhase.PENDING
    created = parse_rfc3339(meta.get("creationTimestamp")) or datetime.fromtimestamp(0, UTC)
    revision = status.get("revision")
    return BackupRecord(
        name=str(meta.get("name")),
        phase=phase,
        created_at=created,
        completed_at=parse_rfc3339(status.get("completedAt")),
        scheduled_for=parse_rfc3339(annotations.get(SCHEDULED_FOR_ANNOTATION)),
        message=status.get("message"),
        trigger=labels.get(TRIGGER_LABEL),
        revision=revision if isinstance(revision, int) else None,
    )
