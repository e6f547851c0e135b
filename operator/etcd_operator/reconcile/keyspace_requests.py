"""When a keyspace analysis is due: the annotation, the schedule, or the retry of a failure. Pure.

Three things ask for an analysis of the cluster's newest successful backup (``spec.analysis``):

- the annotation ``etcd.pyetcd.io/analyze``: a value other than the one last acted on
  (``status.keyspace.lastRequest``), as the backup annotation works;
- the schedule: the latest slot at or before now, if later than the last one acted on
  (``status.keyspace.lastScheduledTime``); one catch-up however many slots passed, and only
  slots after the cluster was created (``backup_schedule.decide``, the backups' own rule);
- a retry: the last run failed, fewer than ``MAX_ATTEMPTS`` runs tried since its trigger, and
  ``retry_delay`` has passed since it ended (one minute, doubling, an hour at most). After the
  last attempt the next slot or a new annotation value tries again.

What was acted on is recorded when the run starts (``keyspace_record.started``), under the
cluster's lock on a fresh read, so a trigger makes one run even when passes overlap or the
operator restarts in between. ``due`` does not look at a run under way: the runtime, which
knows what it runs, leaves a request alone while it runs one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from etcd_operator.api.analysis import (
    AnalysisSpec,
    AnalysisTrigger,
    KeyspaceAnalysisPhase,
    KeyspaceStatus,
)
from etcd_operator.api.schedule import ScheduleError, parse_schedule
from etcd_operator.api.times import parse_rfc3339
from etcd_operator.reconcile.backup_schedule import decide, next_slot

MAX_ATTEMPTS = 5
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)


@dataclass(frozen=True)
class AnalysisRequest:
    """One analysis to run: what asked for it, the how-manieth attempt, and what to record as
    acted on (the annotation's value, the schedule's slot)."""

    trigger: AnalysisTrigger
    attempt: int = 1
    value: str | None = None
    slot: datetime | None = None


def retry_delay(attempt: int) -> timedelta:
    """How long after the ``attempt``-th run failed the next one starts."""
    doubled: timedelta = FIRST_RETRY * (1 << min(max(attempt - 1, 0), 16))
    return min(doubled, LONGEST_RETRY)


def due(
    spec: AnalysisSpec,
    status: KeyspaceStatus | None,
    annotation: str | None,
    now: datetime,
    *,
    since: datetime | None = None,
) -> AnalysisRequest | None:
    """The analysis asked for at ``now``, or ``None``; ``since``: when the cluster was created
    (slots before it are not owed)."""
    status = status or KeyspaceStatus()
    if annotation and annotation != status.lastRequest:
        return AnalysisRequest(AnalysisTrigger.ANNOTATION, value=annotation)
    if spec.schedule is not None:
        try:
            schedule = parse_schedule(spec.schedule, spec.timeZone)
        except ScheduleError:
            schedule = None  # the model refuses it: the pass fails before it gets here
        if schedule is not None:
            decision = decide(schedule, parse_rfc3339(status.lastScheduledTime), now, since=since)
            if decision.due is not None:
                return AnalysisRequest(AnalysisTrigger.SCHEDULE, slot=decision.due)
    run = status.lastRun
    if run is not None and run.phase == KeyspaceAnalysisPhase.FAILED and run.attempt < MAX_ATTEMPTS:
        ended = parse_rfc3339(run.completedAt)
        if ended is not None and now >= ended + retry_delay(run.attempt):
            return AnalysisRequest(AnalysisTrigger.RETRY, attempt=run.attempt + 1)
    return None


def upcoming(spec: AnalysisSpec, status: KeyspaceStatus | None, now: datetime) -> datetime | None:
    """The schedule's next slot after now (and after the last one acted on), for the status."""
    if spec.schedule is None:
        return None
    try:
        schedule = parse_schedule(spec.schedule, spec.timeZone)
    except ScheduleError:
        return None
    last = parse_rfc3339(status.lastScheduledTime) if status is not None else None
    return next_slot(schedule, max(now, last) if last is not None else now)
