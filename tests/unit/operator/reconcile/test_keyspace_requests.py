"""When a keyspace analysis is due, and what its record says: a new annotation value once, each
schedule slot once (one catch-up, none before the cluster existed), a failure retried with a
doubling delay a few times, then left to the next trigger; a run moves Running -> Succeeded or
Failed and never back, keeping the last success's summary through failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from etcd_operator.api.analysis import (
    AnalysisSpec,
    AnalysisTrigger,
    BiggestKey,
    KeyspaceAnalysisPhase,
    KeyspaceAnalysisRun,
    KeyspacePrefix,
    KeyspaceStatus,
)
from etcd_operator.api.times import rfc3339
from etcd_operator.reconcile import keyspace_record as record
from etcd_operator.reconcile.keyspace_report import Summary
from etcd_operator.reconcile.keyspace_requests import (
    MAX_ATTEMPTS,
    AnalysisRequest,
    due,
    retry_delay,
    upcoming,
)

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
CREATED = NOW - timedelta(days=3)
HOURLY = AnalysisSpec(schedule="@hourly")
ON_REQUEST = AnalysisSpec()


def failed_run(attempt: int, minutes_ago: float, trigger: str = "Schedule") -> KeyspaceAnalysisRun:
    ended = NOW - timedelta(minutes=minutes_ago)
    return KeyspaceAnalysisRun(
        phase=KeyspaceAnalysisPhase.FAILED,
        trigger=AnalysisTrigger(trigger),
        attempt=attempt,
        startedAt=rfc3339(ended - timedelta(seconds=5)),
        completedAt=rfc3339(ended),
        reason="CorruptBackup",
        message="broken",
    )


def status(**fields: Any) -> KeyspaceStatus:
    return KeyspaceStatus(lastScheduledTime=rfc3339(NOW.replace(minute=0)), **fields)


def test_a_new_annotation_value_asks_once() -> None:
    asked = due(ON_REQUEST, None, "now", NOW, since=CREATED)
    assert asked == AnalysisRequest(AnalysisTrigger.ANNOTATION, value="now")
    acted = KeyspaceStatus(lastRequest="now")
    assert due(ON_REQUEST, acted, "now", NOW, since=CREATED) is None
    assert due(ON_REQUEST, acted, "", NOW, since=CREATED) is None
    assert due(ON_REQUEST, acted, None, NOW, since=CREATED) is None
    assert due(ON_REQUEST, acted, "again", NOW, since=CREATED) is not None


def test_each_slot_once_with_one_catch_up_and_none_before_the_cluster() -> None:
    # Never analysed: the latest slot after the cluster's creation is due at once.
    first = due(HOURLY, None, None, NOW + timedelta(minutes=5), since=CREATED)
    assert first == AnalysisRequest(AnalysisTrigger.SCHEDULE, slot=NOW)
    # Acted on: nothing until the next slot, which is due once however late.
    acted = KeyspaceStatus(lastScheduledTime=rfc3339(NOW))
    assert due(HOURLY, acted, None, NOW + timedelta(minutes=59), since=CREATED) is None
    late = due(HOURLY, acted, None, NOW + timedelta(hours=5, minutes=1), since=CREATED)
    assert late == AnalysisRequest(AnalysisTrigger.SCHEDULE, slot=NOW + timedelta(hours=5))
    # A cluster created after the last slot owes nothing for it.
    young = due(HOURLY, None, None, NOW + timedelta(minutes=30), since=NOW + timedelta(minutes=1))
    assert young is None
    assert upcoming(HOURLY, acted, NOW + timedelta(minutes=3)) == NOW + timedelta(hours=1)
    assert upcoming(ON_REQUEST, acted, NOW) is None


def test_the_annotation_comes_before_the_schedule() -> None:
    asked = due(HOURLY, None, "now", NOW, since=CREATED)
    assert asked is not None and asked.trigger == AnalysisTrigger.ANNOTATION


@pytest.mark.parametrize(
    ("attempt", "minutes_ago", "retried"),
    [
        (1, 0.5, False),  # one minute after the first failure
        (1, 1, True),
        (2, 1.5, False),  # two after the second
        (2, 2, True),
        (4, 7.9, False),  # eight after the fourth
        (4, 8, True),
        (MAX_ATTEMPTS, 600, False),  # the last attempt: the next trigger tries again
    ],
)
def test_a_failure_is_retried_with_a_doubling_delay(
    attempt: int, minutes_ago: float, retried: bool
) -> None:
    asked = due(HOURLY, status(lastRun=failed_run(attempt, minutes_ago)), None, NOW, since=CREATED)
    if retried:
        assert asked == AnalysisRequest(AnalysisTrigger.RETRY, attempt=attempt + 1)
    else:
        assert asked is None


def test_retry_delays_double_up_to_an_hour() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    assert retry_delay(7) == timedelta(hours=1) == retry_delay(10_000)


def test_a_success_or_a_run_under_way_is_not_retried() -> None:
    ok = failed_run(1, 30).model_copy(update={"phase": "Succeeded"})
    assert due(HOURLY, status(lastRun=ok), None, NOW, since=CREATED) is None
    going = failed_run(1, 30).model_copy(update={"phase": "Running", "completedAt": None})
    assert due(HOURLY, status(lastRun=going), None, NOW, since=CREATED) is None
    assert record.running(status(lastRun=going)) and not record.running(status(lastRun=ok))


def test_a_new_trigger_starts_over_after_the_last_attempt() -> None:
    exhausted = status(lastRun=failed_run(MAX_ATTEMPTS, 5))
    asked = due(HOURLY, exhausted, None, NOW + timedelta(hours=1), since=CREATED)
    assert asked == AnalysisRequest(AnalysisTrigger.SCHEDULE, slot=NOW + timedelta(hours=1))
    started = record.started(exhausted, asked, "b", NOW + timedelta(hours=1))
    assert started.lastRun is not None and started.lastRun.attempt == 1


# -- the record ----------------------------------------------------------------------------------

SUMMARY = Summary(
    revision=42,
    live_keys=3,
    live_bytes=300,
    db_size=20480,
    db_size_in_use=16384,
    prefixes=(KeyspacePrefix(prefix="/a/", liveKeys=3, liveBytes=300, storedBytes=900),),
    leases_without_keys=1,
    biggest_key=BiggestKey(key="/a/big", valueSize=200),
    hottest_key=None,
)


def test_a_start_records_what_it_acts_on() -> None:
    by_slot = record.started(None, AnalysisRequest(AnalysisTrigger.SCHEDULE, slot=NOW), "b1", NOW)
    assert by_slot.lastScheduledTime == rfc3339(NOW) and by_slot.lastRequest is None
    assert by_slot.lastRun is not None
    assert (by_slot.lastRun.phase, by_slot.lastRun.backup) == ("Running", "b1")
    by_value = record.started(
        by_slot, AnalysisRequest(AnalysisTrigger.ANNOTATION, value="x"), None, NOW
    )
    assert by_value.lastRequest == "x" and by_value.lastScheduledTime == rfc3339(NOW)


def test_a_success_replaces_the_summary_and_a_failure_keeps_it() -> None:
    first = record.started(None, AnalysisRequest(AnalysisTrigger.ANNOTATION, value="a"), "b1", NOW)
    done = record.succeeded(first, SUMMARY, "s3://bucket/b1.db.keyspace.json", NOW)
    assert done.lastRun is not None and done.lastRun.phase == KeyspaceAnalysisPhase.SUCCEEDED
    assert (done.backup, done.revision, done.liveKeys) == ("b1", 42, 3)
    assert done.report == "s3://bucket/b1.db.keyspace.json"
    assert done.analyzedAt == rfc3339(NOW) and done.leasesWithoutKeys == 1
    later = NOW + timedelta(hours=1)
    request = AnalysisRequest(AnalysisTrigger.ANNOTATION, value="b")
    again = record.started(done, request, "b2", later)
    broken = record.failed(again, "CorruptBackup", "b2 is corrupt", later)
    assert broken.lastRun is not None
    assert (broken.lastRun.phase, broken.lastRun.reason) == ("Failed", "CorruptBackup")
    assert broken.lastRun.completedAt == rfc3339(later)
    assert (broken.backup, broken.analyzedAt, broken.report) == (
        "b1",
        rfc3339(NOW),
        "s3://bucket/b1.db.keyspace.json",
    )


def test_an_ended_run_never_moves_again() -> None:
    begun = record.started(None, AnalysisRequest(AnalysisTrigger.ANNOTATION, value="a"), "b", NOW)
    broken = record.failed(begun, "NoSuchKey", "gone", NOW)
    assert record.succeeded(broken, SUMMARY, "s3://x/y", NOW) == broken
    assert record.failed(broken, "Other", "other", NOW) == broken
    assert record.interrupted(broken, NOW) == broken
    with pytest.raises(ValueError, match="ends Succeeded or Failed"):
        record.ended(begun, KeyspaceAnalysisPhase.RUNNING, "x", "y", NOW)


def test_an_interrupted_run_fails_and_is_retried() -> None:
    begun = record.started(None, AnalysisRequest(AnalysisTrigger.SCHEDULE, slot=NOW), "b", NOW)
    cut = record.interrupted(begun, NOW)
    assert cut.lastRun is not None and cut.lastRun.reason == record.INTERRUPTED
    retry = due(HOURLY, cut, None, NOW + timedelta(minutes=1), since=CREATED)
    assert retry == AnalysisRequest(AnalysisTrigger.RETRY, attempt=2)
