"""Write samples of live clusters: one asyncio task per cluster, watching its key space.

A reconcile pass hands a due window over (``SampleWrites``, see ``reconcile.keyspace``) and goes
on; ``start`` creates the cluster's task, or leaves the one that runs alone. The task:

1. reads the cluster, asks the pure decision again (``write_sample.due``: another pass may have
   had a window taken meanwhile), and looks at the members as a pass does (``observe``) for one
   to watch: a healthy follower when there is one, so that the leader serves no extra stream;
2. watches the whole key space from the current revision for ``windowSeconds``
   (``watch_writes``), counting each event's key by prefix (``write_sample.WriteCounter``,
   bounded in memory);
3. under the cluster's lock (the passes' own, so that no pass writes back a status read
   before), reads the cluster again and writes ``status.keyspace.writes``, and sets the
   write-rate gauges.

A failed window (no member to watch, the watch refused or cut) is logged and tried again a
minute later at the earliest; it never fails a pass, and nothing else waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from etcd_operator import metrics
from etcd_operator.api.analysis import KeyspaceStatus, WritesStatus
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import rfc3339
from etcd_operator.api.v1alpha1 import API_VERSION, KIND, EtcdCluster
from etcd_operator.members import describe_etcd_error
from etcd_operator.reconcile import keyspace, write_sample
from etcd_operator.reconcile.actions import SampleWrites
from etcd_operator.reconcile.observed import EtcdView
from etcd_operator.runtime.failures import InvalidSpecError, describe, parse_cluster
from etcd_operator.runtime.kube import KubeApi
from etcd_operator.runtime.observe import Connect, connect_etcd, observe
from etcd_operator.runtime.tasks import ClusterRunner, RetryingTasks

log = logging.getLogger(__name__)

Json = dict[str, Any]

# After a failed window, the next one waits this long at least (passes come every few seconds).
RETRY_SECONDS = 60.0


class SampleFailedError(Exception):
    """The window could not be taken; the message says why."""


def watched_member(view: EtcdView | None) -> str | None:
    """The client URL of the member to watch: a healthy follower, else the healthy leader."""
    if view is None:
        return None
    healthy = [m for m in view.members if m.healthy and not m.learner and m.client_urls]
    followers = [m for m in healthy if not m.leader]
    chosen = (followers or healthy)[:1]
    return chosen[0].client_urls[0] if chosen else None


class WriteSamples(ClusterRunner[RetryingTasks]):
    """Takes the clusters' write samples; ``start`` for each ``SampleWrites``."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Callable[[], KubeApi],
        *,
        lock: Callable[[str], asyncio.Lock] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        connect: Connect = connect_etcd,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            settings, kube, RetryingTasks(RETRY_SECONDS, monotonic), lock=lock, clock=clock
        )
        self._connect = connect
        self._monotonic = monotonic

    def start(self, request: SampleWrites) -> asyncio.Task[None] | None:
        """The cluster's sampling task: the one that runs, else a new one (none within
        ``RETRY_SECONDS`` of a failed window)."""
        return self._tasks.start_unless_failed(
            request.uid, lambda: self._guarded(request), f"writes {request.name}"
        )

    def forget(self, uid: str) -> None:
        """The cluster is gone: its failed window's time goes too."""
        self._tasks.forget(uid)

    # -- one window ------------------------------------------------------------------------
    async def _guarded(self, request: SampleWrites) -> None:
        where = f"{request.namespace}/{request.name}"
        try:
            await self._run(request)
        except asyncio.CancelledError:
            raise
        except SampleFailedError as err:
            self._tasks.failed(request.uid)
            log.warning("write sample of %s not taken: %s", where, err)
        except Exception as err:
            self._tasks.failed(request.uid)
            log.warning("write sample of %s failed unexpectedly: %s", where, describe(err))
        else:
            self._tasks.forget(request.uid)

    async def _cluster(self, request: SampleWrites) -> EtcdCluster | None:
        raw = await self.kube.get(API_VERSION, KIND, request.namespace, request.name)
        if raw is None or (raw.get("metadata") or {}).get("uid") != request.uid:
            return None
        try:
            return parse_cluster(raw)
        except InvalidSpecError:
            return None

    @staticmethod
    def _due(cluster: EtcdCluster, now: datetime) -> bool:
        spec = cluster.spec.analysis
        if spec is None or spec.writes is None:
            return False
        previous = keyspace.previous_status(cluster)
        return write_sample.due(spec.writes, previous.writes if previous else None, now)

    async def _run(self, request: SampleWrites) -> None:
        cluster = await self._cluster(request)
        if cluster is None or not self._due(cluster, self._clock()):
            return
        spec = cluster.spec.analysis
        assert spec is not None and spec.writes is not None
        observed = await observe(cluster, self.kube, self.settings, self._connect)
        endpoint = watched_member(observed.etcd)
        if endpoint is None:
            raise SampleFailedError("no healthy member to watch")
        counter = write_sample.WriteCounter.of(spec.separator, spec.depth)
        began = self._clock()
        started = self._monotonic()
        client = self._connect(
            [endpoint],
            self.settings.etcd_timeout_seconds,
            observed.credentials,
            observed.root_credentials,
        )
        try:
            window = await client.watch_writes(float(spec.writes.windowSeconds), counter.add)
        except Exception as err:
            said = describe_etcd_error(err)
            if said is None:
                raise
            raise SampleFailedError(f"watch on {endpoint}: {said}") from None
        finally:
            await client.close()
        sample = write_sample.summarize(
            counter,
            sampled_at=rfc3339(began),
            window_seconds=self._monotonic() - started,
            from_revision=window.from_revision,
            to_revision=window.to_revision,
        )
        await self._record(request, sample)

    async def _record(self, request: SampleWrites, sample: WritesStatus) -> None:
        async with self._lock(request.uid):
            cluster = await self._cluster(request)
            if cluster is None or cluster.spec.analysis is None:
                return
            if cluster.spec.analysis.writes is None:
                return
            previous = keyspace.previous_status(cluster) or KeyspaceStatus()
            status = previous.model_copy(update={"writes": sample})
            patch = {"keyspace": status.model_dump(mode="json")}
            if not await self.kube.patch_status(
                API_VERSION, KIND, cluster.namespace, cluster.name, patch
            ):
                return
        metrics.record_write_rates(cluster.namespace, cluster.name, write_sample.rates(sample))
        hottest = sample.prefixes[0].prefix if sample.prefixes else "-"
        log.info(
            "write sample of %s/%s: %d writes in %ds (revisions %d to %d), most under %s",
            cluster.namespace,
            cluster.name,
            sample.writes,
            sample.windowSeconds,
            sample.fromRevision,
            sample.toRevision,
            hottest,
        )
