"""etcd-side operations of the operator, on top of ``pyetcd.client``.

``observe`` reads a cluster's membership and each member's status and health, concurrently and
within a deadline; ``membership`` adds, removes and promotes members and moves the leader,
idempotently; ``connect`` opens the client both use. Nothing here knows about Kubernetes: callers
pass client URLs and peer URLs.
"""

from __future__ import annotations

from etcd_operator.members.auth import AuthClient, change_auth, observe_auth
from etcd_operator.members.changes import MembershipNotSupportedError, change_membership
from etcd_operator.members.connect import EtcdConnection, connect_etcd
from etcd_operator.members.maintenance import MaintenanceClient, maintain
from etcd_operator.members.membership import (
    ClusterClient,
    Promotion,
    add_member,
    describe_etcd_error,
    move_leader,
    not_capable,
    promote_if_ready,
    promote_member,
    remove_member,
)
from etcd_operator.members.observe import ObservingClient, observe

__all__ = [
    "AuthClient",
    "ClusterClient",
    "EtcdConnection",
    "MaintenanceClient",
    "MembershipNotSupportedError",
    "ObservingClient",
    "Promotion",
    "add_member",
    "change_auth",
    "change_membership",
    "connect_etcd",
    "describe_etcd_error",
    "maintain",
    "move_leader",
    "not_capable",
    "observe",
    "observe_auth",
    "promote_if_ready",
    "promote_member",
    "remove_member",
]
