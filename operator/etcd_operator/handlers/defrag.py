"""kopf entry point for EtcdDefrag: every watch event goes to the runtime's ``DefragRequests``.

Watch events, not create/delete handlers: those would put kopf's finalizer and progress
annotations on every request, and a request has nothing to finalize. The cluster's own pass
carries the request out.
"""

from __future__ import annotations

from typing import Any

import kopf

from etcd_operator.api.etcddefrag import PLURAL
from etcd_operator.api.v1alpha1 import GROUP, VERSION
from etcd_operator.runtime.defrags import DefragRequests


def register_defrags(registry: kopf.OperatorRegistry, requests: DefragRequests) -> DefragRequests:
    """Register the EtcdDefrag handlers on ``registry``."""
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.event(*resource, id="defrag-request", registry=registry)
    async def seen(event: kopf.RawEvent, **_: Any) -> None:
        await requests.seen(event.get("type"), event["object"])

    @kopf.on.cleanup(id="stop-defrag-expiry", registry=registry)
    async def stop(**_: Any) -> None:
        await requests.stop()

    return requests
