"""The restore step: a cluster created with ``spec.bootstrap.backup`` starts from that backup.
Pure.

The source is resolved once, before the members exist: an EtcdBackup by name must have
Succeeded (its status says where the object is, its sha256 and whether it is encrypted), an
object by location is taken as given (its own metadata carries the sha256 that the download
checks). The resolved source goes into ``status.restoredFrom`` (through ``Decided.acted``) and
every later pass renders the members from that record, so their pod template never changes, even
when the EtcdBackup is deleted later. Until the source resolves, the pass stops before the
children: no member may start empty when it was meant to start from a backup. The members'
``restore`` init container (``components.restore``) does the work; a member joining later
(``initial-cluster-state existing``) restores nothing and joins as usual.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from etcd_operator.api.backup import PointInTime, RestoreSource, SecretKeyRef
from etcd_operator.api.etcdbackup import EtcdBackup
from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster, RestoredFrom
from etcd_operator.reconcile.backup_records import BackupRecord
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress

RESTORE = "restore"
WAITING_FOR_BACKUP = "WaitingForBackup"


def _key_secret(desired: EtcdCluster, source: RestoreSource) -> SecretKeyRef | None:
    if source.encryptionKeySecret is not None:
        return source.encryptionKeySecret
    backup = desired.spec.backup
    return backup.encryption.keySecret if backup and backup.encryption else None


def newest_before(backups: Iterable[BackupRecord], point: PointInTime) -> BackupRecord | None:
    """The backup a point-in-time restore starts from when none is named: the newest Succeeded
    one taken at or before ``point`` (by its revision, or by when it completed, since its
    snapshot was taken before that). Its continuous backup reaches on from there: a recorder
    moves to a newer backup only after that one succeeded."""
    done = [b for b in backups if b.succeeded and b.revision is not None]
    if point.revision is not None:
        rev = point.revision
        return max(
            (b for b in done if (b.revision or 0) <= rev),
            key=lambda b: (b.revision or 0, b.time),
            default=None,
        )
    assert point.time is not None
    at = datetime.fromisoformat(point.time)
    return max((b for b in done if b.time <= at), key=lambda b: b.time, default=None)


def resolve(
    desired: EtcdCluster, source: RestoreSource, backup: EtcdBackup | None
) -> RestoredFrom | str:
    """The source as the members fetch it, or why it cannot be used yet (``backup``: the
    named one, or for a point alone the one ``newest_before`` picked)."""
    key_secret = _key_secret(desired, source)
    point = source.pointInTime
    if source.location is not None:
        assert source.store is not None  # the model requires it
        bucket = source.location.removeprefix("s3://").split("/", 1)[0]
        if bucket != source.store.bucket:
            return (
                f"bootstrap.backup.location is in bucket {bucket} but store.bucket is "
                f"{source.store.bucket}: make them the same"
            )
        return RestoredFrom(
            location=source.location,
            store=source.store,
            encryptionKeySecret=key_secret,
            bumpRevision=source.bumpRevision,
            markCompacted=source.markCompacted,
            toRevision=point.revision if point is not None else None,
            toTime=point.time if point is not None else None,
        )
    ns = desired.namespace
    if source.name is None and backup is None:
        return (
            f"no Succeeded EtcdBackup of {desired.name} in namespace {ns} was taken before "
            f"{point}: name one with bootstrap.backup.name"
        )
    name = source.name or str((backup.metadata if backup else {}).get("name"))
    if backup is None:
        return f"EtcdBackup {name} does not exist in namespace {ns}: waiting for it"
    status = backup.status
    phase = OperationPhase(status.phase) if status is not None else OperationPhase.PENDING
    if status is None or phase != OperationPhase.SUCCEEDED:
        if phase.terminal:
            cause = f": {status.message}" if status is not None and status.message else ""
            return f"EtcdBackup {name} ended {phase}{cause}; restore from another backup"
        return f"EtcdBackup {name} is {phase}: waiting for it to succeed"
    if status.location is None or status.store is None:
        return f"EtcdBackup {name} does not say where it is stored (no location or store)"
    if status.encrypted and key_secret is None:
        return (
            f"EtcdBackup {name} is encrypted: set bootstrap.backup.encryptionKeySecret "
            "(or spec.backup.encryption) to the key it was written with"
        )
    target = point.revision if point is not None else None
    if target is not None and status.revision is not None and target < status.revision:
        return (
            f"bootstrap.backup.pointInTime.revision {target} is before EtcdBackup {name} "
            f"(revision {status.revision}): name an older backup"
        )
    return RestoredFrom(
        backup=name,
        location=status.location,
        store=status.store,
        sha256=status.sha256,
        encrypted=status.encrypted,
        encryptionKeySecret=key_secret,
        bumpRevision=source.bumpRevision,
        markCompacted=source.markCompacted,
        toRevision=target,
        toTime=point.time if point is not None else None,
        baseRevision=status.revision,
    )


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    bootstrap = desired.spec.bootstrap
    recorded = desired.status.restoredFrom if desired.status is not None else None
    if recorded is not None:
        # Created from it, or rebuilt from it after losing every member (reconcile.recovery).
        return StepResult(
            decided=dataclasses.replace(decided, notes=(*decided.notes, (RESTORE, recorded)))
        )
    if bootstrap is None:
        return StepResult()
    resolved = resolve(desired, bootstrap.backup, observed.restore_backup)
    if isinstance(resolved, str):
        waiting = Progress(WAITING_FOR_BACKUP, resolved, active=False)
        return StepResult(decided=with_progress(decided, waiting), stop=True)
    return StepResult(
        decided=dataclasses.replace(
            decided,
            notes=(*decided.notes, (RESTORE, resolved)),
            acted=(*decided.acted, (RESTORE, resolved)),
        )
    )
