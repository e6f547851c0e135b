"""The backup schedule's grammar: five cron fields or a macro, an IANA zone, and errors that say
what is wrong (a pydantic validator hands them to the user as they are)."""

from __future__ import annotations

from typing import Annotated

import pytest
from etcd_operator.api.schedule import MACROS, ScheduleError, parse_schedule
from pydantic import AfterValidator, BaseModel, ValidationError


@pytest.mark.parametrize(
    ("expression", "cron"),
    [
        ("0 3 * * *", "0 3 * * *"),
        ("  */15   *  * * MON-FRI ", "*/15 * * * MON-FRI"),
        ("0 0 1,15 JAN,jul *", "0 0 1,15 JAN,jul *"),
        ("0 0 L * *", "0 0 L * *"),  # cronsim's extensions: the last day of the month,
        ("0 3 * * MON#1", "0 3 * * MON#1"),  # the first Monday
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@Daily", "0 0 * * *"),
    ],
)
def test_expressions_and_macros_parse_to_five_fields(expression: str, cron: str) -> None:
    schedule = parse_schedule(expression)
    assert (schedule.expression, schedule.cron, schedule.time_zone) == (expression, cron, "UTC")


def test_every_macro_is_five_valid_fields() -> None:
    for macro, cron in MACROS.items():
        assert parse_schedule(cron).cron == cron, macro


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty schedule"),
        ("   ", "empty schedule"),
        (
            "0 3 * *",
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), not 4",
        ),
        ("0 0 3 * * *", "not 6"),  # cronsim's seconds field is not cron's
        ("61 * * * *", "invalid schedule '61 * * * *': bad minute field"),
        ("0 24 * * *", "bad hour field"),
        ("0 0 0 * *", "bad day-of-month field"),
        ("0 0 * 13 *", "bad month field"),
        ("0 0 * * 8", "bad day-of-week field"),
        ("0 0 ? * *", "bad day-of-month field"),
        ("*/0 * * * *", "bad minute field"),
        ("0 0 30 2 *", "bad day-of-month field"),  # no February has a 30th
        ("* * */20 * 1L", "it never fires"),  # the 1st or 21st that is a month's last Monday
        ("@reboot", "unknown schedule macro '@reboot': use one of @annually, @daily"),
        ("@every 1h", "unknown schedule macro"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as e:
        parse_schedule(expression)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        (None, "UTC"),
        ("", "UTC"),
        ("UTC", "UTC"),
        ("Europe/Berlin", "Europe/Berlin"),
        ("America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"),
        ("Etc/GMT+1", "Etc/GMT+1"),
    ],
)
def test_time_zones_are_iana_names(name: str | None, key: str) -> None:
    assert parse_schedule("@daily", name).time_zone == key


@pytest.mark.parametrize(
    "name",
    [
        "Europe/Berlim",
        "europe/berlin",  # the names are case-sensitive
        "Mars/Olympus_Mons",
        "Europe",  # a directory of the database
        "iso3166.tab",  # a file of the database that is no zone
        "localtime",  # the operator machine's zone, not the cluster's
        "/etc/localtime",
        "../etc/passwd",
        "Europe/../UTC",
        "CET ",
    ],
)
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(ScheduleError) as e:
        parse_schedule("@daily", name)
    assert str(e.value) == (
        f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC"
    )


def test_the_error_reaches_the_user_through_a_pydantic_validator() -> None:
    def check(expression: str) -> str:
        parse_schedule(expression)
        return expression

    class Spec(BaseModel):
        schedule: Annotated[str, AfterValidator(check)]

    assert Spec(schedule="@hourly").schedule == "@hourly"
    with pytest.raises(ValidationError) as e:
        Spec(schedule="0 25 * * *")
    assert "invalid schedule '0 25 * * *': bad hour field" in str(e.value)
