"""The continuous backup runner over an in-memory Kubernetes, etcd and S3: the chain it extends
(the newest successful backup's), the member it watches, the segments it stores and the
``status.backup.continuous`` it writes; no full backup yet, a compacted chain, and continuous
backup turned off; and the backup a point-in-time restore alone starts from. The recorder
against real servers: tests/integration/test_continuous.py."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
from etcd_operator.backup.eventlog import EventLog
from etcd_operator.backup.segments import Segment, list_chain, upload_segment
from etcd_operator.backup.store import S3Client, StoreSettings
from etcd_operator.reconcile.actions import RecordContinuously
from etcd_operator.runtime import continuous as runner_module
from etcd_operator.runtime.continuous import ContinuousBackups
from etcd_operator.runtime.failures import parse_cluster
from etcd_operator.runtime.observe import _restore_backup
from pyetcd.client import WatchBatch
from pyetcd.proto.mvccpb import kv_pb2

from tests.unit.operator.backup.fake_s3 import FakeS3
from tests.unit.operator.runtime.fake_etcd import FakeEtcd
from tests.unit.operator.runtime.fake_kube import FakeKube
from tests.unit.operator.runtime.test_analyses import backup_body, cluster_body
from tests.unit.operator.runtime.test_backups import ACCESS, NOW, SECRET, SETTINGS, secret

REQUEST = RecordContinuously("ns", "demo", "uid-1")
CHAIN_KEY = "ns/demo/demo-20261206-0900.db.zst"


def put(revision: int) -> kv_pb2.Event:
    kv = kv_pb2.KeyValue(
        key=b"/k/%d" % revision, value=b"v", create_revision=revision, mod_revision=revision,
        version=1,
    )  # fmt: skip
    return kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv)


class World:
    def __init__(self, *, backups: bool = True) -> None:
        self.kube = FakeKube()
        body = cluster_body(annotation=None)
        body["spec"]["backup"]["continuous"] = {"segmentInterval": "1s"}
        self.kube.put(body)
        self.kube.put({"kind": "StatefulSet", "metadata": {"name": "demo", "namespace": "ns"}})
        self.kube.put(secret("creds", accessKeyId=ACCESS, secretAccessKey=SECRET))
        if backups:
            self.kube.put(backup_body("demo-20261206-0600", "2026-12-06T06:00:30Z"))
            self.kube.put(backup_body("demo-20261206-0900", "2026-12-06T09:00:30Z"))
            self.kube.put(backup_body("demo-20261206-0930", "2026-12-06T09:30:30Z", phase="Failed"))
        self.etcd = FakeEtcd()
        # The backups were taken at revision 32; revisions 33..40 follow, then a progress report.
        self.etcd.history = [WatchBatch((put(r),), r) for r in range(33, 41)]
        self.etcd.history.append(WatchBatch((), 40))
        self.s3 = FakeS3()
        self.stores: list[StoreSettings] = []
        self.connected: list[tuple[str, ...]] = []

        def connect(endpoints: Any, *_: Any) -> FakeEtcd:
            self.connected.append(tuple(endpoints))
            return self.etcd

        async def s3_client(store: StoreSettings) -> S3Client:
            self.stores.append(store)
            return self.s3

        self.runner = ContinuousBackups(
            SETTINGS,
            lambda: self.kube,
            clock=lambda: NOW,
            connect=connect,
            s3_client=s3_client,
        )

    def cluster(self) -> dict[str, Any]:
        found: dict[str, Any] = self.kube.objects[("EtcdCluster", "ns", "demo")]
        return found

    def continuous(self) -> dict[str, Any]:
        found: dict[str, Any] = (
            (self.cluster().get("status") or {}).get("backup", {}).get("continuous", {})
        )
        return found

    def run_until(self, done: Callable[[], bool], what: str, within: float = 20.0) -> None:
        """Start the recorder and wait for ``done()``; then turn continuous backup off and wait
        for the runner to notice and end."""

        async def scenario() -> None:
            self.runner.start(REQUEST)
            deadline = time.monotonic() + within
            while not done():
                if time.monotonic() > deadline:
                    pytest.fail(f"timed out waiting for {what}: {self.continuous()}")
                await asyncio.sleep(0.05)
            del self.cluster()["spec"]["backup"]["continuous"]
            await asyncio.wait_for(self.runner.wait(), within)

        asyncio.run(scenario())


@pytest.fixture(autouse=True)
def quick_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "STATUS_SECONDS", 0.2)


def test_the_newest_backup_is_extended_from_a_follower_and_the_status_follows() -> None:
    world = World()
    world.run_until(lambda: world.continuous().get("revision") == 40, "revision 40 recorded")
    # demo-0 leads: the watch runs on a follower, from the revision after the backup's.
    assert world.etcd.watched and world.etcd.watched[0][1] == 33.0
    watch_connections = [c for c in world.connected if len(c) == 1]
    assert watch_connections[-1][0] in ("http://c1:2379", "http://c2:2379")
    assert world.etcd.closed
    status = world.continuous()
    assert status["backup"] == "demo-20261206-0900"
    assert (status["baseRevision"], status["revision"]) == (32, 40)
    assert status["segments"] >= 1 and status["time"]
    assert not status.get("broken") and not status.get("message")
    # The segments sit beside the backup they extend, in the cluster's store.
    assert world.stores[0].bucket == "backups"
    chain = asyncio.run(list_chain(world.s3, world.stores[0], CHAIN_KEY))
    assert chain[0].after == 32 and chain[-1].upto == 40
    assert all(a.upto == b.after for a, b in itertools.pairwise(chain))
    # The credentials never reach the status.
    assert SECRET not in str(world.cluster())


def test_without_a_successful_backup_it_says_what_it_waits_for() -> None:
    world = World(backups=False)
    asyncio.run(_start_and_wait(world.runner))
    assert "waiting for a successful full backup" in world.continuous()["message"]
    assert not world.etcd.watched
    # A failed run is not started again at once.
    assert world.runner.start(REQUEST) is None


def test_a_compacted_chain_is_written_as_broken() -> None:
    world = World()
    # The chain reached 35 before its recorder stopped; etcd compacted up to 40 since.
    recorded = EventLog()
    for rev in range(33, 36):
        recorded.add_event(put(rev))
    store = StoreSettings(bucket="backups")
    asyncio.run(
        upload_segment(
            world.s3, store, CHAIN_KEY, Segment(32, 35, 1_000, 2_000), recorded.to_bytes(),
            events=3, base=32, compression="zstd", encryption_key=None,
        )
    )  # fmt: skip
    world.etcd.compacted_below = 40
    asyncio.run(_start_and_wait(world.runner))
    status = world.continuous()
    assert "compacted revision 36" in status["broken"], status
    # It names the chain and how far it reaches even with no status of it kept (turned off and
    # on): the rechain step needs the name, the recoverable window the reach.
    assert (status["backup"], status["baseRevision"], status["revision"]) == (
        "demo-20261206-0900", 32, 35,
    )  # fmt: skip
    assert len(world.s3.objects) == 1


async def _start_and_wait(runner: ContinuousBackups) -> None:
    assert runner.start(REQUEST) is not None
    await asyncio.wait_for(runner.wait(), 20)


def test_turned_off_the_recorder_stops_at_once_and_writes_no_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its own look at the spec comes only after a minute: the cancel is what stops it.
    monkeypatch.setattr(runner_module, "STATUS_SECONDS", 60.0)
    world = World()

    async def scenario() -> None:
        task = world.runner.start(REQUEST)
        assert task is not None
        deadline = time.monotonic() + 20
        while not world.s3.objects:
            assert time.monotonic() < deadline, "no segment uploaded"
            await asyncio.sleep(0.05)
        world.cluster()["status"] = {"backup": {"continuous": {"backup": "x"}}}
        # The pass that sees continuous backup turned off clears the status and cancels.
        del world.cluster()["spec"]["backup"]["continuous"]
        del world.cluster()["status"]["backup"]["continuous"]
        world.runner.cancel(REQUEST.uid)
        await asyncio.wait_for(world.runner.wait(), 5)
        assert task.cancelled()

    asyncio.run(scenario())
    assert world.continuous() == {}


def test_a_point_alone_fetches_the_newest_backup_of_the_clusters_name_before_it() -> None:
    kube = FakeKube()
    kube.put(backup_body("demo-20261206-0600", "2026-12-06T06:00:30Z"))
    kube.put(backup_body("demo-20261206-0900", "2026-12-06T09:00:30Z"))
    body = cluster_body(annotation=None)
    body["spec"]["bootstrap"] = {"backup": {"pointInTime": {"time": "2026-12-06T08:00:00Z"}}}
    found = asyncio.run(_restore_backup(parse_cluster(body), kube))
    assert found is not None and found.metadata["name"] == "demo-20261206-0600"
    body["spec"]["bootstrap"] = {"backup": {"pointInTime": {"time": "2026-12-06T05:00:00Z"}}}
    assert asyncio.run(_restore_backup(parse_cluster(body), kube)) is None
