"""Retention as tables on a fixed clock: keepLast and maxAge as limits, the newest success always
kept, running backups untouched, failures kept until a newer success (at most a few), ties by
name, and the same answer whatever order the backups come in."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from etcd_operator.api.backup import Retention, parse_age
from etcd_operator.api.operation import OperationPhase
from etcd_operator.reconcile.backup_records import BackupRecord
from etcd_operator.reconcile.retention import (
    BEYOND_KEEP_LAST,
    FAILURE_SUPERSEDED,
    OLDER_THAN_MAX_AGE,
    TOO_MANY_FAILURES,
    to_delete,
)

NOW = datetime(2026, 1, 10, 12, tzinfo=UTC)
P = OperationPhase


def backup(name: str, hours_ago: float, phase: OperationPhase = P.SUCCEEDED) -> BackupRecord:
    """A backup created ten minutes before it ended ``hours_ago`` (running: created then)."""
    ended = NOW - timedelta(hours=hours_ago)
    if phase in (P.PENDING, P.RUNNING):
        return BackupRecord(name, phase, created_at=ended)
    return BackupRecord(name, phase, created_at=ended - timedelta(minutes=10), completed_at=ended)


def deleted(
    backups: list[BackupRecord], retention: Retention | None, failed_kept: int = 3
) -> list[tuple[str, str]]:
    return [(d.name, d.reason) for d in to_delete(backups, retention, NOW, failed_kept=failed_kept)]


DAILY = [backup(f"b{i}", hours_ago=24 * i) for i in range(5)]  # b0 newest ... b4 oldest


@pytest.mark.parametrize(
    ("retention", "expected"),
    [
        pytest.param(None, [], id="no-retention-keeps-all"),
        pytest.param(Retention(), [], id="empty-retention-keeps-all"),
        pytest.param(
            Retention(keepLast=3),
            [("b4", BEYOND_KEEP_LAST), ("b3", BEYOND_KEEP_LAST)],
            id="keep-last-3",
        ),
        pytest.param(Retention(keepLast=5), [], id="keep-last-as-many-as-exist"),
        pytest.param(
            Retention(keepLast=1),
            [(f"b{i}", BEYOND_KEEP_LAST) for i in (4, 3, 2, 1)],
            id="keep-last-1",
        ),
        pytest.param(
            Retention(maxAge="50h"),
            [("b4", OLDER_THAN_MAX_AGE), ("b3", OLDER_THAN_MAX_AGE)],
            id="max-age",
        ),
        pytest.param(
            Retention(maxAge="48h"),
            [("b4", OLDER_THAN_MAX_AGE), ("b3", OLDER_THAN_MAX_AGE)],
            id="exactly-max-age-is-kept",
        ),
        pytest.param(
            Retention(maxAge="47h59m59s"),
            [(f"b{i}", OLDER_THAN_MAX_AGE) for i in (4, 3, 2)],
            id="a-second-past-max-age-is-not",
        ),
        pytest.param(
            Retention(keepLast=4, maxAge="50h"),
            [("b4", BEYOND_KEEP_LAST), ("b3", OLDER_THAN_MAX_AGE)],
            id="both-are-limits-max-age-stricter",
        ),
        pytest.param(
            Retention(keepLast=2, maxAge="100h"),
            [(f"b{i}", BEYOND_KEEP_LAST) for i in (4, 3, 2)],
            id="both-are-limits-keep-last-stricter",
        ),
    ],
)
def test_successful_backups(retention: Retention | None, expected: list[tuple[str, str]]) -> None:
    assert deleted(DAILY, retention) == expected


def test_the_newest_success_stays_even_when_too_old() -> None:
    old = [backup("b1", hours_ago=500), backup("b2", hours_ago=400)]
    assert deleted(old, Retention(maxAge="1h")) == [("b1", OLDER_THAN_MAX_AGE)]
    assert deleted(old[:1], Retention(maxAge="1h", keepLast=1)) == []


def test_running_backups_are_neither_deleted_nor_counted() -> None:
    backups = [
        *DAILY[:3],
        backup("r1", hours_ago=0, phase=P.RUNNING),
        backup("p1", hours_ago=0, phase=P.PENDING),
        backup("r0", hours_ago=200, phase=P.RUNNING),  # stuck for days: still not ours to end
    ]
    assert deleted(backups, Retention(keepLast=2, maxAge="100h")) == [("b2", BEYOND_KEEP_LAST)]


def test_failures_before_the_newest_success_go_newer_ones_stay() -> None:
    backups = [
        backup("ok-old", hours_ago=30),
        backup("f-old", hours_ago=26, phase=P.FAILED),
        backup("rej-old", hours_ago=25, phase=P.REJECTED),
        backup("ok-new", hours_ago=24),
        backup("f-new", hours_ago=1, phase=P.FAILED),
    ]
    assert deleted(backups, Retention(keepLast=5)) == [
        ("f-old", FAILURE_SUPERSEDED),
        ("rej-old", FAILURE_SUPERSEDED),
    ]
    messages = {d.name: d.message for d in to_delete(backups, Retention(keepLast=5), NOW)}
    assert messages["f-old"] == "failed before the newer successful backup ok-new"


def test_at_most_a_few_failures_since_the_last_success_are_kept() -> None:
    failures = [backup(f"f{i}", hours_ago=i, phase=P.FAILED) for i in range(6)]  # f0 newest
    backups = [backup("ok", hours_ago=10), *failures]
    assert deleted(backups, Retention(keepLast=1)) == [
        ("f5", TOO_MANY_FAILURES),
        ("f4", TOO_MANY_FAILURES),
        ("f3", TOO_MANY_FAILURES),
    ]
    # No success at all: failures are all "since the last success".
    assert deleted(failures, Retention(keepLast=1), failed_kept=1) == [
        (f"f{i}", TOO_MANY_FAILURES) for i in (5, 4, 3, 2, 1)
    ]
    assert deleted(failures, Retention(keepLast=1), failed_kept=0) == [
        (f"f{i}", TOO_MANY_FAILURES) for i in (5, 4, 3, 2, 1, 0)
    ]


def test_without_retention_failures_stay_too() -> None:
    backups = [backup("f", hours_ago=5, phase=P.FAILED), backup("ok", hours_ago=1)]
    assert deleted(backups, None) == []


def test_ties_are_broken_by_name() -> None:
    # Three backups that ended in the same second: the greater name counts as the newer.
    same = [backup(n, hours_ago=1) for n in ("c-20260110-1100", "a-x", "b-x")]
    assert deleted(same, Retention(keepLast=1)) == [
        ("a-x", BEYOND_KEEP_LAST),
        ("b-x", BEYOND_KEEP_LAST),
    ]
    # A failure at the same second as the newest success: before it by name, so superseded.
    tie = [backup("b", hours_ago=1), backup("a", hours_ago=1, phase=P.FAILED)]
    assert deleted(tie, Retention(keepLast=3)) == [("a", FAILURE_SUPERSEDED)]
    tie = [backup("a", hours_ago=1), backup("b", hours_ago=1, phase=P.FAILED)]
    assert deleted(tie, Retention(keepLast=3)) == []


def test_the_order_of_the_input_does_not_matter() -> None:
    backups = [
        *DAILY,
        backup("f1", hours_ago=30, phase=P.FAILED),
        backup("f0", hours_ago=0.5, phase=P.FAILED),
        backup("r", hours_ago=0, phase=P.RUNNING),
    ]
    retention = Retention(keepLast=2, maxAge="30h")
    expected = to_delete(backups, retention, NOW)
    assert [d.name for d in expected] == ["b4", "b3", "b2", "f1", "f0"]
    for order in itertools.permutations(backups):
        assert to_delete(order, retention, NOW) == expected


def test_a_backup_without_completion_time_sorts_by_creation() -> None:
    # A Succeeded status always has completedAt (operations.advance sets it); if one did not,
    # its creation time orders it rather than an error.
    odd = BackupRecord("odd", P.SUCCEEDED, created_at=NOW - timedelta(days=3))
    assert deleted([odd, DAILY[0]], Retention(keepLast=1)) == [("odd", BEYOND_KEEP_LAST)]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("168h", 168 * 3600), ("90m", 5400), ("45s", 45), ("1h30m", 5400), ("0s", 0)],
)
def test_parse_age(value: str, seconds: int) -> None:
    assert parse_age(value) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["7d", "1.5h", "", "h", "-1h", "1h 30m"])
def test_parse_age_refuses_what_the_api_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="invalid age"):
        parse_age(value)
