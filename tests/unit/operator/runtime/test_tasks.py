"""Keyed background tasks: one per key, forgotten when done (never a successor started for the
same key), waited for and cancelled as a whole."""

from __future__ import annotations

import asyncio

from etcd_operator.runtime.tasks import KeyedTasks


async def until(event: asyncio.Event) -> None:
    await event.wait()


def test_a_task_is_found_while_it_runs_and_forgotten_when_done() -> None:
    async def scenario() -> None:
        tasks = KeyedTasks()
        gate = asyncio.Event()
        first = tasks.start("uid-1", until(gate), "first")
        assert tasks.running("uid-1") is first and "uid-1" in tasks
        gate.set()
        await first
        assert tasks.running("uid-1") is None
        await tasks.wait()
        assert "uid-1" not in tasks

    asyncio.run(scenario())


def test_a_successor_started_before_the_first_is_forgotten_stays() -> None:
    # A task is done before its done-callbacks run: a start in between must not be undone by
    # the first task's callback.
    async def scenario() -> None:
        tasks = KeyedTasks()

        async def quick() -> None:
            return None

        first = tasks.start("uid-1", quick())
        while not first.done():  # polled: no callback of ours runs before the task's own
            await asyncio.sleep(0)
        gate = asyncio.Event()
        second = tasks.start("uid-1", until(gate))
        await asyncio.sleep(0)  # the first task's done-callbacks run here
        assert tasks.running("uid-1") is second
        gate.set()
        await tasks.wait()

    asyncio.run(scenario())


def test_stop_cancels_every_task() -> None:
    async def scenario() -> None:
        tasks = KeyedTasks()
        started = [tasks.start(f"uid-{i}", until(asyncio.Event())) for i in range(3)]
        await tasks.stop()
        assert all(t.cancelled() for t in started)
        await tasks.wait()

    asyncio.run(scenario())
