"""BackupReady: the cluster's data can be got back from a recent backup. Pure.

Not yet in ``CHECKERS``: ``verdict`` takes the cluster's backup settings and its EtcdBackups
(``backup_records.BackupRecord``) explicitly, until the observed state carries them; the
registered checker will be a thin adapter over it. ``None`` means the condition is absent: the
cluster has no ``spec.backup``, so there is nothing to be ready.

False, in this order, when:

- ``BackupFailed``: the newest finished scheduled backup failed and no backup succeeded after
  it (a later success of any kind, an on-demand one say, means the data is safe again). A
  running backup says nothing yet, so the condition stays False until one succeeds;
- ``NoRecentBackup``: no backup succeeded within two intervals of the schedule, that is since
  the slot before the latest one at or before now. Counting slots rather than a duration keeps
  irregular schedules right: for ``0 3 * * 1-5`` on a Monday morning the interval before is
  Friday to Monday, and Friday's backup is recent enough; one duration, Monday to Tuesday, would
  call it stale while Monday's backup is still running. One missed slot is tolerated, the
  backup of the latest slot may be running; with two, the data is two intervals old. A schedule
  younger than that (``since``, when the schedule started to apply, after that slot) is not
  stale yet.

True otherwise: ``BackupSucceeded`` with the last success, or ``NoBackupYet`` while a new
schedule waits for its first slots. Without a schedule (or while it is suspended) the condition
follows the newest finished backup of any kind, and is Unknown (``NoBackupYet``) before the first
one: nothing promises a backup, so nothing is late.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from etcd_operator.api.backup import BackupSpec
from etcd_operator.api.schedule import CronSchedule, ScheduleError, parse_schedule
from etcd_operator.api.times import rfc3339 as _at
from etcd_operator.reconcile.backup_records import BackupRecord, newest
from etcd_operator.reconcile.backup_schedule import next_slot, previous_slots
from etcd_operator.reconcile.conditions.common import FALSE, TRUE, UNKNOWN, Verdict

BACKUP_FAILED = "BackupFailed"
NO_RECENT_BACKUP = "NoRecentBackup"
BACKUP_SUCCEEDED = "BackupSucceeded"
NO_BACKUP_YET = "NoBackupYet"
INVALID_SCHEDULE = "InvalidSchedule"


def _failed(backup: BackupRecord) -> Verdict:
    cause = f": {backup.message}" if backup.message else ""
    return Verdict(FALSE, BACKUP_FAILED, f"backup {backup.name} failed{cause}")


def _succeeded(backup: BackupRecord, upcoming: datetime | None) -> Verdict:
    message = f"backup {backup.name} completed at {_at(backup.time)}"
    if upcoming is not None:
        message += f"; the next is scheduled at {_at(upcoming)}"
    return Verdict(TRUE, BACKUP_SUCCEEDED, message)


def verdict(
    spec: BackupSpec | None,
    backups: Iterable[BackupRecord],
    now: datetime,
    *,
    since: datetime | None = None,
) -> Verdict | None:
    """BackupReady for a cluster with ``spec.backup`` = ``spec`` and these EtcdBackups."""
    if spec is None:
        return None
    records = list(backups)
    last_success = newest(r for r in records if r.succeeded)
    schedule: CronSchedule | None = None
    if spec.schedule is not None and not spec.suspend:
        try:
            schedule = parse_schedule(spec.schedule, spec.timeZone)
        except ScheduleError as e:  # the API refuses these; an old object may still hold one
            return Verdict(FALSE, INVALID_SCHEDULE, str(e))

    # With a schedule, its own backups tell whether backups work; otherwise any backup does.
    watched = newest(r for r in records if r.finished and (schedule is None or r.scheduled))
    if (
        watched is not None
        and watched.unsuccessful
        and (last_success is None or last_success.order < watched.order)
    ):
        return _failed(watched)

    if schedule is None:
        if last_success is not None:
            return _succeeded(last_success, None)
        why = "the schedule is suspended" if spec.schedule is not None else "none is scheduled"
        return Verdict(UNKNOWN, NO_BACKUP_YET, f"no backup has completed yet and {why}")

    upcoming = next_slot(schedule, now)
    recent = previous_slots(schedule, now, count=2)
    # The start of the two intervals: the slot before the latest one (none: too young to tell).
    window = recent[1] if len(recent) == 2 else None
    judged = window is not None and (since is None or since <= window)
    if judged and window is not None and (last_success is None or last_success.time < window):
        last = (
            f"the last one is {last_success.name} at {_at(last_success.time)}"
            if last_success is not None
            else "none ever did"
        )
        return Verdict(
            FALSE,
            NO_RECENT_BACKUP,
            f"no backup succeeded since {_at(window)}, two intervals of the schedule "
            f"{spec.schedule!r}; {last}",
        )
    if last_success is not None:
        return _succeeded(last_success, upcoming)
    first = f"; the first is scheduled at {_at(upcoming)}" if upcoming is not None else ""
    return Verdict(TRUE, NO_BACKUP_YET, f"no backup has completed yet{first}")
