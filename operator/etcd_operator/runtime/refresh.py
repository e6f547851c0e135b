"""The operator-wide periodic status refresh: one background task for every EtcdCluster.

etcd changes (a member dies, the leader moves, a learner catches up) produce no Kubernetes
event, so every cluster is reconciled again at a fixed interval. This is one task for the whole
operator, not a kopf timer per object: kopf forces its finalizer onto every object that has a
timer or a daemon (kopf issue #1074), and with that finalizer an EtcdCluster, and its namespace,
could not be deleted while no operator runs. The clusters to refresh come from a kopf index,
which needs no finalizer.

``refresh_all`` runs one round with bounded concurrency; a cluster whose refresh fails (or
exceeds its deadline) is logged and counted, and the others are refreshed all the same.
``refresh_forever`` repeats rounds until cancelled; ``PeriodicRefresh`` owns that task (started
by a kopf startup handler, cancelled by the cleanup handler). No kopf here: the loop is plain
asyncio, and its clock (``sleep``) can be replaced in tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from etcd_operator import metrics

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True, order=True)
class ClusterRef:
    """One EtcdCluster by namespace, name and uid (a re-created cluster is another one)."""

    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def index_entry(body: Mapping[str, object]) -> dict[tuple[str, str], ClusterRef]:
    """What the kopf index holds for one EtcdCluster: its reference, under (namespace, name);
    nothing while it is being deleted (there is nothing left to refresh)."""
    meta = body.get("metadata")
    if not isinstance(meta, Mapping) or meta.get("deletionTimestamp"):
        return {}
    namespace, name, uid = meta.get("namespace"), meta.get("name"), meta.get("uid")
    if not (isinstance(namespace, str) and isinstance(name, str) and isinstance(uid, str)):
        return {}
    return {(namespace, name): ClusterRef(namespace, name, uid)}


def indexed(index: Mapping[object, Iterable[ClusterRef]]) -> list[ClusterRef]:
    """A snapshot of the clusters a kopf index holds, sorted (read without awaiting, so it is
    consistent even while kopf updates the index)."""
    return sorted({ref for store in index.values() for ref in store})


Refresh = Callable[[ClusterRef], Awaitable[None]]


async def refresh_all(
    clusters: Iterable[ClusterRef],
    refresh: Refresh,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    deadline: float | None = None,
) -> list[ClusterRef]:
    """Refresh every cluster, at most ``concurrency`` at a time, each within ``deadline``
    seconds; returns the clusters whose refresh failed. One failure never stops the others.
    Cancellation (the operator stopping) cancels the whole round."""
    gate = asyncio.Semaphore(max(1, concurrency))
    failed: list[ClusterRef] = []

    async def one(ref: ClusterRef) -> None:
        async with gate:
            try:
                async with asyncio.timeout(deadline):
                    await refresh(ref)
            except TimeoutError:
                failed.append(ref)
                metrics.STATUS_REFRESH_FAILURES.inc()
                log.warning("status refresh of %s: no result within %gs", ref, deadline)
            except Exception as err:
                failed.append(ref)
                metrics.STATUS_REFRESH_FAILURES.inc()
                log.warning("status refresh of %s failed: %s", ref, err)

    async with asyncio.TaskGroup() as group:
        for ref in clusters:
            group.create_task(one(ref))
    return sorted(failed)


async def refresh_forever(
    clusters: Callable[[], Iterable[ClusterRef]],
    refresh: Refresh,
    interval: float,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    deadline: float | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Every ``interval`` seconds (between the end of a round and the start of the next, so
    rounds never overlap), refresh the clusters ``clusters()`` lists at that moment. Runs until
    cancelled; nothing a refresh raises ends it."""
    while True:
        await sleep(interval)
        try:
            await refresh_all(clusters(), refresh, concurrency=concurrency, deadline=deadline)
            metrics.STATUS_REFRESH_ROUNDS.inc()
        except Exception:  # e.g. reading the index; the next round tries again
            log.exception("status refresh round failed")


class PeriodicRefresh:
    """Owns the ``refresh_forever`` task: ``start`` once, ``stop`` cancels it and waits."""

    def __init__(
        self,
        refresh: Refresh,
        interval: float,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        deadline: float | None = None,
    ) -> None:
        self._refresh = refresh
        self._interval = interval
        self._concurrency = concurrency
        self._deadline = deadline
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, clusters: Callable[[], Iterable[ClusterRef]]) -> None:
        if self.running:
            return
        self._task = asyncio.create_task(
            refresh_forever(
                clusters,
                self._refresh,
                self._interval,
                concurrency=self._concurrency,
                deadline=self._deadline,
            ),
            name="etcd-operator status refresh",
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():  # our own cancellation, not the task's: pass it on
                raise
