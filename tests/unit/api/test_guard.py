"""The leader monitor: which streams it tracks, and when it ends them (etcd's monitorLeader)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pyetcd.api.guard import MAX_NO_LEADER, LeaderMonitor, requires_leader
from pyetcd.api.rpc import run_until
from pyetcd.server import errors


class Context:
    def __init__(self, *metadata: tuple[str, str]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


def ctx(*metadata: tuple[str, str]) -> Any:
    return Context(*metadata)


class Leader:
    def __init__(self) -> None:
        self.present = True

    def __call__(self) -> bool:
        return self.present


def test_only_streams_with_hasleader_true_are_tracked() -> None:
    monitor = LeaderMonitor(Leader(), 1.0)
    assert monitor.track(ctx()) is None
    assert monitor.track(ctx(("hasleader", "false"))) is None
    assert monitor.track(ctx(("hasleader", "true"))) is not None
    assert requires_leader(ctx(("other", "x"), ("hasleader", "true")))


def test_streams_end_after_three_election_timeouts_in_a_row_without_a_leader() -> None:
    leader = Leader()
    monitor = LeaderMonitor(leader, 1.0)
    lost = monitor.track(ctx(("hasleader", "true")))
    assert lost is not None
    leader.present = False
    for _ in range(MAX_NO_LEADER - 1):
        assert monitor.tick() == 0
    assert not lost.is_set()
    assert monitor.tick() == 1
    assert lost.is_set()
    # Ended streams are forgotten; a new stream starts with the count where it is.
    assert monitor.tick() == 0


def test_a_leader_seen_in_between_resets_the_count() -> None:
    leader = Leader()
    monitor = LeaderMonitor(leader, 1.0)
    lost = monitor.track(ctx(("hasleader", "true")))
    assert lost is not None
    for present in (False, False, True, False, False):
        leader.present = present
        assert monitor.tick() == 0
    assert not lost.is_set()


def test_a_released_stream_is_not_ended() -> None:
    leader = Leader()
    monitor = LeaderMonitor(leader, 1.0)
    lost = monitor.track(ctx(("hasleader", "true")))
    assert lost is not None
    monitor.release(lost)
    leader.present = False
    ended = [monitor.tick() for _ in range(MAX_NO_LEADER)]
    assert ended == [0] * MAX_NO_LEADER
    assert not lost.is_set()


def test_run_until_cancels_the_work_and_raises_no_leader() -> None:
    async def scenario() -> None:
        lost = asyncio.Event()
        cancelled = asyncio.Event()

        async def work() -> None:
            try:
                await asyncio.sleep(60)
            finally:
                cancelled.set()

        asyncio.get_running_loop().call_later(0.01, lost.set)
        with pytest.raises(errors.EtcdError) as err:
            await run_until(work(), lost)
        assert err.value is errors.ErrNoLeader
        assert cancelled.is_set()

    asyncio.run(scenario())


def test_run_until_returns_and_raises_what_the_work_does() -> None:
    async def scenario() -> None:
        async def fine() -> None:
            return None

        async def broken() -> None:
            raise ValueError("boom")

        await run_until(fine(), asyncio.Event())
        await run_until(fine(), None)
        with pytest.raises(ValueError, match="boom"):
            await run_until(broken(), asyncio.Event())

    asyncio.run(scenario())
