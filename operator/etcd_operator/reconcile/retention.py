"""Which of a cluster's EtcdBackups retention deletes (``spec.backup.retention``). Pure.

``to_delete`` takes the backups (``backup_records.BackupRecord``), the retention settings and
now, and names the ones to delete, each with the rule that deletes it, oldest first. Deleting is
idempotent (an object already gone is no error), and the choice depends only on the objects and
the clock, so a restarted operator picks the same ones.

Successful backups: ``keepLast`` keeps at most that many, the newest; ``maxAge`` deletes those
that ended longer ago than that. Both are limits, as the API describes them: a backup goes when
either says so. Whatever the settings, the newest successful backup stays: it may be the only
way back, e.g. when backups have been failing for longer than ``maxAge``.

Backups still running (Pending, Running) are never deleted and do not count: their outcome is
not known yet, and deleting one would abort a backup under way.

Failed (and Rejected) backups are kept while they say something nobody has acted on yet, and
deleted once a newer backup succeeded: a failure that a later success followed is history,
which the failure events and metrics keep; a failure after the last success is the cluster's
current problem, which the object's message explains and which the BackupReady condition
reports. Of those, at most ``FAILED_KEPT`` (the newest) stay, so that a store unreachable for
days under an hourly schedule leaves a few examples of the error, not hundreds of objects.
Failed backups count toward neither ``keepLast`` nor ``maxAge``: they hold no data.

Without retention settings nothing is deleted, failed backups included: keeping everything is
what an unset policy means. Which backups the caller passes (all the cluster's EtcdBackups, or
only those in its own store) is the caller's choice; this module sees only what it is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from etcd_operator.api.backup import Retention, parse_age
from etcd_operator.reconcile.backup_records import BackupRecord, oldest_first

# How many failed backups newer than the last success stay (the newest of them).
FAILED_KEPT = 3

# The reasons a deletion gives, for events and logs.
BEYOND_KEEP_LAST = "KeepLast"
OLDER_THAN_MAX_AGE = "MaxAge"
FAILURE_SUPERSEDED = "FailureSuperseded"
TOO_MANY_FAILURES = "TooManyFailures"


@dataclass(frozen=True)
class Deletion:
    """One backup to delete, and why (``reason``: a CamelCase word; ``message``: for humans)."""

    name: str
    reason: str
    message: str


def to_delete(
    backups: Iterable[BackupRecord],
    retention: Retention | None,
    now: datetime,
    *,
    failed_kept: int = FAILED_KEPT,
) -> tuple[Deletion, ...]:
    """The backups retention deletes now, oldest first (ties by name)."""
    if retention is None or (retention.keepLast is None and retention.maxAge is None):
        return ()
    ordered = oldest_first(backups)
    successes = [b for b in ordered if b.succeeded]
    deletions: list[tuple[BackupRecord, str, str]] = []

    if successes:
        # Everything but the newest success, newest first, so that the index is its rank.
        candidates = list(reversed(successes[:-1]))
        max_age = parse_age(retention.maxAge) if retention.maxAge is not None else None
        for rank, backup in enumerate(candidates, start=2):
            if retention.keepLast is not None and rank > retention.keepLast:
                deletions.append(
                    (
                        backup,
                        BEYOND_KEEP_LAST,
                        f"{rank - 1} newer successful backups exist (keepLast: "
                        f"{retention.keepLast})",
                    )
                )
            elif max_age is not None and now - backup.time > max_age:
                deletions.append(
                    (
                        backup,
                        OLDER_THAN_MAX_AGE,
                        f"completed at {backup.time.isoformat()}, older than maxAge "
                        f"{retention.maxAge}",
                    )
                )

    failures = [b for b in ordered if b.unsuccessful]
    newer_failures: list[BackupRecord] = []
    for backup in failures:
        if successes and backup.order < successes[-1].order:
            deletions.append(
                (
                    backup,
                    FAILURE_SUPERSEDED,
                    f"failed before the newer successful backup {successes[-1].name}",
                )
            )
        else:
            newer_failures.append(backup)
    excess = len(newer_failures) - max(failed_kept, 0)
    for backup in newer_failures[: max(excess, 0)]:
        deletions.append(
            (
                backup,
                TOO_MANY_FAILURES,
                f"{len(newer_failures)} failed backups since the last success; the newest "
                f"{failed_kept} are kept",
            )
        )

    deletions.sort(key=lambda d: d[0].order)
    return tuple(Deletion(b.name, reason, message) for b, reason, message in deletions)
