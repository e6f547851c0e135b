"""EtcdDefrag requests outside their cluster's pass (``runtime.defrags``): a request naming no
cluster is Rejected, a new request asks its cluster for a pass at once, an ended request is
deleted after its time to live and not before."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from etcd_operator.runtime.defrags import DefragRequests

from tests.unit.operator.runtime.fake_kube import FakeKube

NOW = datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)


def defrag(name: str = "now", status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdDefrag",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"clusterName": "demo", **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def cluster() -> dict[str, Any]:
    return {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "uid-demo"},
        "spec": {"replicas": 3, "version": "3.5.17"},
    }


def requests_on(kube: FakeKube, passes: list[Mapping[str, Any]]) -> DefragRequests:
    async def reconcile(body: Mapping[str, Any]) -> None:
        passes.append(body)

    return DefragRequests(lambda: kube, reconcile, clock=lambda: NOW)


def test_a_request_for_a_missing_cluster_is_rejected() -> None:
    kube, passes = FakeKube(), list[Mapping[str, Any]]()
    body = defrag()
    kube.put(body)
    asyncio.run(requests_on(kube, passes).seen("ADDED", body))
    status = kube.objects[("EtcdDefrag", "ns", "now")]["status"]
    assert (status["phase"], status["reason"]) == ("Rejected", "ClusterNotFound")
    assert "demo" in status["message"] and status["conditions"][0]["type"] == "Failed"
    assert [e[:2] for e in kube.events()] == [("Warning", "DefragRejected")]
    assert passes == []


def test_a_new_request_runs_its_cluster_s_pass_at_once_and_only_when_new() -> None:
    kube, passes = FakeKube(), list[Mapping[str, Any]]()
    kube.put(cluster())
    body = defrag()
    kube.put(body)
    requests = requests_on(kube, passes)
    asyncio.run(requests.seen(None, body))  # listed when the operator started
    asyncio.run(requests.seen("MODIFIED", body))  # its own status patches: no new pass
    assert [p["metadata"]["name"] for p in passes] == ["demo"]
    assert kube.status_patches == []


def test_an_ended_request_is_deleted_after_its_ttl_and_not_before() -> None:
    ended_at = (NOW - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = {"phase": "Succeeded", "completedAt": ended_at}

    async def scenario() -> FakeKube:
        kube = FakeKube()
        requests = requests_on(kube, [])
        for body in (
            defrag("expired", done, ttlSecondsAfterFinished=10),
            defrag("kept", done),
            defrag("later", done, ttlSecondsAfterFinished=3600),
        ):
            kube.put(body)
            await requests.seen("MODIFIED", body)

        # The expired one goes at once; the hour-long one waits (cancelled on stop).
        async def deleted() -> None:
            while not kube.deleted:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(deleted(), timeout=5)
        await requests.stop()
        return kube

    kube = asyncio.run(scenario())
    assert kube.deleted == [("EtcdDefrag", "ns", "expired")]
