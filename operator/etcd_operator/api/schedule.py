"""The grammar of ``spec.backup.schedule`` and ``spec.backup.timeZone``: parse and check.

Pure but for ``zoneinfo`` reading (and caching) the tz database.

``parse_schedule`` turns an expression and an optional IANA time zone into a ``CronSchedule``,
or raises ``ScheduleError`` (a ``ValueError``) whose message names what is wrong, so that a
pydantic validator on ``BackupSpec`` can hand it to the user unchanged. It lives in ``api``, the
lowest layer, for that reason: the models' validators cannot import ``reconcile``, where the
schedule's arithmetic (next time, due now, catch-up) is, in ``reconcile.backup_schedule``.

The grammar is cron's five fields (minute hour day-of-month month day-of-week, with names such
as ``MON`` and ``JAN``, ranges, lists and steps) and the macros of Vixie cron, which Kubernetes
CronJobs accept too: ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
(``@midnight``) and ``@hourly``. ``@reboot`` and ``@every`` are refused: a backup schedule is a
calendar. The time zone is an IANA name read with the standard library's ``zoneinfo`` (the
system's tz database, or the ``tzdata`` package where the image has none); UTC when unset.

The cron library is ``cronsim`` (Healthchecks.io's), chosen over ``croniter`` on PyPI because:

- maintenance: cronsim has one steady maintainer and a steady release history, with stated
  priorities (match Debian's cron exactly, readability, minimalism); croniter was declared
  unmaintained and abandoned by its maintainer in 2025 before the pallets-eco organisation
  took it over, so its future maintenance is younger than cronsim's whole history;
- DST: cronsim documents its daylight saving behaviour, Debian cron's, and tests it: a job at
  a fixed time that falls in the hour skipped in spring runs right after the jump, and one in
  the hour repeated in autumn runs once; jobs that run every hour or more often follow real
  time. croniter's handling of zoneinfo time zones across DST was rewritten in mid-2025 after
  years of open reports and still draws new ones;
- the rest: cronsim is typed (``py.typed``; mypy strict needs no stub) and has no
  dependencies; croniter is untyped and needs python-dateutil.

cronsim does not know the @-macros: they are a fixed table (``MACROS``), expanded here before
parsing. It accepts a sixth field (seconds), which cron does not have: refused here, so that a
schedule means what it means to every other cron. Its Quartz-style extensions (``L`` and ``LW``
for the last day and weekday of the month, ``5L`` and ``MON#2`` in the day-of-week) are kept:
they add to cron's grammar without changing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

# Vixie cron's macros, as Kubernetes CronJobs (robfig/cron) expand them.
MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
DEFAULT_TIME_ZONE = "UTC"
# An IANA name: letters, digits and "_+-" in "/"-separated parts ("Europe/Berlin", "Etc/GMT+1").
# Checked before zoneinfo sees it, which would otherwise also read other files of the tz
# database directory ("zone.tab") and report them as corrupt zones.
TIME_ZONE_PATTERN = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
# Names that exist in the tz database but mean the operator machine's own settings, which a
# cluster's schedule must not depend on.
_MACHINE_ZONES = frozenset({"localtime", "posixrules", "Factory"})


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the message is for the user."""


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule: the expression as written, the five fields it stands for, the zone."""

    expression: str
    cron: str
    zone: ZoneInfo

    @property
    def time_zone(self) -> str:
        return self.zone.key


def parse_time_zone(name: str | None) -> ZoneInfo:
    """The zone named ``name`` (UTC when unset or empty), or ``ScheduleError``."""
    if not name:
        return ZoneInfo(DEFAULT_TIME_ZONE)
    if not TIME_ZONE_PATTERN.match(name) or name in _MACHINE_ZONES:
        raise ScheduleError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # Not found, or a file of the database that is no zone (e.g. "iso3166.tab").
        raise ScheduleError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC"
        ) from None


def expand(expression: str) -> str:
    """The five cron fields ``expression`` stands for, or ``ScheduleError``."""
    text = expression.strip()
    if not text:
        raise ScheduleError("empty schedule: give a cron expression such as '0 3 * * *'")
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise ScheduleError(
                f"unknown schedule macro {text!r}: use one of {', '.join(sorted(MACROS))} "
                "or five cron fields"
            )
        return macro
    fields = text.split()
    if len(fields) != len(FIELDS):
        raise ScheduleError(
            f"invalid schedule {expression!r}: a cron expression has {len(FIELDS)} fields "
            f"({' '.join(FIELDS)}), not {len(fields)}"
        )
    return " ".join(fields)


def parse_schedule(expression: str, time_zone: str | None = None) -> CronSchedule:
    """``expression`` in ``time_zone`` as a schedule, or ``ScheduleError`` saying why not."""
    cron = expand(expression)
    zone = parse_time_zone(time_zone)
    try:
        # cronsim checks the fields when it is built; one step also refuses expressions that
        # can never fire (it gives up after fifty years without a match), e.g. "0 0 30 2 *".
        next(CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC)))
    except CronSimError as e:
        # cronsim says "Bad minute", "Bad day-of-week", ...: name the expression with it.
        what = str(e)
        if what.startswith("Bad "):
            what = f"{what.lower()} field (the fields are: {' '.join(FIELDS)})"
        raise ScheduleError(f"invalid schedule {expression!r}: {what}") from None
    except StopIteration:
        raise ScheduleError(f"invalid schedule {expression!r}: it never fires") from None
    return CronSchedule(expression=expression, cron=cron, zone=zone)
