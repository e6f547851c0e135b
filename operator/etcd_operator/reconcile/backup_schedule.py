"""When scheduled backups are taken: the next scheduled time, and whether one is due now. Pure.

A schedule (``api.schedule.CronSchedule``: cron fields and a time zone) has *slots*, the
instants cron would start a job at. ``decide`` is the step's whole question: given the slot of
the last scheduled backup (as the cluster's status recorded it) and now, is a backup due, for
which slot, and when is the next one (for the status and for the requeue)?

Catch-up rule: the slot due is the latest one at or before now, if it is later than the last
one backed up. However many slots passed meanwhile (the operator was down, the schedule was
suspended, the API server unreachable), that is one backup, not one per missed slot: a backup
is a copy of the cluster as it is now, and ten copies of the same data taken in a burst would
only push older, different ones out of retention. No deadline is kept (Kubernetes CronJob's
``startingDeadlineSeconds``): a late backup is always better than none. A schedule that never
took a backup takes its first one for the latest slot at once, unless ``since`` is given (the
time the schedule appeared): then only slots after it count, as a CronJob counts from its
creation.

Slots are instants (aware datetimes, returned in UTC), and the cron library, ``cronsim`` (see
``api.schedule`` for why), decides how a time zone's daylight saving transitions move them, as
Debian's cron does: a job at a fixed time that falls in the hour skipped in spring (02:30 in
Europe/Berlin on the last Sunday of March) runs at the jump (03:00 CEST), and one in the hour
repeated in autumn runs once, on its first occurrence (02:30 CEST, not again at 02:30 CET).
Expressions whose minute or hour field starts with ``*`` (hourly and more frequent jobs, also
``*/30 2 * * *``) follow real time instead: no slot in the skipped hour, and the repeated hour's
slots twice. Every slot returned here is strictly after (or at or before) the instant asked
about, and slots strictly increase: the library computes in local wall time and can land on a
repeated wall time's earlier instant, which is filtered out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim

from etcd_operator.api.schedule import CronSchedule

# cronsim's own search horizon is fifty years per step; these bound the few slots this module
# skips over (at most one repeated wall time per transition), so that no input loops forever.
_MAX_SKIPS = 8


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


def _slots(schedule: CronSchedule, start: datetime, *, reverse: bool) -> Iterator[datetime]:
    """cronsim's slots from ``start`` on (backwards with ``reverse``), in UTC, until it finds
    none within fifty years."""
    it = CronSim(schedule.cron, start.astimezone(schedule.zone), reverse=reverse)
    while True:
        try:
            slot = next(it)
        except StopIteration:
            return
        yield slot.astimezone(UTC)


def next_slot(schedule: CronSchedule, after: datetime) -> datetime | None:
    """The first slot strictly after ``after`` (UTC), or ``None`` if none in fifty years."""
    after = _aware(after, "after")
    for skipped, slot in enumerate(_slots(schedule, after, reverse=False)):
        if slot > after:
            return slot
        if skipped >= _MAX_SKIPS:
            break
    return None


def previous_slots(schedule: CronSchedule, at: datetime, count: int = 1) -> tuple[datetime, ...]:
    """Up to ``count`` slots at or before ``at``, the latest first (UTC)."""
    at = _aware(at, "at")
    if count < 1:
        return ()
    # cronsim's reverse iteration starts strictly before its start (whole seconds): start one
    # second after ``at`` so that a slot exactly at ``at`` is found.
    start = at.replace(microsecond=0) + timedelta(seconds=1)
    found: list[datetime] = []
    skipped = 0
    for slot in _slots(schedule, start, reverse=True):
        if slot > at or (found and slot >= found[-1]):
            skipped += 1
            if skipped > _MAX_SKIPS:
                break
            continue
        found.append(slot)
        if len(found) == count:
            break
    return tuple(found)


def latest_slot(schedule: CronSchedule, at: datetime) -> datetime | None:
    """The last slot at or before ``at`` (UTC), or ``None`` if none in fifty years."""
    slots = previous_slots(schedule, at)
    return slots[0] if slots else None


@dataclass(frozen=True)
class ScheduleDecision:
    """What the schedule asks for now.

    ``due``: the slot to take a backup for now (UTC), ``None`` when none is due; the caller
    names the backup after it and records it as the last scheduled slot once the object exists.
    ``missed``: ``due`` is a catch-up, at least one slot before it passed without a backup.
    ``next``: the next slot after now (and after the last one backed up), when to look again;
    ``None`` while suspended or when the schedule never fires again.
    """

    due: datetime | None
    next: datetime | None
    missed: bool = False


def decide(
    schedule: CronSchedule,
    last_scheduled: datetime | None,
    now: datetime,
    *,
    since: datetime | None = None,
    suspended: bool = False,
) -> ScheduleDecision:
    """Whether a scheduled backup is due at ``now``, given the slot of the last one.

    ``last_scheduled`` is the *slot* the last scheduled backup was taken for (not when it ran);
    ``since``, when given, is when the schedule started to apply (slots at or before it are
    not owed); ``suspended`` takes nothing and schedules nothing.
    """
    now = _aware(now, "now")
    if suspended:
        return ScheduleDecision(due=None, next=None)
    reference = last_scheduled if last_scheduled is not None else since
    if reference is not None:
        reference = _aware(reference, "last_scheduled" if last_scheduled else "since")
    # Two slots back: the latest one is the candidate, the one before tells a catch-up.
    recent = previous_slots(schedule, now, count=2)
    due: datetime | None = None
    missed = False
    if recent and (reference is None or recent[0] > reference):
        due = recent[0]
        missed = len(recent) == 2 and reference is not None and recent[1] > reference
    # A recorded slot in the future (the operator's clock went back) is not taken twice.
    horizon = max(now, reference) if reference is not None else now
    return ScheduleDecision(due=due, next=next_slot(schedule, horizon), missed=missed)
