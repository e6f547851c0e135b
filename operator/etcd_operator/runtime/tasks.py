"""Background tasks of the operator, at most one per key (an object's uid): what the backup,
keyspace-analysis and write-sample runners share. ``running`` finds the one under way, ``start``
makes one that forgets itself when done, ``wait`` waits for all (tests, the operator's cleanup),
``stop`` cancels all (the operator stops). ``RetryingTasks`` also holds a key back for a while
after its task failed (the write-sample and continuous-backup runners). ``ClusterRunner`` is
what the per-cluster runners (keyspace analyses, write samples, continuous backups) share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, Generic, TypeVar

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.runtime.kube import KubeApi


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

    def cancel(self, key: str) -> None:
        """Cancel the key's task, if one runs; its entry goes when it has ended."""
        task = self.running(key)
        if task is not None:
            task.cancel()

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


class RetryingTasks(KeyedTasks):
    """KeyedTasks that start nothing for a key within ``retry_seconds`` of its last failure."""

    def __init__(self, retry_seconds: float, monotonic: Callable[[], float]) -> None:
        super().__init__()
        self.retry_seconds = retry_seconds
        self._monotonic = monotonic
        self._failed_at: dict[str, float] = {}

    def start_unless_failed(
        self, key: str, work: Callable[[], Coroutine[Any, Any, None]], name: str
    ) -> asyncio.Task[None] | None:
        """The key's running task, else a new one from ``work()``, else None (failed lately)."""
        running = self.running(key)
        if running is not None:
            return running
        failed = self._failed_at.get(key)
        if failed is not None and self._monotonic() - failed < self.retry_seconds:
            return None
        return self.start(key, work(), name)

    def failed(self, key: str) -> None:
        self._failed_at[key] = self._monotonic()

    def forget(self, key: str) -> None:
        """The key may start again at once (it succeeded, or its object is gone)."""
        self._failed_at.pop(key, None)


TasksT = TypeVar("TasksT", bound=KeyedTasks)


class ClusterRunner(Generic[TasksT]):
    """A runner of one task per cluster: the operator's settings, the Kubernetes API (made on
    first use, inside the operator), each cluster's lock (the reconciler's, so that a status
    write never interleaves with a pass; or its own), a clock, and the tasks."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Callable[[], KubeApi],
        tasks: TasksT,
        *,
        lock: Callable[[str], asyncio.Lock] | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self._kube = kube
        self._own_locks: dict[str, asyncio.Lock] = {}
        self._lock = lock or (lambda uid: self._own_locks.setdefault(uid, asyncio.Lock()))
        self._clock = clock
        self._tasks = tasks

    @property
    def kube(self) -> KubeApi:
        return self._kube()

    async def wait(self) -> None:
        """Wait for every task in flight (tests, the operator's cleanup)."""
        await self._tasks.wait()

    async def stop(self) -> None:
        """Cancel the tasks in flight (the operator stops); the next operator starts again."""
        await self._tasks.stop()
