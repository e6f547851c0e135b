"""Printing: kubectl-style tables, sizes and ages, the status page, JSON and YAML."""

from __future__ import annotations

import json

import pytest
import yaml
from etcd_operator.api.operation import OperationPhase
from etcd_operator.plugin import render
from etcd_operator.plugin.views import backups_of, cluster_view

from tests.unit.operator.plugin.fake import NOW
from tests.unit.operator.plugin.objects import cluster, etcd_backup, running_status


def test_tables_pad_each_column_to_its_widest_cell_three_spaces_apart() -> None:
    got = render.table(["NAME", "PHASE"], [["a-long-name", "Running"], ["b", "-"]])
    assert got == "NAME          PHASE\na-long-name   Running\nb             -\n"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        (0, "0B"),
        (1023, "1023B"),
        (1024, "1.0KiB"),
        (913408, "892.0KiB"),
        (3 * 1024 * 1024, "3.0MiB"),
        (5 * 1024**3, "5.0GiB"),
        (2048 * 1024**4, "2048.0TiB"),
    ],
)
def test_sizes_in_the_binary_unit_that_fits(value: int | None, shown: str) -> None:
    assert render.size(value) == shown


@pytest.mark.parametrize(
    ("timestamp", "shown"),
    [
        ("2026-12-06T12:04:45Z", "45s"),
        ("2026-12-06T12:00:30Z", "5m"),
        ("2026-12-06T09:05:30Z", "3h"),
        ("2026-12-04T12:05:30Z", "2d"),
        ("2026-12-06T12:06:00Z", "0s"),  # a clock ahead of ours
        (None, "-"),
        ("yesterday", "-"),
    ],
)
def test_ages_in_kubectls_short_form(timestamp: str | None, shown: str) -> None:
    assert render.age(timestamp, NOW) == shown


def test_the_status_page_of_a_running_cluster() -> None:
    page = render.cluster_text(cluster_view(cluster(status=running_status())), NOW)
    lines = page.splitlines()
    assert lines[:6] == [
        "Cluster:    prod/main",
        "Phase:      Running",
        "Version:    3.5.17 (cluster version 3.5.0)",
        "Replicas:   3 desired, 3 observed, 2 ready",
        "Leader:     main-1",
        "Cluster ID: cdf818194e3a8c32",
    ]
    conditions = lines.index("Conditions:")
    assert lines[conditions + 1].split() == ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
    assert lines[conditions + 2].split()[:4] == ["Available", "True", "QuorumHealthy", "2h"]
    members = lines.index("Members:")
    assert lines[members + 1].split() == [
        "NAME", "ID", "ROLE", "HEALTHY", "VERSION", "DB", "SIZE", "REVISION",
    ]  # fmt: skip
    assert lines[members + 2].split() == [
        "main-0", "8211f1d0f64f3269", "follower", "true", "3.5.17", "2.0MiB", "48213",
    ]  # fmt: skip
    assert lines[members + 3].split()[2] == "leader"
    assert lines[members + 4].split() == [
        "main-2", "fd422379fda50e48", "learner", "false", "-", "-", "-",
    ]  # fmt: skip
    backups = lines[lines.index("Backups:") + 1 :]
    assert backups == [
        "  Last success:   main-20261206-1200, at 2026-12-06T12:00:30Z (5m ago), revision 48000",
        "  Last failure:   main-ondemand-3f1c2a9b0d, at 2026-12-06T12:03:00Z (2m ago): "
        "AccessDenied: the store refused the upload",
        "  BackupReady:    True (BackupSucceeded): main-20261206-1200 succeeded",
        "  Schedule:       0 */6 * * *",
        "  Next scheduled: 2026-12-06T18:00:00Z",
    ]


