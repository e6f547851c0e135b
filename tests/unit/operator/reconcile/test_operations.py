"""The one-off operation state machine: forward only, terminal is final, times set once, expiry
after the time to live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from etcd_operator.api.operation import (
    OPERATION_SPEC_RULES,
    OperationPhase,
    OperationSpec,
    OperationStatus,
)
from etcd_operator.reconcile.operations import IllegalTransitionError, advance, expired
from pydantic import ValidationError

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
P = OperationPhase


def test_pending_runs_then_succeeds_with_start_and_completion_times() -> None:
    status = OperationStatus()
    running = advance(status, P.RUNNING, T0, reason="Started", message="snapshot streaming")
    assert (running.phase, running.startedAt, running.completedAt) == (
        "Running",
        "2026-01-02T03:04:05Z",
        None,
    )
    again = advance(running, P.RUNNING, T0 + timedelta(seconds=9), message="50% uploaded")
    assert again.startedAt == running.startedAt  # set once
    assert again.message == "50% uploaded"
    done = advance(again, P.SUCCEEDED, T0 + timedelta(seconds=10), reason="Completed")
    assert (done.phase, done.completedAt) == ("Succeeded", "2026-01-02T03:04:15Z")


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        pytest.param((P.RUNNING,), P.PENDING, id="running-back-to-pending"),
        pytest.param((P.RUNNING, P.SUCCEEDED), P.FAILED, id="succeeded-to-failed"),
        pytest.param((P.RUNNING, P.FAILED), P.RUNNING, id="failed-to-running"),
        pytest.param((P.REJECTED,), P.RUNNING, id="rejected-to-running"),
        pytest.param((P.RUNNING,), P.REJECTED, id="rejected-after-start"),
    ],
)
def test_phases_never_move_backwards_or_out_of_a_terminal_phase(
    path: tuple[OperationPhase, ...], illegal: OperationPhase
) -> None:
    status = OperationStatus()
    for phase in path:
        status = advance(status, phase, T0)
    with pytest.raises(IllegalTransitionError):
        advance(status, illegal, T0)


def test_a_terminal_phase_keeps_its_reason_and_time() -> None:
    failed = advance(OperationStatus(), P.FAILED, T0, reason="StoreUnreachable", message="x")
    same = advance(failed, P.FAILED, T0 + timedelta(hours=1), reason="Other", message="y")
    assert same == failed


def test_expiry_after_the_time_to_live_of_an_ended_operation() -> None:
    spec = OperationSpec(clusterName="c", ttlSecondsAfterFinished=60)
    done = advance(advance(OperationStatus(), P.RUNNING, T0), P.SUCCEEDED, T0)
    assert not expired(spec, done, T0 + timedelta(seconds=59))
    assert expired(spec, done, T0 + timedelta(seconds=60))
    assert not expired(spec, advance(OperationStatus(), P.RUNNING, T0), T0 + timedelta(days=1))
    assert not expired(OperationSpec(clusterName="c"), done, T0 + timedelta(days=365))


def test_the_spec_is_immutable_and_strict() -> None:
    spec = OperationSpec(clusterName="c")
    with pytest.raises(ValidationError):
        spec.clusterName = "d"
    with pytest.raises(ValidationError):
        OperationSpec.model_validate({"clusterName": "c", "typo": 1})
    (rule,) = OPERATION_SPEC_RULES["x-kubernetes-validations"]
    assert rule["rule"] == "self == oldSelf"
