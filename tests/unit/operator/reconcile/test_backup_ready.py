"""BackupReady on fixed clocks: absent without backups, False when the last scheduled backup
failed or nothing succeeded within two schedule intervals, True otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from etcd_operator.api.backup import BackupSpec, BackupStore
from etcd_operator.api.operation import OperationPhase
from etcd_operator.reconcile.backup_records import BackupRecord
from etcd_operator.reconcile.conditions.backup_ready import (
    BACKUP_FAILED,
    BACKUP_SUCCEEDED,
    INVALID_SCHEDULE,
    NO_BACKUP_YET,
    NO_RECENT_BACKUP,
    verdict,
)
from etcd_operator.reconcile.conditions.common import FALSE, TRUE, UNKNOWN, Verdict

P = OperationPhase
STORE = BackupStore(bucket="backups")
DAILY = BackupSpec(store=STORE, schedule="0 3 * * *")
NOW = datetime(2026, 1, 10, 12, tzinfo=UTC)  # a Saturday
TODAY = datetime(2026, 1, 10, 3, tzinfo=UTC)  # today's slot
DAY = timedelta(days=1)


def scheduled(
    slot: datetime, phase: OperationPhase = P.SUCCEEDED, message: str | None = None
) -> BackupRecord:
    """The backup of ``slot``, ended five minutes after it (running: created at it)."""
    name = f"example-{slot:%Y%m%d-%H%M}"
    if phase in (P.PENDING, P.RUNNING):
        return BackupRecord(name, phase, created_at=slot, scheduled_for=slot)
    return BackupRecord(
        name,
        phase,
        created_at=slot,
        completed_at=slot + timedelta(minutes=5),
        scheduled_for=slot,
        message=message,
    )


def manual(name: str, ended: datetime, phase: OperationPhase = P.SUCCEEDED) -> BackupRecord:
    return BackupRecord(name, phase, created_at=ended - timedelta(minutes=5), completed_at=ended)


def status_and_reason(v: Verdict | None) -> tuple[str, str] | None:
    return None if v is None else (v.status, v.reason)


def test_absent_without_backup_settings() -> None:
    assert verdict(None, [scheduled(TODAY)], NOW) is None


@pytest.mark.parametrize(
    ("backups", "since", "expected"),
    [
        pytest.param([scheduled(TODAY)], None, (TRUE, BACKUP_SUCCEEDED), id="today-succeeded"),
        pytest.param(
            [scheduled(TODAY - DAY), scheduled(TODAY, P.RUNNING)],
            None,
            (TRUE, BACKUP_SUCCEEDED),
            id="yesterday-succeeded-today-running",
        ),
        pytest.param(
            [scheduled(TODAY - DAY), scheduled(TODAY, P.FAILED)],
            None,
            (FALSE, BACKUP_FAILED),
            id="last-scheduled-failed",
        ),
        pytest.param(
            [scheduled(TODAY - DAY, P.FAILED), scheduled(TODAY)],
            None,
            (TRUE, BACKUP_SUCCEEDED),
            id="a-failure-then-a-success",
        ),
        pytest.param(
            [scheduled(TODAY - DAY, P.FAILED), scheduled(TODAY, P.RUNNING)],
            None,
            (FALSE, BACKUP_FAILED),
            id="a-running-backup-does-not-clear-a-failure",
        ),
        pytest.param(
            [scheduled(TODAY, P.FAILED), manual("example-fix", NOW - timedelta(hours=1))],
            None,
            (TRUE, BACKUP_SUCCEEDED),
            id="an-on-demand-success-after-the-failure",
        ),
        pytest.param(
            [scheduled(TODAY), manual("example-x", NOW - timedelta(hours=1), P.FAILED)],
            None,
            (TRUE, BACKUP_SUCCEEDED),
            id="an-on-demand-failure-is-not-the-schedule",
        ),
        pytest.param(
            [scheduled(TODAY, P.REJECTED)],
            NOW - timedelta(hours=10),
            (FALSE, BACKUP_FAILED),
            id="rejected-counts-as-failed",
        ),
        pytest.param(
            [scheduled(TODAY - 2 * DAY)],
            None,
            (FALSE, NO_RECENT_BACKUP),
            id="yesterdays-slot-missed",
        ),
        pytest.param(
            [scheduled(TODAY - 2 * DAY), scheduled(TODAY, P.RUNNING)],
            None,
            (FALSE, NO_RECENT_BACKUP),
            id="yesterdays-slot-missed-todays-running",
        ),
        pytest.param(
            [scheduled(TODAY - 2 * DAY), manual("example-m", TODAY - DAY + timedelta(hours=2))],
            None,
            (TRUE, BACKUP_SUCCEEDED),
            id="an-on-demand-success-is-recent-enough",
        ),
        pytest.param([], None, (FALSE, NO_RECENT_BACKUP), id="never-any-backup"),
        pytest.param(
            [], TODAY - DAY + timedelta(minutes=1), (TRUE, NO_BACKUP_YET), id="a-new-schedule"
        ),
        pytest.param(
            [scheduled(TODAY, P.RUNNING)],
            TODAY - DAY - timedelta(hours=1),
            (FALSE, NO_RECENT_BACKUP),
            id="a-schedule-two-slots-old-without-success",
        ),
    ],
)
def test_with_a_daily_schedule(
    backups: list[BackupRecord], since: datetime | None, expected: tuple[str, str]
) -> None:
    assert status_and_reason(verdict(DAILY, backups, NOW, since=since)) == expected


def test_messages_say_what_and_when() -> None:
    ok = verdict(DAILY, [scheduled(TODAY)], NOW)
    assert ok is not None and ok.message == (
        "backup example-20260110-0300 completed at 2026-01-10T03:05:00Z; "
        "the next is scheduled at 2026-01-11T03:00:00Z"
    )
    failed = verdict(DAILY, [scheduled(TODAY, P.FAILED, "S3 endpoint unreachable")], NOW)
    assert failed == Verdict(
        FALSE, BACKUP_FAILED, "backup example-20260110-0300 failed: S3 endpoint unreachable"
    )
    stale = verdict(DAILY, [scheduled(TODAY - 2 * DAY)], NOW)
    assert stale is not None and stale.message == (
        "no backup succeeded since 2026-01-09T03:00:00Z, two intervals of the schedule "
        "'0 3 * * *'; the last one is example-20260108-0300 at 2026-01-08T03:05:00Z"
    )
    never = verdict(DAILY, [], NOW)
    assert never is not None and never.message.endswith("; none ever did")
    new = verdict(DAILY, [], NOW, since=NOW - timedelta(hours=1))
    assert new == Verdict(
        TRUE,
        NO_BACKUP_YET,
        "no backup has completed yet; the first is scheduled at 2026-01-11T03:00:00Z",
    )


def test_intervals_are_counted_in_slots_of_an_irregular_schedule() -> None:
    weekdays = BackupSpec(store=STORE, schedule="0 3 * * MON-FRI")
    friday = datetime(2026, 1, 9, 3, tzinfo=UTC)
    monday = datetime(2026, 1, 12, 3, tzinfo=UTC)
    # Monday morning, Monday's backup running: Friday's is within the last two intervals.
    on_monday = [scheduled(friday), scheduled(monday, P.RUNNING)]
    assert status_and_reason(verdict(weekdays, on_monday, monday + timedelta(minutes=10))) == (
        TRUE,
        BACKUP_SUCCEEDED,
    )
    # Tuesday morning without Monday's: two intervals (Friday -> Monday -> Tuesday) passed.
    assert status_and_reason(
        verdict(weekdays, [scheduled(friday)], monday + DAY + timedelta(minutes=10))
    ) == (FALSE, NO_RECENT_BACKUP)


@pytest.mark.parametrize(
    ("spec", "backups", "expected"),
    [
        pytest.param(BackupSpec(store=STORE), [], (UNKNOWN, NO_BACKUP_YET), id="on-demand-only"),
        pytest.param(
            BackupSpec(store=STORE),
            [manual("example-a", NOW - 30 * DAY)],
            (TRUE, BACKUP_SUCCEEDED),
            id="on-demand-only-any-age-is-fine",
        ),
        pytest.param(
            BackupSpec(store=STORE),
            [manual("example-a", NOW - 3 * DAY), manual("example-b", NOW - DAY, P.FAILED)],
            (FALSE, BACKUP_FAILED),
            id="on-demand-only-last-failed",
        ),
        pytest.param(
            BackupSpec(store=STORE, schedule="0 3 * * *", suspend=True),
            [scheduled(TODAY - 30 * DAY)],
            (TRUE, BACKUP_SUCCEEDED),
            id="suspended-is-not-late",
        ),
        pytest.param(
            BackupSpec(store=STORE, schedule="0 3 * * *", suspend=True),
            [scheduled(TODAY - 30 * DAY, P.FAILED)],
            (FALSE, BACKUP_FAILED),
            id="suspended-after-a-failure",
        ),
        pytest.param(
            BackupSpec(store=STORE, schedule="0 3 * * *", suspend=True),
            [],
            (UNKNOWN, NO_BACKUP_YET),
            id="suspended-never-any",
        ),
        pytest.param(
            # The model refuses it now; an object stored before may still hold one.
            BackupSpec.model_construct(store=STORE, schedule="61 * * * *"),
            [scheduled(TODAY)],
            (FALSE, INVALID_SCHEDULE),
            id="an-invalid-schedule",
        ),
    ],
)
def test_without_an_active_schedule(
    spec: BackupSpec, backups: list[BackupRecord], expected: tuple[str, str]
) -> None:
    assert status_and_reason(verdict(spec, backups, NOW)) == expected


def test_without_schedule_the_messages() -> None:
    suspended = BackupSpec(store=STORE, schedule="0 3 * * *", suspend=True)
    assert verdict(suspended, [], NOW) == Verdict(
        UNKNOWN, NO_BACKUP_YET, "no backup has completed yet and the schedule is suspended"
    )
    none = verdict(BackupSpec(store=STORE), [], NOW)
    assert none is not None and none.message.endswith("and none is scheduled")
    ok = verdict(suspended, [scheduled(TODAY)], NOW)
    assert ok is not None and "next" not in ok.message


def test_a_schedule_in_a_time_zone() -> None:
    # 03:00 in Berlin is 02:00 UTC in January: at 02:30 UTC today's slot has passed.
    berlin = BackupSpec(store=STORE, schedule="0 3 * * *", timeZone="Europe/Berlin")
    slot = datetime(2026, 1, 10, 2, tzinfo=UTC)
    v = verdict(berlin, [scheduled(slot - DAY)], slot + timedelta(minutes=30))
    assert v is not None and v.status == TRUE
    assert v.message.endswith("the next is scheduled at 2026-01-11T02:00:00Z")
