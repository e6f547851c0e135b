"""Kubernetes Events about an EtcdCluster, posted through the API directly.

kopf's ``kopf.event`` only works inside kopf's own handler tasks (it queues to a poster that
kopf sets up per object), so the operator-wide status refresh, which runs outside them, posts
its events itself: a core/v1 Event as kopf would write it, from ``etcd-operator``. Posting is
best effort: an event that cannot be posted is logged, never a failed pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from etcd_operator.api.times import rfc3339
from etcd_operator.runtime.kube import KubeApi

log = logging.getLogger(__name__)

COMPONENT = "etcd-operator"
# What the API server accepts in an Event's message (kopf cuts its own the same way).
MAX_MESSAGE = 1024


def shorten(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` within ``limit`` characters, its middle cut out (start and end kept)."""
    if len(message) <= limit:
        return message
    infix = "..."
    head = (limit - len(infix)) // 2
    tail = limit - len(infix) - head
    return f"{message[:head]}{infix}{message[-tail:]}"


def event_manifest(
    involved: Mapping[str, Any], type_: str, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (a namespaced object as the API returns it)."""
    meta = involved["metadata"]
    when = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": shorten(message),
        "source": {"component": COMPONENT},
        "firstTimestamp": when,
        "lastTimestamp": when,
        "count": 1,
    }


async def post_events(
    kube: KubeApi,
    involved: Mapping[str, Any],
    events: list[tuple[str, str, str]],
    now: datetime,
) -> None:
    """Post ``(type, reason, message)`` events in order; failures are logged and skipped."""
    for type_, reason, message in events:
        try:
            await kube.create(event_manifest(involved, type_, reason, message, now))
        except Exception as err:
            meta = involved.get("metadata") or {}
            log.warning(
                "could not post event %s on %s/%s: %s",
                reason,
                meta.get("namespace"),
                meta.get("name"),
                err,
            )
