"""``spec.analysis`` and ``status.keyspace``: the models and the CRD refuse the same specs with the
same words, default the same way, and admit the status the operator writes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from etcd_operator.api.analysis import (
    AnalysisTrigger,
    KeyspaceAnalysisPhase,
    KeyspaceAnalysisRun,
    KeyspacePrefix,
    KeyspaceStatus,
)
from etcd_operator.api.v1alpha1 import EtcdCluster, EtcdClusterStatus
from pydantic import ValidationError

from tests.unit.operator.api import examples
from tests.unit.operator.api.kube_schema import admit, apply_defaults

SCHEMA = examples.openapi_schema()
STORE = {"bucket": "etcd-backups"}


def cluster(analysis: Any, *, backup: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"version": "3.5.17", "analysis": analysis}
    if backup:
        spec["backup"] = {"store": STORE}
    return {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": "a"},
        "spec": spec,
    }


def test_defaults_are_the_same_on_both_sides() -> None:
    body = cluster({})
    model = EtcdCluster.model_validate(body).spec.analysis
    assert model is not None
    assert (model.separator, model.depth, model.top, model.schedule) == ("/", 2, 10, None)
    server = apply_defaults(SCHEMA, copy.deepcopy(body))["spec"]["analysis"]
    assert server == {"separator": "/", "depth": 2, "top": 10}
    assert admit(SCHEMA, body) == []


def test_analysis_without_backup_is_refused_alike() -> None:
    body = cluster({"schedule": "@daily"}, backup=False)
    (error,) = admit(SCHEMA, body)
    assert "analysis needs backup" in error and "set spec.backup" in error
    with pytest.raises(ValidationError, match=r"analysis needs backup: .* set spec.backup"):
        EtcdCluster.model_validate(body)
    # Removing the backup of a cluster that analyses is refused too, not only creating one.
    assert admit(SCHEMA, body, old=cluster({"schedule": "@daily"})) == [error]


@pytest.mark.parametrize(
    ("analysis", "server", "model"),
    [
        ({"top": 0}, "top in body should be greater than or equal to 1", "greater than or equal"),
        ({"top": 51}, "top in body should be less than or equal to 50", "less than or equal"),
        ({"depth": 0}, "depth in body should be greater than or equal to 1", "greater than"),
        ({"separator": ""}, "separator in body '' should be non-empty", "at least 1"),
        ({"schedule": "daily"}, "schedule in body should match", "should match pattern"),
    ],
)
def test_bounds_are_refused_alike(analysis: dict[str, Any], server: str, model: str) -> None:
    body = cluster(analysis)
    (error,) = admit(SCHEMA, body)
    assert server in error
    with pytest.raises(ValidationError, match=model):
        EtcdCluster.model_validate(body)


def test_a_schedule_is_checked_as_the_backup_schedule_is() -> None:
    # The shape passes the API server; the fields are cron's to judge, with cron's message.
    body = cluster({"schedule": "61 * * * *"})
    assert admit(SCHEMA, body) == []
    with pytest.raises(ValidationError, match=r"invalid schedule '61 \* \* \* \*': bad minute"):
        EtcdCluster.model_validate(body)
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        EtcdCluster.model_validate(cluster({"schedule": "@daily", "timeZone": "Mars/Olympus"}))
    parsed = EtcdCluster.model_validate(cluster({"schedule": "30 2 * * *", "timeZone": "UTC"}))
    assert parsed.spec.analysis is not None and parsed.spec.analysis.schedule == "30 2 * * *"


def test_the_status_the_operator_writes_is_admitted() -> None:
    keyspace = KeyspaceStatus(
        backup="a-20261206-1200",
        revision=42,
        analyzedAt="2026-12-06T12:01:00Z",
        liveKeys=3,
        liveBytes=300,
        dbSize=20480,
        dbSizeInUse=16384,
        prefixes=[KeyspacePrefix(prefix="/a/", liveKeys=3, liveBytes=300, storedBytes=900)],
        leasesWithoutKeys=1,
        report="s3://etcd-backups/ns/a/a-20261206-1200.db.zst.keyspace.json",
        lastRun=KeyspaceAnalysisRun(
            phase=KeyspaceAnalysisPhase.SUCCEEDED,
            trigger=AnalysisTrigger.SCHEDULE,
            backup="a-20261206-1200",
            startedAt="2026-12-06T12:00:30Z",
            completedAt="2026-12-06T12:01:00Z",
        ),
    )
    body = cluster({})
    body["status"] = EtcdClusterStatus(keyspace=keyspace).model_dump(mode="json")
    assert admit(SCHEMA, body) == []


def test_status_lists_at_most_five_prefixes() -> None:
    prefix = KeyspacePrefix(prefix="/a/", liveKeys=1, liveBytes=1, storedBytes=1)
    with pytest.raises(ValidationError, match="at most 5 items"):
        KeyspaceStatus(prefixes=[prefix] * 6)
