"""EtcdDefrag requests outside their cluster's pass: a request for a cluster that does not
exist, the prompt first pass of a new request, and the deletion of ended requests.

The cluster's reconcile pass carries a request out (``reconcile.defrag_requests``). What no
cluster pass can see is handled here: a request naming no existing cluster is Rejected at once
(``ClusterNotFound``); a new request asks its cluster for a pass now instead of at the next
periodic refresh; an ended request with ``ttlSecondsAfterFinished`` is deleted that long after
it ended (one asyncio task per request, armed again when the operator restarts and relists).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from etcd_operator.api.etcddefrag import KIND as DEFRAG_KIND
from etcd_operator.api.etcddefrag import EtcdDefrag, EtcdDefragStatus
from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.v1alpha1 import API_VERSION, KIND
from etcd_operator.reconcile.operations import ended, seconds_until_expiry
from etcd_operator.runtime.events import post_events
from etcd_operator.runtime.failures import describe
from etcd_operator.runtime.kube import KubeApi
from etcd_operator.runtime.observe import without_kopf

log = logging.getLogger(__name__)

Reconcile = Callable[[Mapping[str, Any]], Awaitable[None]]
"""Runs one pass of the EtcdCluster given as the API returned it (``Reconciler.reconcile``)."""


class DefragRequests:
    """The runtime side of EtcdDefrags: ``seen`` for each watch event of one."""

    def __init__(
        self,
        kube: Callable[[], KubeApi],
        reconcile: Reconcile,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._kube = kube
        self._reconcile = reconcile
        self._clock = clock
        self._expiries: dict[str, asyncio.Task[None]] = {}

    async def seen(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event (``None``: listed when the operator started)."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or meta.get("name"))
        if event_type == "DELETED":
            task = self._expiries.pop(uid, None)
            if task is not None:
                task.cancel()
            return
        try:
            request = EtcdDefrag.model_validate(without_kopf(body))
        except ValueError as err:
            log.warning("EtcdDefrag %s is unreadable: %s", meta.get("name"), describe(err))
            return
        status = request.status or EtcdDefragStatus()
        if OperationPhase(status.phase).terminal:
            self._expire_later(uid, request, status)
        elif event_type in (None, "ADDED") and OperationPhase(status.phase) == "Pending":
            await self._start(body, request, status)

    async def stop(self) -> None:
        tasks = list(self._expiries.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._expiries.clear()

    async def _start(
        self, body: Mapping[str, Any], request: EtcdDefrag, status: EtcdDefragStatus
    ) -> None:
        kube = self._kube()
        cluster = await kube.get(API_VERSION, KIND, request.namespace, request.spec.clusterName)
        if cluster is None:
            now = self._clock()
            message = f"there is no EtcdCluster {request.spec.clusterName} in {request.namespace}"
            final = ended(
                status, OperationPhase.REJECTED, now, reason="ClusterNotFound", message=message
            )
            patch = final.model_dump(mode="json", exclude_none=True)
            await kube.patch_status(
                API_VERSION, DEFRAG_KIND, request.namespace, request.name, patch
            )
            await post_events(kube, body, [("Warning", "DefragRejected", message)], now)
            return
        try:
            await self._reconcile(cluster)
        except Exception as err:
            # The cluster's pass reports its own failure; the periodic refresh carries on.
            log.info("EtcdDefrag %s: its cluster's pass failed: %s", request.name, describe(err))

    def _expire_later(self, uid: str, request: EtcdDefrag, status: EtcdDefragStatus) -> None:
        if uid in self._expiries:
            return
        delay = seconds_until_expiry(request.spec, status, self._clock())
        if delay == float("inf"):
            return
        task = asyncio.create_task(self._expire(request, max(0.0, delay)))
        self._expiries[uid] = task
        task.add_done_callback(lambda _: self._expiries.pop(uid, None))

    async def _expire(self, request: EtcdDefrag, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._kube().delete(API_VERSION, DEFRAG_KIND, request.namespace, request.name)
        except Exception as err:
            log.warning("could not delete expired EtcdDefrag %s: %s", request.name, describe(err))
            return
        log.info("EtcdDefrag %s/%s expired: deleted", request.namespace, request.name)
