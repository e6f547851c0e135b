"""Background tasks of the operator, at most one per key (an object's uid): what the backup,
keyspace-analysis and write-sample runners share. ``running`` finds the one under way, ``start``
makes one that forgets itself when done, ``wait`` waits for all (tests, the operator's cleanup),
``stop`` cancels all (the operator stops)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class KeyedTasks:
    """Tasks by key; a key's entry goes when its task ends."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def running(self, key: str) -> asyncio.Task[None] | None:
        task = self._tasks.get(key)
        return task if task is not None and not task.done() else None

    def start(
        self, key: str, work: Coroutine[Any, Any, None], name: str | None = None
    ) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            # Only its own entry: a task started for the key since has replaced it.
            if self._tasks.get(key) is done:
                del self._tasks[key]

        task.add_done_callback(forget)
        return task

    def __contains__(self, key: str) -> bool:
        return key in self._tasks

    async def wait(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
