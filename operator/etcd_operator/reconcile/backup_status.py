"""``status.backup`` of an EtcdCluster and its BackupReady condition. Pure.

The last successful backup (name, time, revision: what a restore would bring back), the last
failure when it is newer than that success, the next slot of the schedule, and what the backup
step acted on (kept from the previous status unless this pass acted anew: that record is what
makes the triggers exactly-once). BackupReady itself is ``conditions.backup_ready``'s verdict
over the cluster's EtcdBackups.
"""

from __future__ import annotations

from etcd_operator.api.times import rfc3339
from etcd_operator.api.v1alpha1 import BackupRef, ClusterBackupStatus, EtcdCluster
from etcd_operator.reconcile.backup_records import BackupRecord, newest
from etcd_operator.reconcile.backups import (
    ACTED,
    NEXT,
    BackupsActed,
    created_at,
    previous_status,
)
from etcd_operator.reconcile.conditions import backup_ready
from etcd_operator.reconcile.conditions.common import Verdict
from etcd_operator.reconcile.continuous import window
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided


def _ref(record: BackupRecord | None, *, failed: bool = False) -> BackupRef | None:
    if record is None:
        return None
    return BackupRef(
        name=record.name,
        time=rfc3339(record.time),
        revision=None if failed else record.revision,
        message=record.message if failed else None,
    )


def backup_status(
    desired: EtcdCluster, observed: Observed, decided: Decided
) -> ClusterBackupStatus | None:
    """The cluster's ``status.backup``; ``None`` without ``spec.backup``."""
    if desired.spec.backup is None:
        return None
    previous = previous_status(desired)
    acted = decided.acted_on(ACTED)
    request, slot = previous.lastRequest, previous.lastScheduledTime
    if isinstance(acted, BackupsActed):
        request = acted.request if acted.request is not None else request
        slot = rfc3339(acted.slot) if acted.slot is not None else slot
    success = newest(b for b in observed.backups if b.succeeded)
    failure = newest(b for b in observed.backups if b.finished and b.unsuccessful)
    if failure is not None and success is not None and failure.order < success.order:
        failure = None
    upcoming = decided.note(NEXT)
    continuous, recoverable_from, recoverable_to = window(desired, observed, previous.continuous)
    return ClusterBackupStatus(
        lastSuccessful=_ref(success),
        lastSuccessfulTime=rfc3339(success.time) if success is not None else None,
        lastFailed=_ref(failure, failed=True),
        nextScheduledTime=rfc3339(upcoming) if upcoming is not None else None,  # type: ignore[arg-type]
        lastScheduledTime=slot,
        lastRequest=request,
        continuous=continuous,
        recoverableFrom=recoverable_from,
        recoverableTo=recoverable_to,
    )


def backup_ready_verdict(desired: EtcdCluster, observed: Observed) -> Verdict | None:
    """BackupReady for this pass; ``None`` (no condition) without ``spec.backup``."""
    if observed.now is None:
        return None
    return backup_ready.verdict(
        desired.spec.backup, observed.backups, observed.now, since=created_at(desired)
    )
