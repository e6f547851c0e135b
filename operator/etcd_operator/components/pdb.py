"""The PodDisruptionBudget that keeps a quorum of members through voluntary disruptions.

Node drains and other evictions may take members down only while a majority stays available.
"""

from __future__ import annotations

from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components import naming
from etcd_operator.components.owner import object_meta


def min_available(members: int) -> int:
    """Members that must stay up: a quorum, or none for a single member.

    A single member has no quorum to protect: any disruption is an outage, and the user chose
    that by asking for one member. ``minAvailable: 1`` would instead block every drain of its
    node forever (cluster upgrades stall on a PDB that can never be satisfied), so a single
    member gets 0, as etcd-druid does. ``minAvailable: 0`` rather than ``maxUnavailable: 1``
    keeps one field for every size, so resizing never swaps fields on the live object.
    """
    if members <= 1:
        return 0
    return members // 2 + 1


def pdb(
    cluster: EtcdCluster, settings: OperatorSettings, *, replicas: int | None = None
) -> dict[str, Any]:
    """The budget for ``replicas`` members (``spec.replicas`` by default). While scaling, the
    reconciler passes the membership etcd lists now: a budget sized for a target that cannot be
    reached (a blocked scale-out) would block node drains forever."""
    members = cluster.spec.replicas if replicas is None else replicas
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(
            cluster, naming.pdb_name(cluster.name), naming.COMPONENT_DISRUPTION_BUDGET
        ),
        "spec": {
            "minAvailable": min_available(members),
            "selector": {"matchLabels": naming.selector_labels(cluster.name)},
            # Explicitly the default, not AlwaysAllow: without a leader every member turns
            # unready at once, and AlwaysAllow would then let a drain evict all of them in the
            # middle of an election.
            "unhealthyPodEvictionPolicy": "IfHealthyBudget",
        },
    }
