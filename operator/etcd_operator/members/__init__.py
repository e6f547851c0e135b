"""etcd-side operations of the operator, on top of ``pyetcd.client``.

``observe`` reads a cluster's membership and each member's status and health, concurrently and
within a deadline; ``membership`` adds, removes and promotes members idempotently. Nothing here
knows about Kubernetes: callers pass client URLs and peer URLs.
"""

from __future__ import annotations

from etcd_operator.members.membership import add_member, promote_member, remove_member
from etcd_operator.members.observe import ClusterObservation, MemberObservation, observe

__all__ = [
    "ClusterObservation",
    "MemberObservation",
    "add_member",
    "observe",
    "promote_member",
    "remove_member",
]
