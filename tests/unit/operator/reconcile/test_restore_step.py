"""A cluster created from a backup: the source resolves once (an EtcdBackup that succeeded, or a
location), the pass waits before any member exists until it does, the record in the status
keeps the members' pod template stable, and the restore init container gets references to
Secrets, never their values."""

from __future__ import annotations

from typing import Any

import pytest
from etcd_operator.api.backup import PointInTime
from etcd_operator.api.etcdbackup import EtcdBackup
from etcd_operator.api.v1alpha1 import EtcdCluster, RestoredFrom
from etcd_operator.components.statefulset import statefulset
from etcd_operator.reconcile.backup_records import BackupRecord, backup_record
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided
from etcd_operator.reconcile.restore import (
    RESTORE,
    WAITING_FOR_BACKUP,
    newest_before,
    resolve,
    step,
)

from tests.unit.operator.reconcile.builders import SETTINGS

STORE = {"bucket": "backups", "endpoint": "http://s3:9000", "credentialsSecret": "creds"}


def desired(backup: dict[str, Any], status: dict[str, Any] | None = None) -> EtcdCluster:
    body: dict[str, Any] = {
        "metadata": {"name": "demo", "namespace": "ns", "uid": "uid-1"},
        "spec": {"version": "3.5.17", "bootstrap": {"backup": backup}},
    }
    if status is not None:
        body["status"] = status
    return EtcdCluster.model_validate(body)


def etcd_backup(phase: str, **status: Any) -> EtcdBackup:
    return EtcdBackup.model_validate(
        {
            "metadata": {"name": "b", "namespace": "ns"},
            "spec": {"clusterName": "old"},
            "status": {"phase": phase, **status},
        }
    )


SUCCEEDED = etcd_backup(
    "Succeeded",
    location="s3://backups/ns/old/b.db.zst",
    store=STORE,
    sha256="ab" * 32,
    encrypted=False,
)


@pytest.mark.parametrize(
    ("backup", "words"),
    [
        (None, "does not exist in namespace ns: waiting"),
        (etcd_backup("Running"), "is Running: waiting for it to succeed"),
        (etcd_backup("Failed", message="access denied"), "ended Failed: access denied"),
        (
            etcd_backup("Succeeded", location="s3://backups/k", store=STORE, encrypted=True),
            "is encrypted: set bootstrap.backup.encryptionKeySecret",
        ),
    ],
)
def test_a_named_backup_that_cannot_be_restored_says_why(
    backup: EtcdBackup | None, words: str
) -> None:
    resolved = resolve(desired({"name": "b"}), desired({"name": "b"}).spec.bootstrap.backup, backup)  # type: ignore[union-attr]
    assert isinstance(resolved, str) and words in resolved, resolved


def test_a_succeeded_backup_resolves_to_its_object_and_sha256() -> None:
    cluster = desired({"name": "b"})
    assert cluster.spec.bootstrap is not None
    resolved = resolve(cluster, cluster.spec.bootstrap.backup, SUCCEEDED)
    assert isinstance(resolved, RestoredFrom)
    assert (resolved.backup, resolved.location, resolved.sha256) == (
        "b",
        "s3://backups/ns/old/b.db.zst",
        "ab" * 32,
    )
    assert (resolved.bumpRevision, resolved.markCompacted) == (1_000_000_000, True)


def test_a_location_must_be_in_the_stores_bucket() -> None:
    cluster = desired({"location": "s3://other/k", "store": STORE})
    assert cluster.spec.bootstrap is not None
    resolved = resolve(cluster, cluster.spec.bootstrap.backup, None)
    assert isinstance(resolved, str) and "make them the same" in resolved


def test_the_pass_waits_before_any_member_until_the_backup_resolves() -> None:
    result = step(desired({"name": "b"}), Observed(), SETTINGS, Decided())
    assert result.stop and result.actions == ()
    assert result.decided is not None
    assert [p.reason for p in result.decided.progress] == [WAITING_FOR_BACKUP]


def test_the_recorded_source_wins_over_a_new_lookup() -> None:
    recorded = {
        "location": "s3://backups/first",
        "store": STORE,
        "bumpRevision": 5,
        "markCompacted": False,
    }
    cluster = desired({"name": "b"}, {"restoredFrom": recorded})
    result = step(cluster, Observed(restore_backup=SUCCEEDED), SETTINGS, Decided())
    assert result.decided is not None and not result.stop
    note = result.decided.note(RESTORE)
    assert isinstance(note, RestoredFrom) and note.location == "s3://backups/first"
    assert result.decided.acted == ()  # nothing new to record


