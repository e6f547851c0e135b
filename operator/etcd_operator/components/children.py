"""Every Kubernetes object an EtcdCluster owns, in the order to apply them.

Order matters on creation: the ConfigMap comes first (members read it when their containers
start), the peer Service before the StatefulSet (members resolve each other through it from
their first start), the PDB and the NetworkPolicy before the pods exist, and the StatefulSet
last. The NetworkPolicy is there only while ``spec.networkPolicy`` is in force; ``optional``
names it always, so that a pass can find (and delete) one that is no longer wanted.
"""

from __future__ import annotations

from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster, RestoredFrom
from etcd_operator.components import naming, networkpolicy
from etcd_operator.components.bootstrap import BootstrapState, bootstrap_configmap
from etcd_operator.components.pdb import pdb
from etcd_operator.components.services import client_service, peer_service
from etcd_operator.components.statefulset import statefulset


def children(
    cluster: EtcdCluster,
    settings: OperatorSettings,
    bootstrap_state: BootstrapState,
    *,
    replicas: int | None = None,
    restore: RestoredFrom | None = None,
    force_new_cluster: str | None = None,
    restore_for_recovery: str | None = None,
    hibernate: bool = False,
) -> list[dict[str, Any]]:
    """All manifests of ``cluster`` for server-side apply, in apply order.

    ``replicas`` overrides ``spec.replicas`` for the ConfigMap, the PDB and the StatefulSet while
    the operator steps the membership one member at a time; ``force_new_cluster`` names the
    survivor of a quorum-loss recovery in the bootstrap ConfigMap, ``restore_for_recovery`` the
    token of a rebuild from a backup. ``hibernate``: the StatefulSet runs no pod, while the
    ConfigMap and the PDB keep the membership.
    """
    policy = (
        [networkpolicy.network_policy(cluster, settings)]
        if networkpolicy.enabled(cluster, settings)
        else []
    )
    return [
        bootstrap_configmap(
            cluster,
            settings,
            bootstrap_state,
            replicas=replicas,
            force_new_cluster=force_new_cluster,
            restore_for_recovery=restore_for_recovery,
        ),
        peer_service(cluster, settings),
        client_service(cluster, settings),
        pdb(cluster, settings, replicas=replicas),
        *policy,
        statefulset(cluster, settings, replicas=0 if hibernate else replicas, restore=restore),
    ]


def optional(cluster: EtcdCluster) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of every child the cluster owns only while its spec asks for
    it: looked up on every pass, deleted when the spec no longer wants it."""
    return [("networking.k8s.io/v1", "NetworkPolicy", naming.network_policy_name(cluster.name))]
