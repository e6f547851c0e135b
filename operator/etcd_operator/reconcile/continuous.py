"""The continuous backup step: keep a recorder running, and the recoverable window. Pure.

With ``spec.backup.continuous``, every pass asks the runtime for the cluster's recorder
(``RecordContinuously``); the runtime leaves one that runs alone and starts one that does not
(after an operator restart, or after it stopped on a failure). The recorder itself picks the
chain to extend (``chain_base``: the newest successful backup), and writes
``status.backup.continuous`` under the cluster's lock; a pass keeps that record as it read it,
and clears it when continuous backup is turned off.

``recoverable`` is the window a restore can pick from: from the oldest successful backup kept
to the end of the continuous backup (or the newest successful backup without one).
"""

from __future__ import annotations

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import rfc3339
from etcd_operator.api.v1alpha1 import ContinuousBackupStatus, EtcdCluster, RecoveryPoint
from etcd_operator.reconcile.actions import Action, CreateBackup, Event, RecordContinuously
from etcd_operator.reconcile.backup_records import BackupRecord, newest
from etcd_operator.reconcile.backup_requests import TRIGGER_CONTINUOUS
from etcd_operator.reconcile.backups import backup_manifest
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided, StepResult

# The suffix of the full backup that restarts a broken chain: one per broken chain, by name.
RECHAIN_SUFFIX = "-rechain"


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    spec = desired.spec.backup
    if spec is None or spec.continuous is None:
        return StepResult()
    uid = str(desired.metadata.get("uid") or desired.name)
    actions: list[Action] = [RecordContinuously(desired.namespace, desired.name, uid)]
    rechain = rechain_backup(desired, observed)
    if rechain is not None:
        actions += [
            CreateBackup(backup_manifest(desired, rechain, TRIGGER_CONTINUOUS)),
            Event(
                "Warning",
                "ContinuousBackupBroken",
                f"the continuous backup broke ({_broken(desired)}): created EtcdBackup "
                f"{rechain} to start a new chain",
            ),
        ]
    return StepResult(actions=tuple(actions))


def _broken(desired: EtcdCluster) -> str | None:
    status = desired.status.backup if desired.status is not None else None
    return status.continuous.broken if status and status.continuous else None


def rechain_backup(desired: EtcdCluster, observed: Observed) -> str | None:
    """The full backup to create because the chain of the newest one broke: none while a
    backup runs, or once a backup newer than the broken chain's exists."""
    status = desired.status.backup if desired.status is not None else None
    broken = status.continuous if status is not None else None
    if broken is None or broken.broken is None:
        return None
    base = chain_base(observed.backups)
    if base is None or base.name != broken.backup:
        return None
    if any(not b.finished for b in observed.backups):
        return None
    name = f"{broken.backup}{RECHAIN_SUFFIX}"
    if any(b.name == name for b in observed.backups):
        return None  # made already; it failed, and the schedule or a user takes it from here
    return name[:253]


def chain_base(backups: tuple[BackupRecord, ...] | list[BackupRecord]) -> BackupRecord | None:
    """The backup a recorder extends: the newest successful one that recorded its revision."""
    return newest(b for b in backups if b.succeeded and b.revision is not None)


def continuous_status(
    desired: EtcdCluster, previous: ContinuousBackupStatus | None
) -> ContinuousBackupStatus | None:
    """``status.backup.continuous`` for this pass: as the recorder wrote it, while asked for."""
    spec = desired.spec.backup
    return previous if spec is not None and spec.continuous is not None else None


def recoverable(
    backups: tuple[BackupRecord, ...] | list[BackupRecord],
    continuous: ContinuousBackupStatus | None,
) -> tuple[RecoveryPoint | None, RecoveryPoint | None]:
    """(from, to): the oldest successful backup kept, and the end of the continuous backup
    (while it extends a backup still kept) or else the newest successful backup."""
    kept = [b for b in backups if b.succeeded and b.revision is not None]
    if not kept:
        return None, None
    oldest = min(kept, key=lambda b: b.time)
    newest_kept = max(kept, key=lambda b: b.time)
    start = RecoveryPoint(revision=oldest.revision or 0, time=rfc3339(oldest.time))
    if continuous is not None and any(b.name == continuous.backup for b in kept):
        return start, RecoveryPoint(revision=continuous.revision, time=continuous.time)
    end = RecoveryPoint(revision=newest_kept.revision or 0, time=rfc3339(newest_kept.time))
    return start, end


def window(
    desired: EtcdCluster, observed: Observed, previous: ContinuousBackupStatus | None
) -> tuple[ContinuousBackupStatus | None, RecoveryPoint | None, RecoveryPoint | None]:
    """``continuous``, ``recoverableFrom`` and ``recoverableTo`` of ``status.backup``."""
    status = continuous_status(desired, previous)
    start, end = recoverable(observed.backups, status)
    return status, start, end
