"""The bootstrap ConfigMap ``<name>-bootstrap``: how a member starts, new cluster or joining one.

Members read ``initial-cluster`` and ``initial-cluster-state`` from this ConfigMap as the
environment variables ``ETCD_INITIAL_CLUSTER`` and ``ETCD_INITIAL_CLUSTER_STATE``; the kubelet
resolves them at every container start, so changing the ConfigMap never rolls the pods, and the
next start of any member sees the current value.

Why this is correct by construction:

1. A new cluster is created with state ``new`` and the full initial cluster (all members
   ``0..replicas-1``); the StatefulSet starts them in parallel and they elect a leader together.
2. Once the cluster has formed (the operator saw a leader and all members), the operator applies
   the ConfigMap with state ``existing``; ``next_state`` never goes back from ``existing``.
3. A member restarted on a data dir that already holds a WAL ignores both settings: etcd (and
   pyetcd) bootstraps from its own WAL and never re-reads them. Restarts are therefore safe in
   either state.
4. So the only members that read the state are those with an empty data dir. After formation
   that means a member being added or replaced, which the operator has added to the membership
   first; it starts with ``existing`` and joins. A member with an empty data dir in an existing
   cluster therefore never starts as ``new`` (which would have it bootstrap a second cluster
   with the same peer URLs, a cluster-ID mismatch the peers reject).

``initial-cluster`` always lists the members ``0..replicas-1``: for ``existing`` etcd uses it to
find its peers and checks that its own name and peer URL are in it, so when scaling out the
ConfigMap must be applied (with the larger count) before the StatefulSet grows: ``children``
returns it first.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components import naming, tls
from etcd_operator.components.owner import object_meta

KEY_INITIAL_CLUSTER = "initial-cluster"
KEY_INITIAL_CLUSTER_STATE = "initial-cluster-state"
# Read by the member-init container only (components.memberinit), absent outside a recovery.
KEY_FORCE_NEW_CLUSTER = "force-new-cluster"
# Read by the restore init container only (components.restore), absent outside a recovery: the
# token of a rebuild from a backup, which has every member restore onto an empty data dir
# although the cluster exists (initial-cluster-state stays existing).
KEY_RESTORE_FOR_RECOVERY = "restore-for-recovery"


class BootstrapState(StrEnum):
    """etcd's --initial-cluster-state values."""

    NEW = "new"
    EXISTING = "existing"


def next_state(observed: str | None, *, formed: bool) -> BootstrapState:
    """The state to apply, given the live ConfigMap's state (None when absent).

    Monotonic: once ``existing``, always ``existing``, even if the cluster's status was lost
    (status is not kept by backups of the custom resource) and ``formed`` reads False again.
    """
    if observed == BootstrapState.EXISTING or formed:
        return BootstrapState.EXISTING
    return BootstrapState.NEW


def bootstrap_configmap(
    cluster: EtcdCluster,
    settings: OperatorSettings,
    state: BootstrapState,
    *,
    replicas: int | None = None,
    force_new_cluster: str | None = None,
    restore_for_recovery: str | None = None,
) -> dict[str, Any]:
    """The ConfigMap for ``state``; ``replicas`` overrides ``spec.replicas`` while scaling;
    ``force_new_cluster`` (``<pod>:<token>``) names the survivor of a quorum-loss recovery, whose
    member-init container then forces a one-member cluster from its data (once per token);
    ``restore_for_recovery`` the token of a rebuild from a backup."""
    count = cluster.spec.replicas if replicas is None else replicas
    data = {
        KEY_INITIAL_CLUSTER: naming.initial_cluster(
            cluster.name,
            cluster.namespace,
            count,
            settings.cluster_domain,
            secure=tls.peer_secure(cluster),
        ),
        KEY_INITIAL_CLUSTER_STATE: BootstrapState(state).value,
    }
    if force_new_cluster is not None:
        data[KEY_FORCE_NEW_CLUSTER] = force_new_cluster
    if restore_for_recovery is not None:
        data[KEY_RESTORE_FOR_RECOVERY] = restore_for_recovery
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            cluster, naming.bootstrap_configmap_name(cluster.name), naming.COMPONENT_BOOTSTRAP
        ),
        "data": data,
    }
