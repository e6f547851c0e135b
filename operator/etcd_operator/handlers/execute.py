"""Carry out the actions of a plan, in order: membership changes, children, claims, events, status.

The executor makes no decisions. It stops at the first failed call and lets the error propagate:
the status (always the last action) is then not written, so it never claims a pass that did not
complete, and the next pass plans again from what actually happened. Two etcd answers are not
failures: a learner not yet in sync (the promotion is simply tried again on a later pass) and
"not capable" (the engine cannot change membership), which is raised as
``MembershipNotSupportedError`` for the caller to report instead of retrying.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from etcd_operator.handlers.kube import KubeApi
from etcd_operator.members import (
    ClusterClient,
    Promotion,
    add_member,
    move_leader,
    not_capable,
    promote_if_ready,
    remove_member,
)
from etcd_operator.reconcile.plan import (
    Action,
    AddMember,
    Apply,
    DeletePVC,
    Event,
    MembershipAction,
    MoveLeader,
    PatchStatus,
    PromoteMember,
    RemoveMember,
    SetBootstrapState,
)

log = logging.getLogger(__name__)

PostEvent = Callable[[str, str, str], None]
"""(type, reason, message) -> None: posts a Kubernetes Event on the EtcdCluster."""
WriteStatus = Callable[[dict[str, Any]], Awaitable[None] | None]
"""Writes the status merge patch (the handlers patch the status subresource directly)."""


class MembershipNotSupportedError(Exception):
    """etcd answered a membership change with "not capable": the engine cannot do it yet."""

    def __init__(self, action: MembershipAction, message: str) -> None:
        super().__init__(f"{type(action).__name__} refused: {message}")
        self.action = action
        self.message = message


async def change_membership(etcd: ClusterClient, action: MembershipAction) -> None:
    """One membership change, idempotent (see ``members.membership``)."""
    try:
        match action:
            case AddMember(name=name, peer_url=peer_url):
                added = await add_member(etcd, peer_url, learner=True)
                log.info(
                    "member %s is in etcd as %x (learner=%s)", name, added.id, added.is_learner
                )
            case PromoteMember(member_id=member_id, name=name):
                outcome = await promote_if_ready(etcd, member_id)
                if outcome == Promotion.NOT_IN_SYNC:
                    log.info("learner %s is not in sync with the leader yet", name)
            case MoveLeader(from_id=from_id, to_id=to_id, to_name=to_name):
                if not await move_leader(etcd, from_id, to_id):
                    log.info(
                        "%x no longer leads; no need to move leadership to %s", from_id, to_name
                    )
            case RemoveMember(member_id=member_id, name=name):
                if not await remove_member(etcd, member_id):
                    log.info("member %s (%x) was already removed", name, member_id)
    except Exception as err:
        if not_capable(err):
            raise MembershipNotSupportedError(action, str(getattr(err, "message", err))) from err
        raise


async def execute(
    actions: Iterable[Action],
    kube: KubeApi,
    post_event: PostEvent,
    write_status: WriteStatus,
    etcd: ClusterClient | None = None,
) -> None:
    """Run ``actions`` in order; ``etcd`` is required when they change the membership."""
    for action in actions:
        match action:
            case AddMember() | PromoteMember() | MoveLeader() | RemoveMember():
                if etcd is None:
                    raise RuntimeError(f"{action} needs an etcd client")
                await change_membership(etcd, action)
            case Apply(manifest=manifest) | SetBootstrapState(manifest=manifest):
                # The ConfigMap switch is an apply too: the manifest carries the new state and
                # its fingerprint, so the next pass sees it as up to date.
                await kube.apply(manifest)
            case DeletePVC(name=name, namespace=namespace):
                if not await kube.delete("v1", "PersistentVolumeClaim", namespace, name):
                    log.info("volume claim %s/%s was already deleted", namespace, name)
            case Event(type=type_, reason=reason, message=message):
                post_event(type_, reason, message)
            case PatchStatus(status=status):
                written = write_status(status)
                if written is not None:
                    await written
