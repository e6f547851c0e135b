"""Carry out one membership action of a plan against etcd, idempotently.

The actions are ``reconcile.actions``' membership changes; each maps onto one idempotent call of
``membership`` (so a pass that crashed half-way can be planned and run again from what is
observed). "Not capable" (an engine that cannot change membership) is raised as
``MembershipNotSupportedError`` for the caller to report instead of retrying; a learner not yet
in sync is logged, and promoted by a later pass.
"""

from __future__ import annotations

import logging

from etcd_operator.members.membership import (
    ClusterClient,
    Promotion,
    add_member,
    move_leader,
    not_capable,
    promote_if_ready,
    remove_member,
)
from etcd_operator.reconcile.actions import (
    AddMember,
    MembershipAction,
    MoveLeader,
    PromoteMember,
    RemoveMember,
)

log = logging.getLogger(__name__)


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
