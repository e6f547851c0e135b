"""The backup step and the cluster's backup status: the annotation and the schedule create one
EtcdBackup each, exactly once; nothing before the cluster formed; retention deletes only what
the operator made; the status records what was acted on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile.actions import CreateBackup, DeleteOperation, Event
from etcd_operator.reconcile.backup_records import BackupRecord
from etcd_operator.reconcile.backup_status import backup_status
from etcd_operator.reconcile.backups import step
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided

from tests.unit.operator.reconcile.builders import SETTINGS

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
STORE = {"bucket": "backups"}
FORMED = Decided(has_formed=True)


def desired(
    backup: dict[str, Any] | None = None,
    *,
    annotation: str | None = None,
    status: dict[str, Any] | None = None,
    created: datetime = NOW - timedelta(days=2),
) -> EtcdCluster:
    meta: dict[str, Any] = {
        "name": "demo",
        "namespace": "ns",
        "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if annotation is not None:
        meta["annotations"] = {"etcd.pyetcd.io/backup": annotation}
    body: dict[str, Any] = {"metadata": meta, "spec": {"version": "3.5.17"}}
    if backup is not None:
        body["spec"]["backup"] = {"store": STORE, **backup}
    if status is not None:
        body["status"] = {"backup": status}
    return EtcdCluster.model_validate(body)


def record(
    name: str, hours_ago: float, *, trigger: str | None = "schedule", ok: bool = True
) -> BackupRecord:
    when = NOW - timedelta(hours=hours_ago)
    return BackupRecord(
        name=name,
        phase=OperationPhase.SUCCEEDED if ok else OperationPhase.FAILED,
        created_at=when,
        completed_at=when,
        trigger=trigger,
        revision=7 if ok else None,
        message=None if ok else "access denied",
    )


def created(actions: tuple[Any, ...]) -> list[str]:
    return [a.manifest["metadata"]["name"] for a in actions if isinstance(a, CreateBackup)]


def test_without_spec_backup_nothing_happens() -> None:
    result = step(desired(annotation="now"), Observed(now=NOW), SETTINGS, FORMED)
    assert result.actions == ()
    assert backup_status(desired(), Observed(now=NOW), FORMED) is None


def test_a_new_annotation_value_makes_one_backup_and_the_status_remembers_it() -> None:
    cluster = desired({}, annotation="now")
    result = step(cluster, Observed(now=NOW), SETTINGS, FORMED)
    (name,) = created(result.actions)
    assert name.startswith("demo-ondemand-")
    (create,) = [a for a in result.actions if isinstance(a, CreateBackup)]
    meta = create.manifest["metadata"]
    assert meta["labels"]["etcd.pyetcd.io/backup-trigger"] == "annotation"
    assert create.manifest["spec"] == {"clusterName": "demo", "deletionPolicy": "Delete"}
    assert [e.reason for e in result.actions if isinstance(e, Event)] == ["BackupRequested"]
    assert result.decided is not None
    status = backup_status(cluster, Observed(now=NOW), result.decided)
    assert status is not None and status.lastRequest == "now"
    # The same value again (now in the status) asks for nothing; a new one asks again.
    again = desired({}, annotation="now", status={"lastRequest": "now"})
    assert created(step(again, Observed(now=NOW), SETTINGS, FORMED).actions) == []
    other = desired({}, annotation="later", status={"lastRequest": "now"})
    assert len(created(step(other, Observed(now=NOW), SETTINGS, FORMED).actions)) == 1


def test_nothing_is_made_before_the_cluster_formed() -> None:
    cluster = desired({"schedule": "0 3 * * *"}, annotation="now")
    result = step(cluster, Observed(now=NOW), SETTINGS, Decided(has_formed=False))
    assert result.actions == ()
    assert result.decided is not None
    status = backup_status(cluster, Observed(now=NOW), result.decided)
    assert status is not None and status.lastRequest is None
    assert status.nextScheduledTime == "2026-12-07T03:00:00Z"


def test_the_schedule_makes_one_backup_per_due_slot() -> None:
    cluster = desired({"schedule": "0 3 * * *"})
    result = step(cluster, Observed(now=NOW), SETTINGS, FORMED)
    assert created(result.actions) == ["demo-20261206-0300"]
    (create,) = [a for a in result.actions if isinstance(a, CreateBackup)]
    annotations = create.manifest["metadata"]["annotations"]
    assert annotations == {"etcd.pyetcd.io/scheduled-for": "2026-12-06T03:00:00Z"}
    assert result.decided is not None
    status = backup_status(cluster, Observed(now=NOW), result.decided)
    assert status is not None
    assert status.lastScheduledTime == "2026-12-06T03:00:00Z"
    assert status.nextScheduledTime == "2026-12-07T03:00:00Z"
    done = desired(
        {"schedule": "0 3 * * *"}, status={"lastScheduledTime": status.lastScheduledTime}
    )
    assert created(step(done, Observed(now=NOW), SETTINGS, FORMED).actions) == []


def test_a_schedule_counts_from_the_clusters_creation_and_stops_while_suspended() -> None:
    young = desired({"schedule": "0 3 * * *"}, created=NOW - timedelta(hours=1))
    assert created(step(young, Observed(now=NOW), SETTINGS, FORMED).actions) == []
    suspended = desired({"schedule": "0 3 * * *", "suspend": True})
    assert created(step(suspended, Observed(now=NOW), SETTINGS, FORMED).actions) == []


def test_retention_deletes_only_what_the_operator_made() -> None:
    cluster = desired({"retention": {"keepLast": 2}})
    backups = (
        record("by-hand", 50, trigger=None),
        record("a", 40),
        record("b", 30, trigger="annotation"),
        record("c", 20),
    )
    result = step(cluster, Observed(now=NOW, backups=backups), SETTINGS, FORMED)
    deleted = [a.name for a in result.actions if isinstance(a, DeleteOperation)]
    assert deleted == ["a"]
    assert [e.reason for e in result.actions if isinstance(e, Event)] == ["BackupDeleted"]


def test_the_status_names_the_last_success_and_a_newer_failure() -> None:
    cluster = desired({})
    backups = (record("old", 30), record("ok", 20), record("bad", 10, ok=False))
    status = backup_status(cluster, Observed(now=NOW, backups=backups), FORMED)
    assert status is not None
    assert status.lastSuccessful is not None and status.lastSuccessful.name == "ok"
    assert status.lastSuccessful.revision == 7
    assert status.lastSuccessfulTime == "2026-12-05T14:00:00Z"
    assert status.lastFailed is not None
    assert (status.lastFailed.name, status.lastFailed.message) == ("bad", "access denied")
    healed = (*backups, record("newer", 5))
    status = backup_status(cluster, Observed(now=NOW, backups=healed), FORMED)
    assert status is not None and status.lastFailed is None