def test_the_init_container_gets_secret_references_and_the_members_identity() -> None:
    cluster = desired({"name": "b"})
    assert cluster.spec.bootstrap is not None
    source = resolve(cluster, cluster.spec.bootstrap.backup, SUCCEEDED)
    assert isinstance(source, RestoredFrom)
    pod = statefulset(cluster, SETTINGS, restore=source)["spec"]["template"]["spec"]
    first, init = pod["initContainers"]
    assert first["name"] == "member-init"
    assert init["name"] == "restore" and init["command"] == ["etcd-restore"]
    assert init["image"] == SETTINGS.restore_image
    assert f"--sha256={'ab' * 32}" in init["args"]
    assert "--mark-compacted" in init["args"] and "--bump-revision=1000000000" in init["args"]
    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in init["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secrets["RESTORE_ACCESS_KEY_ID"] == {
        "name": "creds",
        "key": "accessKeyId",
        "optional": False,
    }
    assert all("value" not in e for e in init["env"] if e["name"].startswith("RESTORE_"))
    member = pod["containers"][0]
    assert init["volumeMounts"] == member["volumeMounts"]
    assert [e["name"] for e in member["env"]] == [e["name"] for e in init["env"]][
        : len(member["env"])
    ]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    plain = statefulset(cluster, SETTINGS)["spec"]["template"]["spec"]
    assert [c["name"] for c in plain["initContainers"]] == ["member-init"]


def init_args(cluster: EtcdCluster, backup: EtcdBackup) -> list[str]:
    assert cluster.spec.bootstrap is not None
    source = resolve(cluster, cluster.spec.bootstrap.backup, backup)
    assert isinstance(source, RestoredFrom), source
    pod = statefulset(cluster, SETTINGS, restore=source)["spec"]["template"]["spec"]
    args: list[str] = pod["initContainers"][1]["args"]
    return args


def test_a_point_in_time_reaches_the_init_container_with_the_backups_revision() -> None:
    backup = etcd_backup(
        "Succeeded", location="s3://backups/ns/old/b.db.zst", store=STORE, revision=500
    )
    args = init_args(desired({"name": "b", "pointInTime": {"revision": 650}}), backup)
    assert "--to-revision=650" in args and "--base-revision=500" in args
    when = "2026-12-06T10:00:00.250+01:00"
    args = init_args(desired({"name": "b", "pointInTime": {"time": when}}), backup)
    assert f"--to-time={when}" in args and not any(a.startswith("--to-rev") for a in args)
    plain = init_args(desired({"name": "b"}), backup)
    assert not any(a.startswith(("--to-", "--base-revision")) for a in plain)


def test_a_revision_before_the_named_backup_is_refused_saying_which() -> None:
    backup = etcd_backup(
        "Succeeded", location="s3://backups/ns/old/b.db.zst", store=STORE, revision=500
    )
    cluster = desired({"name": "b", "pointInTime": {"revision": 499}})
    assert cluster.spec.bootstrap is not None
    said = resolve(cluster, cluster.spec.bootstrap.backup, backup)
    assert said == (
        "bootstrap.backup.pointInTime.revision 499 is before EtcdBackup b (revision 500): "
        "name an older backup"
    )


@pytest.mark.parametrize(
    "point",
    [{}, {"revision": 5, "time": "2026-12-06T10:00:00Z"}, {"time": "2026-12-06T10:00:00"},
     {"time": "2026-13-06T10:00:00Z"}, {"revision": 0}],
)  # fmt: skip
def test_a_point_in_time_is_a_revision_or_a_time_with_a_zone(point: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"pointInTime|time|revision"):
        desired({"name": "b", "pointInTime": point})


def record(name: str, revision: int, completed: str, phase: str = "Succeeded") -> BackupRecord:
    return backup_record(
        {
            "metadata": {"name": name, "creationTimestamp": completed},
            "status": {"phase": phase, "revision": revision, "completedAt": completed},
        }
    )


RECORDS = [
    record("demo-0600", 100, "2026-12-06T06:00:04Z"),
    record("demo-1200", 200, "2026-12-06T12:00:04Z"),
    record("demo-1800", 300, "2026-12-06T18:00:04Z"),
    record("demo-1900", 400, "2026-12-06T19:00:04Z", phase="Failed"),
]


@pytest.mark.parametrize(
    ("point", "picked"),
    [
        ({"revision": 99}, None),
        ({"revision": 100}, "demo-0600"),
        ({"revision": 299}, "demo-1200"),
        ({"revision": 10_000}, "demo-1800"),
        ({"time": "2026-12-06T12:00:03Z"}, "demo-0600"),
        ({"time": "2026-12-06T13:00:04+01:00"}, "demo-1200"),
        ({"time": "2026-12-07T00:00:00Z"}, "demo-1800"),
    ],
)
def test_a_point_alone_starts_from_the_newest_succeeded_backup_before_it(
    point: dict[str, Any], picked: str | None
) -> None:
    found = newest_before(RECORDS, PointInTime.model_validate(point))
    assert (found.name if found is not None else None) == picked


def test_a_point_alone_resolves_the_picked_backup_or_says_none_was_taken_before() -> None:
    cluster = desired({"pointInTime": {"revision": 250}})
    assert cluster.spec.bootstrap is not None
    source = cluster.spec.bootstrap.backup
    said = resolve(cluster, source, None)
    assert said == (
        "no Succeeded EtcdBackup of demo in namespace ns was taken before revision 250: name "
        "one with bootstrap.backup.name"
    )
    picked = etcd_backup(
        "Succeeded", location="s3://backups/ns/demo/b.db.zst", store=STORE, revision=200
    )
    resolved = resolve(cluster, source, picked)
    assert isinstance(resolved, RestoredFrom)
    assert (resolved.backup, resolved.toRevision, resolved.baseRevision) == ("b", 250, 200)
