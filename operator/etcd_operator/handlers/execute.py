"""Carry out the actions of a plan, in order: apply children, post events, write the status.

The executor makes no decisions. It stops at the first failed API call and lets the error
propagate: the status (always the last action) is then not written, so it never claims a pass
that did not complete, and the next pass plans again from what actually happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from etcd_operator.handlers.kube import KubeApi
from etcd_operator.reconcile.plan import Action, Apply, Event, PatchStatus, SetBootstrapState

PostEvent = Callable[[str, str, str], None]
"""(type, reason, message) -> None: posts a Kubernetes Event on the EtcdCluster."""
WriteStatus = Callable[[dict[str, Any]], Awaitable[None] | None]
"""Writes the status merge patch (kopf's ``patch.status`` in the handlers)."""


async def execute(
    actions: Iterable[Action], kube: KubeApi, post_event: PostEvent, write_status: WriteStatus
) -> None:
    for action in actions:
        match action:
            case Apply(manifest=manifest) | SetBootstrapState(manifest=manifest):
                # The ConfigMap switch is an apply too: the manifest carries the new state and
                # its fingerprint, so the next pass sees it as up to date.
                await kube.apply(manifest)
            case Event(type=type_, reason=reason, message=message):
                post_event(type_, reason, message)
            case PatchStatus(status=status):
                written = write_status(status)
                if written is not None:
                    await written
