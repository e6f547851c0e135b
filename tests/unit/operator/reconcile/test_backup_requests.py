"""The on-demand annotation is exactly-once and the backups' names are deterministic, bounded
DNS labels, so that a crash between creating a backup and recording it creates no second one."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from etcd_operator.reconcile.backup_requests import (
    NAME_MAX_LENGTH,
    OnDemandRequest,
    on_demand_backup_name,
    on_demand_request,
    scheduled_backup_name,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LONGEST = "c" + "-long" * 10 + "x"  # 52 characters, the longest cluster name the API allows
SLOT = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)


def valid(name: str) -> bool:
    return len(name) <= NAME_MAX_LENGTH and DNS_LABEL.match(name) is not None


@pytest.mark.parametrize(
    ("annotation", "last", "creates"),
    [
        pytest.param(None, None, False, id="no-annotation"),
        pytest.param("", None, False, id="empty-value"),
        pytest.param("now", None, True, id="first-value"),
        pytest.param("now", "now", False, id="same-value-again"),
        pytest.param("later", "now", True, id="new-value"),
        pytest.param(None, "now", False, id="annotation-removed"),
        pytest.param("Now", "now", True, id="values-compare-exactly"),
        pytest.param("now ", "now", True, id="whitespace-counts"),
    ],
)
def test_on_demand_annotation(annotation: str | None, last: str | None, creates: bool) -> None:
    request = on_demand_request("example", annotation, last)
    if not creates:
        assert request is None
    else:
        assert annotation is not None
        assert request == OnDemandRequest(
            name=on_demand_backup_name("example", annotation), value=annotation
        )


def test_a_crash_before_recording_asks_for_the_same_object_again() -> None:
    # Pass 1 creates the object, then the operator dies before the status records the value;
    # pass 2 sees the same annotation and the old record: it asks for the same name (which the
    # API server then refuses as existing). Once recorded, nothing more is asked.
    first = on_demand_request("example", "2026-01-02", "now")
    again = on_demand_request("example", "2026-01-02", "now")
    assert first is not None and first == again
    assert on_demand_request("example", "2026-01-02", first.value) is None


@pytest.mark.parametrize(
    "value",
    ["now", "2026-01-02T03:04:05Z", "before the 3.5 upgrade!", "ÜBER/ünïcödé", "x" * 10_000],
)
def test_on_demand_names_are_bounded_dns_labels(value: str) -> None:
    for cluster in ("example", LONGEST):
        name = on_demand_backup_name(cluster, value)
        assert valid(name), name
    assert on_demand_backup_name("example", value).startswith("example-ondemand-")


def test_on_demand_names_are_deterministic_and_distinct() -> None:
    assert on_demand_backup_name("example", "now") == on_demand_backup_name("example", "now")
    # The hash is stable across processes and releases: it is part of the object's identity.
    assert on_demand_backup_name("example", "now") == "example-ondemand-47685516c7"
    names = {on_demand_backup_name("example", str(i)) for i in range(1000)}
    assert len(names) == 1000
    # Another cluster's same value is another backup.
    assert on_demand_backup_name("other", "now") != on_demand_backup_name("example", "now")


@pytest.mark.parametrize(
    ("slot", "name"),
    [
        (SLOT, "example-20260102-0300"),
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), "example-20261231-2359"),
        # Named in UTC whatever the zone of the datetime: 04:00 CET is 03:00 UTC.
        (datetime(2026, 1, 2, 4, 0, tzinfo=timezone(timedelta(hours=1))), "example-20260102-0300"),
    ],
)
def test_scheduled_names(slot: datetime, name: str) -> None:
    assert scheduled_backup_name("example", slot) == name


def test_scheduled_names_of_long_clusters_are_cut_and_hashed() -> None:
    name = scheduled_backup_name(LONGEST, SLOT)
    assert valid(name) and len(name) == NAME_MAX_LENGTH
    assert name.endswith("-20260102-0300")
    assert name.startswith(LONGEST[:30])
    # Two long names with the same start get different backups' names.
    other = LONGEST[:-1] + "y"
    assert scheduled_backup_name(other, SLOT) != name
    # The longest name that needs no cutting is kept whole.
    fits = "a" * (NAME_MAX_LENGTH - len("-20260102-0300"))
    assert scheduled_backup_name(fits, SLOT) == f"{fits}-20260102-0300"
    assert len(scheduled_backup_name(fits + "b", SLOT)) == NAME_MAX_LENGTH


def test_a_fall_back_day_has_distinct_names_for_distinct_slots() -> None:
    # Hourly in Berlin on 2026-10-25: 02:00 CEST and 02:00 CET are 00:00 and 01:00 UTC.
    assert scheduled_backup_name("example", datetime(2026, 10, 25, 0, tzinfo=UTC)) != (
        scheduled_backup_name("example", datetime(2026, 10, 25, 1, tzinfo=UTC))
    )


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="not a DNS label"):
        scheduled_backup_name("Example", SLOT)
    with pytest.raises(ValueError, match="timezone-aware"):
        scheduled_backup_name("example", datetime(2026, 1, 2, 3))
