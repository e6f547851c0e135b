"""The write-sample runner over an in-memory Kubernetes and etcd: which member it watches, what
it records in status.keyspace.writes and the write-rate gauges, nothing when no window is due or
sampling was turned off meanwhile, and a failed window tried again a minute later at the
earliest. The real watch against etcd and pyetcd: tests/integration/test_client.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import rfc3339
from etcd_operator.reconcile.actions import SampleWrites
from etcd_operator.runtime.write_samples import RETRY_SECONDS, WriteSamples

from tests.unit.operator.runtime.fake_etcd import FakeEtcd
from tests.unit.operator.runtime.fake_kube import FakeKube
from tests.unit.operator.runtime.test_analyses import cluster_body
from tests.unit.operator.runtime.test_backups import NOW
from tests.unit.operator.runtime.test_reconciler import sample

SETTINGS = OperatorSettings()
REQUEST = SampleWrites("ns", "demo", "uid-1")
KEYS = [b"/registry/leases/n%d" % (i % 3) for i in range(60)] + [b"/registry/pods/a/p"] * 6


class World:
    def __init__(self, *, writes: dict[str, Any] | None = None, keyspace: Any = None) -> None:
        self.kube = FakeKube()
        analysis = {"writes": writes if writes is not None else {"windowSeconds": 10}}
        self.kube.put(cluster_body(analysis=analysis, annotation=None, keyspace=keyspace))
        self.kube.put({"kind": "StatefulSet", "metadata": {"name": "demo", "namespace": "ns"}})
        self.etcd = FakeEtcd()
        self.etcd.window = (500, list(KEYS))
        self.connected: list[Sequence[str]] = []
        self.clock = 1000.0

        def connect(endpoints: Sequence[str], *_: Any) -> FakeEtcd:
            self.connected.append(tuple(endpoints))
            return self.etcd

        self.runner = WriteSamples(
            SETTINGS,
            lambda: self.kube,
            clock=lambda: NOW,
            connect=connect,
            monotonic=lambda: self.clock,
        )

    def run(self) -> asyncio.Task[None] | None:
        async def scenario() -> asyncio.Task[None] | None:
            task = self.runner.start(REQUEST)
            await self.runner.wait()
            return task

        return asyncio.run(scenario())

    def keyspace(self) -> dict[str, Any]:
        found: dict[str, Any] = self.kube.objects[("EtcdCluster", "ns", "demo")]["status"].get(
            "keyspace", {}
        )
        return found


def test_a_window_is_watched_on_a_follower_and_recorded() -> None:
    world = World()
    assert world.run() is not None
    # demo-0 leads: the watch runs on a follower, for the window the spec asks.
    watch_connections = [c for c in world.connected if len(c) == 1]
    assert watch_connections and watch_connections[-1][0] in ("http://c1:2379", "http://c2:2379")
    assert [seconds for _, seconds in world.etcd.watched] == [10.0]
    assert world.etcd.closed
    writes = world.keyspace()["writes"]
    assert writes["sampledAt"] == rfc3339(NOW)
    assert (writes["fromRevision"], writes["toRevision"], writes["writes"]) == (500, 566, 66)
    assert writes["prefixes"] == [
        {"prefix": "/registry/leases/", "writes": 60},
        {"prefix": "/registry/pods/", "writes": 6},
    ]
    assert writes["hottestKey"] == {"key": "/registry/leases/n0", "writes": 20}
    window = writes["windowSeconds"]
    rate = sample(
        "etcd_operator_keyspace_write_rate",
        namespace="ns",
        cluster="demo",
        prefix="/registry/leases/",
    )
    assert rate == pytest.approx(60 / window)


def test_no_window_is_taken_before_the_interval_is_over() -> None:
    recent = {
        "sampledAt": rfc3339(NOW),
        "windowSeconds": 10,
        "fromRevision": 1,
        "toRevision": 1,
        "writes": 0,
    }
    world = World(keyspace={"writes": recent})
    world.run()
    assert world.etcd.watched == []
    assert world.keyspace()["writes"] == recent


def test_a_refused_watch_records_nothing_and_waits_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    world.etcd.watch_refused = "etcdserver: no leader"
    with caplog.at_level(logging.WARNING):
        assert world.run() is not None
    assert "writes" not in world.keyspace()
    assert "no leader" in caplog.text and "write sample of ns/demo not taken" in caplog.text
    world.clock += RETRY_SECONDS - 1
    assert world.run() is None
    world.etcd.watch_refused = None
    world.clock += 1
    assert world.run() is not None
    assert world.keyspace()["writes"]["writes"] == len(KEYS)


def test_sampling_turned_off_during_the_window_records_nothing() -> None:
    world = World()
    original = world.etcd.watch_writes

    async def then_turned_off(seconds: float, on_write: Any) -> Any:
        body = world.kube.objects[("EtcdCluster", "ns", "demo")]
        body["spec"]["analysis"] = {}
        return await original(seconds, on_write)

    world.etcd.watch_writes = then_turned_off  # type: ignore[method-assign]
    world.run()
    assert world.etcd.watched and "writes" not in world.keyspace()
