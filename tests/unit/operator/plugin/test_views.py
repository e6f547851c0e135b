"""Objects into views: what `kubectl etcd status` and `backups` read off the operator's objects,
and that they show what they can of objects the operator has not finished writing."""

from __future__ import annotations

from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.v1alpha1 import RestoredFrom
from etcd_operator.plugin.views import TRIGGER_USER, backups_of, cluster_view

from tests.unit.operator.plugin.objects import (
    LAST_FAILURE,
    LAST_SUCCESS,
    MiB,
    cluster,
    etcd_backup,
    running_status,
    store,
)


def test_a_running_cluster_shows_its_members_roles_and_backups() -> None:
    view = cluster_view(cluster(status=running_status()))
    assert (view.name, view.namespace, view.phase) == ("main", "prod", "Running")
    assert (view.spec_version, view.version, view.cluster_version) == ("3.5.17", "3.5.17", "3.5.0")
    assert (view.replicas, view.observed_replicas, view.ready_replicas) == (3, 3, 2)
    assert (view.leader, view.cluster_id) == ("main-1", "cdf818194e3a8c32")
    assert [(m.name, m.role, m.healthy, m.db_size) for m in view.members] == [
        ("main-0", "follower", True, 2 * MiB),
        ("main-1", "leader", True, 3 * MiB),
        ("main-2", "learner", False, None),
    ]
    assert [c.type for c in view.conditions] == [
        "Available",
        "Progressing",
        "Degraded",
        "BackupReady",
    ]
    available = view.condition("Available")
    assert available is not None and available.reason == "QuorumHealthy"
    backup = view.backup
    assert backup is not None
    assert backup.schedule == "0 */6 * * *"
    assert backup.last_success is not None and backup.last_success.name == LAST_SUCCESS
    assert backup.last_success.revision == 48000
    assert backup.last_failure is not None and backup.last_failure.name == LAST_FAILURE
    assert backup.last_failure.message == "AccessDenied: the store refused the upload"
    assert backup.ready is not None and backup.ready.status == "True"
    assert backup.last_request == "ticket-42"


def test_a_cluster_the_operator_has_not_seen_yet_shows_unknowns() -> None:
    view = cluster_view(cluster(backup=False))
    assert view.phase is None and view.leader is None and view.version is None
    assert view.members == () and view.conditions == ()
    assert view.backup is None  # no spec.backup, no status.backup: nothing to say
    assert view.replicas == 3  # the spec's default, as the API server fills it in


def test_odd_values_are_shown_as_unknown_rather_than_failing() -> None:
    obj = cluster()
    obj["status"] = {
        "members": "not a list",
        "conditions": [{"type": "Available"}, "junk"],
        "replicas": True,  # a bool is not a count
        "leader": "",
    }
    view = cluster_view(obj)
    assert view.members == ()
    assert [(c.type, c.status, c.reason) for c in view.conditions] == [
        ("Available", "Unknown", None)
    ]
    assert view.observed_replicas is None and view.leader is None


def test_a_restored_cluster_names_its_backup_and_where_it_was() -> None:
    obj = cluster(backup=False)
    restored = RestoredFrom(
        backup="old-backup",
        location="s3://etcd-backups/prod/old/old-backup.db.zst",
        store=store(),
        bumpRevision=1_000_000_000,
        markCompacted=True,
    )
    obj["status"] = {"restoredFrom": restored.model_dump(mode="json", exclude_none=True)}
    assert cluster_view(obj).restored_from == (
        "old-backup (s3://etcd-backups/prod/old/old-backup.db.zst)"
    )


def test_backups_of_a_cluster_newest_first_with_user_backups_and_pending_ones() -> None:
    items = [
        etcd_backup("main-20261206-0600", created="2026-12-06T06:00:00Z"),
        etcd_backup("other-20261206-1200", cluster="other", created="2026-12-06T12:00:00Z"),
        etcd_backup("by-hand", created="2026-12-06T09:00:00Z", trigger=None),
        etcd_backup("main-20261206-1200", created="2026-12-06T12:00:00Z"),
        etcd_backup("main-ondemand-a", created="2026-12-06T12:00:00Z", phase=None),
        etcd_backup(
            "main-ondemand-b",
            created="2026-12-06T11:00:00Z",
            trigger="annotation",
            phase=OperationPhase.FAILED,
            reason="AccessDenied",
            message="the store refused",
        ),
    ]
    views = backups_of(items, "main")
    assert [v.name for v in views] == [
        "main-ondemand-a",  # same second as main-20261206-1200: the name decides
        "main-20261206-1200",
        "main-ondemand-b",
        "by-hand",
        "main-20261206-0600",
    ]
    by_name = {v.name: v for v in views}
    assert by_name["by-hand"].trigger == TRIGGER_USER
    assert by_name["main-ondemand-b"].trigger == "annotation"
    pending = by_name["main-ondemand-a"]
    assert pending.phase == "Pending" and not pending.ended and not pending.succeeded
    failed = by_name["main-ondemand-b"]
    assert failed.ended and not failed.succeeded and failed.reason == "AccessDenied"
    done = by_name["main-20261206-1200"]
    assert done.succeeded and done.revision == 48213 and done.size_bytes == 913408
    assert done.location == "s3://etcd-backups/prod/main/main-20261206-1200.db.zst"
    assert done.started == "2026-12-06T12:00:00Z" and done.completed == "2026-12-06T12:00:04Z"
