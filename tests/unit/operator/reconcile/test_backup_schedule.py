"""Schedule math on fixed clocks: next slots, the one catch-up after missed slots, and the
daylight saving days of Europe/Berlin (2026: spring forward on March 29, 02:00 CET -> 03:00
CEST; fall back on October 25, 03:00 CEST -> 02:00 CET)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from etcd_operator.api.schedule import parse_schedule
from etcd_operator.reconcile.backup_schedule import (
    ScheduleDecision,
    decide,
    latest_slot,
    next_slot,
    previous_slots,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def walk(expression: str, zone: str | None, start: datetime, count: int) -> list[datetime]:
    schedule = parse_schedule(expression, zone)
    slots: list[datetime] = []
    t = start
    for _ in range(count):
        found = next_slot(schedule, t)
        assert found is not None
        slots.append(found)
        t = found
    return slots


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("0 3 * * *", utc(2026, 1, 2, 2, 59), [utc(2026, 1, 2, 3, 0), utc(2026, 1, 3, 3, 0)]),
        # A slot exactly at the start is not "after" it.
        ("0 3 * * *", utc(2026, 1, 2, 3, 0), [utc(2026, 1, 3, 3, 0), utc(2026, 1, 4, 3, 0)]),
        ("*/20 * * * *", utc(2026, 1, 2, 3, 5), [utc(2026, 1, 2, 3, 20), utc(2026, 1, 2, 3, 40)]),
        (
            "@hourly",
            utc(2026, 1, 2, 3, 0) + timedelta(seconds=1),
            [utc(2026, 1, 2, 4, 0), utc(2026, 1, 2, 5, 0)],
        ),
        ("@daily", utc(2026, 1, 2, 12), [utc(2026, 1, 3), utc(2026, 1, 4)]),
        ("@midnight", utc(2026, 1, 2, 12), [utc(2026, 1, 3), utc(2026, 1, 4)]),
        # 2026-01-02 is a Friday: @weekly is Sunday midnight.
        ("@weekly", utc(2026, 1, 2), [utc(2026, 1, 4), utc(2026, 1, 11)]),
        ("@monthly", utc(2026, 1, 2), [utc(2026, 2, 1), utc(2026, 3, 1)]),
        ("@yearly", utc(2026, 1, 2), [utc(2027, 1, 1), utc(2028, 1, 1)]),
        ("@annually", utc(2026, 1, 2), [utc(2027, 1, 1), utc(2028, 1, 1)]),
        # Weekdays only: Friday, then Monday.
        ("0 3 * * MON-FRI", utc(2026, 1, 2), [utc(2026, 1, 2, 3), utc(2026, 1, 5, 3)]),
    ],
)
def test_next_slots_in_utc(expression: str, start: datetime, expected: list[datetime]) -> None:
    assert walk(expression, None, start, len(expected)) == expected


def test_a_time_zone_moves_the_slots_and_results_are_in_utc() -> None:
    # 03:00 in Berlin is 02:00 UTC in winter, 01:00 UTC in summer; New York is UTC-5 in January.
    assert walk("0 3 * * *", "Europe/Berlin", utc(2026, 1, 2), 1) == [utc(2026, 1, 2, 2)]
    assert walk("0 3 * * *", "Europe/Berlin", utc(2026, 7, 2), 1) == [utc(2026, 7, 2, 1)]
    assert walk("0 3 * * *", "America/New_York", utc(2026, 1, 2), 1) == [utc(2026, 1, 2, 8)]
    # Any aware datetime is accepted and means the same instant.
    berlin_now = datetime(2026, 1, 2, 3, 30, tzinfo=BERLIN)
    schedule = parse_schedule("0 3 * * *", "Europe/Berlin")
    found = next_slot(schedule, berlin_now)
    assert found == utc(2026, 1, 3, 2)
    assert found is not None and found.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    schedule = parse_schedule("@daily")
    with pytest.raises(ValueError, match="timezone-aware"):
        next_slot(schedule, datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(schedule, None, datetime(2026, 1, 2))


def test_previous_slots_include_the_instant_itself() -> None:
    schedule = parse_schedule("0 3 * * *")
    assert latest_slot(schedule, utc(2026, 1, 2, 3, 0)) == utc(2026, 1, 2, 3, 0)
    assert latest_slot(schedule, utc(2026, 1, 2, 3) - timedelta(seconds=1)) == utc(2026, 1, 1, 3, 0)
    moment = utc(2026, 1, 2, 3, 0) + timedelta(microseconds=500)
    assert latest_slot(schedule, moment) == utc(2026, 1, 2, 3, 0)
    assert previous_slots(schedule, utc(2026, 1, 2, 12), count=0) == ()
    assert previous_slots(schedule, utc(2026, 1, 2, 12), count=3) == (
        utc(2026, 1, 2, 3),
        utc(2026, 1, 1, 3),
        utc(2025, 12, 31, 3),
    )


# The decision table: (last scheduled slot, now) -> (due slot, next slot, missed).
DAILY = parse_schedule("0 3 * * *")
T = utc(2026, 1, 10, 3)  # a slot


@pytest.mark.parametrize(
    ("last", "now", "since", "expected"),
    [
        pytest.param(
            T - timedelta(days=1),
            T - timedelta(minutes=1),
            None,
            ScheduleDecision(due=None, next=T),
            id="before-the-slot",
        ),
        pytest.param(
            T - timedelta(days=1),
            T,
            None,
            ScheduleDecision(due=T, next=T + timedelta(days=1)),
            id="at-the-slot",
        ),
        pytest.param(
            T - timedelta(days=1),
            T + timedelta(hours=5),
            None,
            ScheduleDecision(due=T, next=T + timedelta(days=1)),
            id="late-in-the-interval",
        ),
        pytest.param(
            T,
            T + timedelta(seconds=30),
            None,
            ScheduleDecision(due=None, next=T + timedelta(days=1)),
            id="already-taken",
        ),
        pytest.param(
            T - timedelta(days=5),
            T + timedelta(hours=1),
            None,
            ScheduleDecision(due=T, next=T + timedelta(days=1), missed=True),
            id="four-missed-slots-give-one-catch-up",
        ),
        pytest.param(
            None,
            T + timedelta(hours=1),
            None,
            ScheduleDecision(due=T, next=T + timedelta(days=1)),
            id="never-taken-takes-one-now",
        ),
        pytest.param(
            None,
            T + timedelta(hours=1),
            T + timedelta(minutes=30),
            ScheduleDecision(due=None, next=T + timedelta(days=1)),
            id="since-a-time-after-the-slot-waits-for-the-next",
        ),
        pytest.param(
            None,
            T + timedelta(hours=1),
            T - timedelta(days=3),
            ScheduleDecision(due=T, next=T + timedelta(days=1), missed=True),
            id="since-long-ago-catches-up-once",
        ),
        pytest.param(
            T + timedelta(days=2),
            T + timedelta(hours=1),
            None,
            ScheduleDecision(due=None, next=T + timedelta(days=3)),
            id="a-recorded-slot-in-the-future-is-not-taken-again",
        ),
    ],
)
def test_decide(
    last: datetime | None, now: datetime, since: datetime | None, expected: ScheduleDecision
) -> None:
    assert decide(DAILY, last, now, since=since) == expected


def test_a_suspended_schedule_takes_nothing_and_schedules_nothing() -> None:
    decision = decide(DAILY, T - timedelta(days=3), T + timedelta(hours=1), suspended=True)
    assert decision == ScheduleDecision(due=None, next=None)


def test_a_run_of_passes_takes_each_slot_once_and_one_after_an_outage() -> None:
    """Passes every 10 minutes for 3 days with an outage of 30 hours: each slot taken once
    while up, and one backup (the latest slot) when the operator comes back."""
    schedule = parse_schedule("0 */6 * * *")
    start = utc(2026, 1, 10)
    outage = (start + timedelta(hours=20), start + timedelta(hours=50))
    last: datetime | None = start - timedelta(hours=6)
    taken: list[datetime] = []
    now = start
    while now < start + timedelta(days=3):
        if not outage[0] <= now < outage[1]:
            decision = decide(schedule, last, now)
            if decision.due is not None:
                taken.append(decision.due)
                last = decision.due
        now += timedelta(minutes=10)
    hours = [int((t - start) / timedelta(hours=1)) for t in taken]
    # 0, 6, 12, 18; down from 20h to 50h (slots 24..48 missed); 48 caught up at 50h; 54...
    assert hours == [0, 6, 12, 18, 48, 54, 60, 66]


class TestBerlinSpringForward:
    """2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:00-02:59 local does not exist."""

    def test_a_fixed_time_in_the_skipped_hour_runs_at_the_jump(self) -> None:
        slots = walk("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12), 3)
        assert slots == [
            utc(2026, 3, 28, 1, 30),  # 02:30 CET
            utc(2026, 3, 29, 1, 0),  # 03:00 CEST, right after the jump
            utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        ]
        assert [s.astimezone(BERLIN).strftime("%H:%M%z") for s in slots] == [
            "02:30+0100",
            "03:00+0200",
            "02:30+0200",
        ]

    def test_daily_at_midnight_keeps_local_midnight(self) -> None:
        assert walk("@daily", "Europe/Berlin", utc(2026, 3, 28, 12), 2) == [
            utc(2026, 3, 28, 23),  # 00:00 CET
            utc(2026, 3, 29, 22),  # 00:00 CEST
        ]

    def test_hourly_follows_real_time(self) -> None:
        # 01:00 CET then 03:00 CEST: one hour apart, no slot at the missing 02:00.
        assert walk("0 * * * *", "Europe/Berlin", utc(2026, 3, 28, 23, 30), 3) == [
            utc(2026, 3, 29, 0),
            utc(2026, 3, 29, 1),
            utc(2026, 3, 29, 2),
        ]

    def test_a_star_minute_in_the_skipped_hour_has_no_slot_that_day(self) -> None:
        # cronsim (Debian's cron) schedules "*/30 2" in real time: 02:xx never happens.
        assert walk("*/30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), 2) == [
            utc(2026, 3, 30, 0, 0),
            utc(2026, 3, 30, 0, 30),
        ]

    def test_the_backup_of_the_day_is_due_once(self) -> None:
        schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
        last = utc(2026, 3, 28, 1, 30)
        assert decide(schedule, last, utc(2026, 3, 29, 0, 59)).due is None
        first = decide(schedule, last, utc(2026, 3, 29, 1, 0))
        assert first == ScheduleDecision(due=utc(2026, 3, 29, 1), next=utc(2026, 3, 30, 0, 30))
        assert decide(schedule, first.due, utc(2026, 3, 29, 12)).due is None


class TestBerlinFallBack:
    """2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:00-02:59 local happens twice."""

    def test_a_fixed_time_in_the_repeated_hour_runs_once(self) -> None:
        slots = walk("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2)
        assert slots == [
            utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first 02:30
            utc(2026, 10, 26, 1, 30),  # 02:30 CET the day after; not 02:30 CET on the 25th
        ]

    def test_asked_inside_the_repeated_hour_it_does_not_run_again(self) -> None:
        schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
        second_0240 = utc(2026, 10, 25, 1, 40)  # 02:40 CET, the second time round
        assert second_0240.astimezone(BERLIN).fold == 1
        assert next_slot(schedule, second_0240) == utc(2026, 10, 26, 1, 30)
        decision = decide(schedule, utc(2026, 10, 25, 0, 30), second_0240)
        assert decision == ScheduleDecision(due=None, next=utc(2026, 10, 26, 1, 30))
        assert previous_slots(schedule, utc(2026, 10, 26, 12), count=2) == (
            utc(2026, 10, 26, 1, 30),
            utc(2026, 10, 25, 0, 30),
        )

    def test_hourly_follows_real_time_through_both_two_oclocks(self) -> None:
        slots = walk("0 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 30), 3)
        assert slots == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)]
        assert [s.astimezone(BERLIN).strftime("%H:%M%z") for s in slots] == [
            "02:00+0200",
            "02:00+0100",
            "03:00+0100",
        ]

    def test_daily_keeps_local_time_across_the_change(self) -> None:
        assert walk("0 3 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2) == [
            utc(2026, 10, 25, 2),  # 03:00 CET (after the change)
            utc(2026, 10, 26, 2),
        ]
        assert walk("0 1 * * *", "Europe/Berlin", utc(2026, 10, 24, 0), 2) == [
            utc(2026, 10, 24, 23),  # 01:00 CEST
            utc(2026, 10, 26, 0),  # 01:00 CET, 25 hours later
        ]