def test_the_status_page_says_what_is_not_known_yet_and_a_stale_status() -> None:
    obj = cluster(backup=False)
    obj["metadata"]["generation"] = 3
    obj["status"] = {"observedGeneration": 2, "currentVersion": "3.5.16"}
    page = render.cluster_text(cluster_view(obj), NOW)
    assert "Phase:      - (the status describes generation 2; the spec is at 3)" in page
    assert "Version:    3.5.16 (spec 3.5.17)" in page
    assert page.count("  none reported yet") == 2  # conditions, members
    assert "  not configured (spec.backup)" in page


def test_one_line_per_cluster_with_the_namespace_for_every_namespace() -> None:
    views = [
        cluster_view(cluster(status=running_status())),
        cluster_view(cluster("fresh", "dev", backup=False, created="2026-12-06T12:05:00Z")),
    ]
    lines = render.clusters_table(views, NOW, all_namespaces=True).splitlines()
    assert lines[0].split() == [
        "NAMESPACE", "NAME", "PHASE", "VERSION", "READY", "LEADER", "AVAILABLE", "LAST",
        "BACKUP", "AGE",
    ]  # fmt: skip
    assert lines[1].split() == [
        "prod", "main", "Running", "3.5.17", "2/3", "main-1", "True", "5m", "2h",
    ]  # fmt: skip
    assert lines[2].split() == ["dev", "fresh", "-", "-", "-/3", "-", "-", "-", "30s"]
    here = render.clusters_table(views[:1], NOW, all_namespaces=False).splitlines()
    assert here[0].split()[0] == "NAME" and here[1].split()[0] == "main"


def test_the_backups_table_says_why_a_backup_failed() -> None:
    views = backups_of(
        [
            etcd_backup("main-20261206-1200"),
            etcd_backup(
                "main-ondemand-b",
                created="2026-12-06T11:00:00Z",
                phase=OperationPhase.FAILED,
                reason="NoSuchBucket",
            ),
        ],
        "main",
    )
    lines = render.backups_table(views).splitlines()
    assert lines[0].split() == [
        "NAME", "PHASE", "REVISION", "SIZE", "STARTED", "COMPLETED", "LOCATION",
    ]  # fmt: skip
    assert lines[1].split() == [
        "main-20261206-1200", "Succeeded", "48213", "892.0KiB", "2026-12-06T12:00:00Z",
        "2026-12-06T12:00:04Z", "s3://etcd-backups/prod/main/main-20261206-1200.db.zst",
    ]  # fmt: skip
    assert lines[2].split() == ["main-ondemand-b", "Failed", "(NoSuchBucket)", *["-"] * 5]


def test_a_backups_outcome_shows_name_revision_size_and_location() -> None:
    view = backups_of([etcd_backup("main-ondemand-c")], "main")[0]
    assert render.backup_text(view).splitlines() == [
        "EtcdBackup: main-ondemand-c",
        "Phase:      Succeeded",
        "Revision:   48213",
        "Size:       892.0KiB (snapshot 2.0MiB)",
        "Location:   s3://etcd-backups/prod/main/main-ondemand-c.db.zst",
        "Started:    2026-12-06T12:00:00Z",
        "Completed:  2026-12-06T12:00:04Z",
    ]


def test_json_and_yaml_carry_the_views_in_camel_case() -> None:
    view = cluster_view(cluster(status=running_status()))
    as_json = json.loads(render.dump(view, "json"))
    assert as_json == yaml.safe_load(render.dump(view, "yaml"))
    assert as_json["readyReplicas"] == 2 and as_json["clusterId"] == "cdf818194e3a8c32"
    assert as_json["members"][0] == {
        "name": "main-0",
        "id": "8211f1d0f64f3269",
        "role": "follower",
        "healthy": True,
        "version": "3.5.17",
        "dbSize": 2 * 1024 * 1024,
        "revision": 48213,
    }
    assert as_json["backup"]["lastSuccess"]["name"] == "main-20261206-1200"
    listed = json.loads(render.dump([view, view], "json"))
    assert [item["name"] for item in listed] == ["main", "main"]
    with pytest.raises(ValueError, match="unknown output format"):
        render.dump(view, "wide")
