"""The continuous backup step: a recorder asked for on every pass while the spec asks; a full
backup when the chain broke (once); the recorder's status kept, and the recoverable window."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from etcd_operator.api.operation import OperationPhase
from etcd_operator.reconcile.actions import CreateBackup, Event, RecordContinuously
from etcd_operator.reconcile.backup_status import backup_status
from etcd_operator.reconcile.continuous import chain_base, step
from etcd_operator.reconcile.observed import Observed

from tests.unit.operator.reconcile.builders import SETTINGS
from tests.unit.operator.reconcile.test_backups_step import FORMED, NOW, desired, record

CONTINUOUS: dict[str, Any] = {"continuous": {"segmentInterval": "5s"}}


def chain(backup: str, *, broken: str | None = None) -> dict[str, Any]:
    return {
        "continuous": {
            "backup": backup,
            "baseRevision": 7,
            "revision": 90,
            "time": "2026-12-06T09:59:50Z",
            "segments": 12,
            **({"broken": broken} if broken else {}),
        }
    }


def test_no_recorder_without_the_spec() -> None:
    assert step(desired({}), Observed(now=NOW), SETTINGS, FORMED).actions == ()


def test_every_pass_asks_for_the_recorder() -> None:
    got = step(desired(CONTINUOUS), Observed(now=NOW), SETTINGS, FORMED).actions
    assert got == (RecordContinuously("ns", "demo", "demo"),)


def test_a_broken_chain_gets_one_full_backup_to_start_the_next() -> None:
    cluster = desired(CONTINUOUS, status=chain("nightly", broken="compacted"))
    backups = (record("older", 30), record("nightly", 5))
    got = step(cluster, Observed(now=NOW, backups=backups), SETTINGS, FORMED).actions
    create = next(a for a in got if isinstance(a, CreateBackup))
    assert create.manifest["metadata"]["name"] == "nightly-rechain"
    assert create.manifest["metadata"]["labels"]["etcd.pyetcd.io/backup-trigger"] == "continuous"
    assert any(isinstance(a, Event) and a.reason == "ContinuousBackupBroken" for a in got)
    # Made already, running, or a newer backup since: no second one.
    made = (*backups, record("nightly-rechain", 1, ok=False))
    running = (*backups, dataclasses.replace(record("x", 0), phase=OperationPhase.RUNNING))
    newer = (*backups, record("later", 1))
    for seen in (made, running, newer):
        acted = step(cluster, Observed(now=NOW, backups=seen), SETTINGS, FORMED).actions
        assert not any(isinstance(a, CreateBackup) for a in acted), seen


def test_the_chain_extends_the_newest_success_with_a_revision() -> None:
    failed = record("failed", 1, ok=False)
    assert chain_base((record("a", 9), record("b", 3), failed)).name == "b"  # type: ignore[union-attr]
    assert chain_base((failed,)) is None


@pytest.mark.parametrize("extends", ["nightly", "gone"])
def test_status_keeps_the_recorders_record_and_the_window(extends: str) -> None:
    cluster = desired(CONTINUOUS, status=chain(extends))
    backups = (record("older", 30), record("nightly", 5))
    status = backup_status(cluster, Observed(now=NOW, backups=backups), FORMED)
    assert status is not None and status.continuous is not None
    assert status.continuous.revision == 90
    assert status.recoverableFrom is not None and status.recoverableTo is not None
    assert status.recoverableFrom.time == (NOW - timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if extends == "nightly":
        assert (status.recoverableTo.revision, status.recoverableTo.time) == (
            90,
            "2026-12-06T09:59:50Z",
        )
    else:  # the chain's backup is gone: the newest backup is the end
        assert status.recoverableTo.time == (NOW - timedelta(hours=5)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    off = backup_status(desired({}, status=chain("nightly")), Observed(now=NOW), FORMED)
    assert off is not None and off.continuous is None and off.recoverableTo is None


def test_a_segment_interval_outside_a_second_to_ten_minutes_is_refused() -> None:
    for bad in ("0s", "11m"):
        with pytest.raises(ValueError, match="segmentInterval must be within"):
            desired({"continuous": {"segmentInterval": bad}})
    assert desired(CONTINUOUS).spec.backup.continuous.interval_seconds == 5  # type: ignore[union-attr]
