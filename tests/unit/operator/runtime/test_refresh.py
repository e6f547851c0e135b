"""The operator-wide status refresh: rounds over the indexed clusters with a fake refresh, and
a fake clock for the loop (its ``sleep``); no cluster, no real waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from etcd_operator import metrics
from etcd_operator.runtime.refresh import (
    ClusterRef,
    PeriodicRefresh,
    index_entry,
    indexed,
    refresh_all,
    refresh_forever,
)

A, B, C = (ClusterRef("ns", name, f"uid-{name}") for name in ("a", "b", "c"))


def failures() -> float:
    value = metrics.REGISTRY.get_sample_value("etcd_operator_status_refresh_failures_total")
    return 0.0 if value is None else value


class Refreshes:
    """A fake refresh: records each call; raises for the clusters in ``failing``."""

    def __init__(self, failing: Iterable[ClusterRef] = ()) -> None:
        self.failing = set(failing)
        self.calls: list[ClusterRef] = []

    async def __call__(self, ref: ClusterRef) -> None:
        self.calls.append(ref)
        if ref in self.failing:
            raise RuntimeError(f"{ref} refused")


def test_index_entry_and_snapshot() -> None:
    body = {"metadata": {"namespace": "ns", "name": "a", "uid": "uid-a"}}
    assert index_entry(body) == {("ns", "a"): A}
    deleting = {"metadata": {**body["metadata"], "deletionTimestamp": "2025-01-02T03:04:05Z"}}
    assert index_entry(deleting) == {}
    assert index_entry({"metadata": {"name": "a"}}) == {}
    # kopf's index maps each key to a store of values (one per object with that key).
    assert indexed({("ns", "c"): [C], ("ns", "a"): [A, A], ("ns", "b"): [B]}) == [A, B, C]


def test_a_failing_cluster_does_not_stop_the_others() -> None:
    refresh = Refreshes(failing=[B])
    before = failures()

    failed = asyncio.run(refresh_all([A, B, C], refresh))

    assert sorted(refresh.calls) == [A, B, C]
    assert failed == [B]
    assert failures() == before + 1


def test_concurrency_is_bounded() -> None:
    in_flight, most = 0, 0

    async def refresh(ref: ClusterRef) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        for _ in range(3):  # yield to the loop: every other refresh allowed to start, starts
            await asyncio.sleep(0)
        in_flight -= 1

    refs = [ClusterRef("ns", f"c{i}", f"u{i}") for i in range(7)]
    assert asyncio.run(refresh_all(refs, refresh, concurrency=2)) == []
    assert most == 2
    most = 0
    asyncio.run(refresh_all(refs, refresh, concurrency=1))
    assert most == 1


def test_a_hung_refresh_is_abandoned_at_its_deadline() -> None:
    async def refresh(ref: ClusterRef) -> None:
        if ref == B:
            await asyncio.Event().wait()  # never answers

    done: list[ClusterRef] = []

    async def recording(ref: ClusterRef) -> None:
        await refresh(ref)
        done.append(ref)

    failed = asyncio.run(refresh_all([A, B, C], recording, concurrency=1, deadline=0.05))

    assert failed == [B]
    assert done == [A, C]


def test_the_loop_refreshes_the_clusters_listed_each_round_and_survives_errors() -> None:
    refresh = Refreshes(failing=[A])
    rounds: list[list[ClusterRef]] = [[A, B], [], [B, C]]
    listings = iter([*rounds[:1], None, *rounds[1:]])  # None: reading the index fails
    slept: list[float] = []

    def clusters() -> list[ClusterRef]:
        listed = next(listings)
        if listed is None:
            raise RuntimeError("index unreadable")
        return listed

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 4:  # four rounds, then the operator stops
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(refresh_forever(clusters, refresh, 30.0, sleep=sleep))

    assert slept == [30.0] * 5  # the interval before every round
    assert refresh.calls == [A, B, B, C]  # A's failure stopped neither its round nor the loop


def test_periodic_refresh_starts_once_and_stops_when_cancelled() -> None:
    refresh = Refreshes()

    async def scenario() -> tuple[bool, bool, bool]:
        periodic = PeriodicRefresh(refresh, interval=3600.0)
        periodic.start(lambda: [A])
        first = periodic._task
        periodic.start(lambda: [B])  # a second startup keeps the running task
        same = periodic._task is first
        running = periodic.running
        await periodic.stop()
        await periodic.stop()  # idempotent
        return same, running, periodic.running

    assert asyncio.run(scenario()) == (True, True, False)
    assert refresh.calls == []  # stopped within its first interval
