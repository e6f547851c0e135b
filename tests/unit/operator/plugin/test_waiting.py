"""When a backup wait is over: durations, and each poll's decision."""

from __future__ import annotations

import pytest
from etcd_operator.api.operation import OperationPhase
from etcd_operator.plugin.waiting import Ended, Gone, TimedOut, Waiting, decide, parse_duration

from tests.unit.operator.plugin.objects import cluster, etcd_backup

NAME = "main-ondemand-0123456789"
REQUEST = "kubectl-etcd-20261206-120530-abcd1234"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("90s", 90), ("1h30m", 5400), ("2h", 7200), ("45", 45), ("1.5", 1.5)],
)
def test_durations_as_kubectl_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5q", "m", "10 m", "0", "0s", "-1", "1d", "inf", "nan"])
def test_what_is_not_a_positive_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def acted(request: str | None) -> dict[str, object]:
    obj = cluster()
    obj["status"] = {"backup": {"lastRequest": request}} if request else {}
    return obj


def test_before_the_operator_acts_it_waits_and_says_so() -> None:
    outcome = decide(NAME, REQUEST, None, acted("older"), now=10, deadline=20)
    assert isinstance(outcome, Waiting)
    assert "has not acted on the request yet" in outcome.state
    recorded = decide(NAME, REQUEST, None, acted(REQUEST), now=10, deadline=20)
    assert isinstance(recorded, Waiting) and "acted on the request" in recorded.state


@pytest.mark.parametrize("phase", [None, OperationPhase.PENDING, OperationPhase.RUNNING])
def test_a_backup_under_way_is_waited_for_until_the_deadline(
    phase: OperationPhase | None,
) -> None:
    backup = etcd_backup(NAME, phase=phase, message="waiting for its turn")
    shown = phase.value if phase else "Pending"
    before = decide(NAME, REQUEST, backup, None, now=19.9, deadline=20)
    assert isinstance(before, Waiting) and f"is {shown}" in before.state
    after = decide(NAME, REQUEST, backup, None, now=20, deadline=20)
    assert isinstance(after, TimedOut)
    assert after.state.startswith(f"EtcdBackup {NAME} is {shown}")


def test_a_timeout_before_the_operator_acted_says_so() -> None:
    outcome = decide(NAME, REQUEST, None, acted(None), now=30, deadline=20)
    assert isinstance(outcome, TimedOut)
    assert "has not acted" in outcome.state and "is the operator running?" in outcome.state


@pytest.mark.parametrize(
    "phase", [OperationPhase.SUCCEEDED, OperationPhase.FAILED, OperationPhase.REJECTED]
)
def test_an_ended_backup_ends_the_wait_even_past_the_deadline(phase: OperationPhase) -> None:
    outcome = decide(NAME, REQUEST, etcd_backup(NAME, phase=phase), None, now=99, deadline=20)
    assert isinstance(outcome, Ended)
    assert outcome.backup.phase == phase.value
    assert outcome.backup.succeeded == (phase == OperationPhase.SUCCEEDED)


def test_a_cluster_deleted_before_its_backup_existed_ends_the_wait() -> None:
    outcome = decide(NAME, REQUEST, None, None, now=10, deadline=20)
    assert isinstance(outcome, Gone) and "deleted" in outcome.state
