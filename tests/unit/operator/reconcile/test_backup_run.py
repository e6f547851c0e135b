"""The decisions of a backup run: refusals, the member it streams from, the store, the names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from etcd_operator.api.backup import Compression
from etcd_operator.api.etcdbackup import EtcdBackup, EtcdBackupStatus
from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile import backup_run
from etcd_operator.reconcile.backup_run import Refusal
from etcd_operator.reconcile.observed import EtcdMember, EtcdView

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
STORE = {"bucket": "backups", "endpoint": "http://s3:9000"}


def backup(**spec: Any) -> EtcdBackup:
    return EtcdBackup.model_validate(
        {"metadata": {"name": "b", "namespace": "ns"}, "spec": {"clusterName": "demo", **spec}}
    )


def cluster(**spec: Any) -> EtcdCluster:
    return EtcdCluster.model_validate(
        {"metadata": {"name": "demo", "namespace": "ns"}, "spec": {"version": "3.5.17", **spec}}
    )


def member(name: str, *, leader: bool = False, healthy: bool = True, index: int = 10) -> EtcdMember:
    return EtcdMember(
        id=hash(name) & 0xFFFF,
        name=name,
        client_urls=(f"http://{name}:2379",),
        peer_urls=(f"http://{name}:2380",),
        healthy=healthy,
        leader=leader,
        raft_index=index,
        revision=index,
        version="3.5.17",
    )


def test_a_backup_needs_its_cluster_and_a_store() -> None:
    refused = backup_run.refusal(backup(store=STORE), None)
    assert refused is not None
    assert (refused.phase, refused.reason) == (OperationPhase.REJECTED, "ClusterNotFound")
    assert "EtcdCluster demo does not exist in namespace ns" in refused.message
    no_store = backup_run.refusal(backup(), cluster())
    assert no_store is not None and no_store.reason == "NoStore"
    assert backup_run.refusal(backup(store=STORE), cluster()) is None


def test_the_backups_own_store_wins_over_the_clusters() -> None:
    own = backup_run.store_of(backup(store=STORE), cluster())
    assert own is not None and own.bucket == "backups"


def test_a_follower_streams_the_one_that_applied_most() -> None:
    view = EtcdView(
        1,
        (
            member("a", leader=True, index=30),
            member("b", index=10),
            member("c", index=20),
            member("d", index=99, healthy=False),
        ),
    )
    chosen = backup_run.source_member(view, "demo")
    assert isinstance(chosen, EtcdMember) and chosen.name == "c"


def test_the_leader_streams_when_it_is_the_only_healthy_member() -> None:
    view = EtcdView(1, (member("a", leader=True), member("b", healthy=False)))
    chosen = backup_run.source_member(view, "demo")
    assert isinstance(chosen, EtcdMember) and chosen.name == "a"


@pytest.mark.parametrize(
    ("view", "reason"),
    [
        (None, "NoHealthyMember"),
        (EtcdView(1, (member("a"), member("b"))), "NoQuorum"),
    ],
)
def test_no_member_to_stream_from_fails_the_run(view: EtcdView | None, reason: str) -> None:
    refused = backup_run.source_member(view, "demo")
    assert isinstance(refused, Refusal)
    assert (refused.phase, refused.reason) == (OperationPhase.FAILED, reason)


@pytest.mark.parametrize(
    ("compression", "encrypted", "name"),
    [
        (Compression.ZSTD, False, "b.db.zst"),
        (Compression.GZIP, True, "b.db.gz.enc"),
        (Compression.NONE, False, "b.db"),
    ],
)
def test_object_names_say_what_they_hold(
    compression: Compression, encrypted: bool, name: str
) -> None:
    assert backup_run.object_name("b", compression, encrypted) == name


def test_running_then_ended_records_the_source_and_a_condition() -> None:
    view = EtcdView(0xABC, (member("a", leader=True), member("b", index=42)))
    source = backup_run.source_member(view, "demo")
    assert isinstance(source, EtcdMember)
    store = backup_run.store_of(backup(store=STORE), cluster())
    assert store is not None
    status = backup_run.running(EtcdBackupStatus(), source, store, view, NOW)
    assert (status.phase, status.member, status.revision, status.clusterID) == (
        OperationPhase.RUNNING,
        "b",
        42,
        "abc",
    )
    assert status.startedAt == "2026-12-06T10:00:00Z" and status.conditions == []
    done = backup_run.ended(status, OperationPhase.SUCCEEDED, "BackupSucceeded", "ok", NOW)
    assert [(c.type, c.status, c.reason) for c in done.conditions] == [
        ("Complete", "True", "BackupSucceeded")
    ]
    failed = backup_run.ended(status, OperationPhase.FAILED, "AccessDenied", "no", NOW)
    assert [c.type for c in failed.conditions] == ["Failed"]
