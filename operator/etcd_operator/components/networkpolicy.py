"""The NetworkPolicy that admits only the traffic a cluster needs (``spec.networkPolicy``).

It selects the member pods, is an Ingress policy only (the members' own connections out, to
each other and to S3 for restores, are left alone), and admits per port:

- peer: the members themselves;
- client: the members (``member-init`` and etcd's own gateway calls), the operator's pods, and
  the user's ``clients``, every pod of the cluster's namespace when none are listed;
- metrics: the user's ``metrics`` peers only (a rule with no peers would admit everybody, so
  an empty list leaves the port out of the policy, which then admits nobody there).

Probes come from the node, which network plugins admit whatever the policy says.
"""

from __future__ import annotations

from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components import naming
from etcd_operator.components.owner import object_meta

# The label every namespace carries with its own name (Kubernetes sets it, immutable).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def enabled(cluster: EtcdCluster, settings: OperatorSettings) -> bool:
    """Whether the cluster has a NetworkPolicy: its own ``enabled``, else the operator's default."""
    wanted = cluster.spec.networkPolicy.enabled
    return settings.network_policy_default if wanted is None else wanted


def members_peer(cluster: EtcdCluster) -> dict[str, Any]:
    """The cluster's own member pods (a peer without namespaceSelector: the policy's namespace)."""
    return {"podSelector": {"matchLabels": naming.selector_labels(cluster.name)}}


def operator_peer(settings: OperatorSettings) -> dict[str, Any] | None:
    """The operator's pods, when it knows where it runs; ``None`` outside the cluster (its
    connections then come from a node, which network plugins admit)."""
    if not settings.operator_namespace:
        return None
    labels = settings.operator_labels()
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: settings.operator_namespace}},
        # Written as the API server stores it ({} rather than empty matchLabels), or every
        # pass would see the live policy drift from the manifest.
        "podSelector": {"matchLabels": labels} if labels else {},
    }


def _port(number: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": number}]


def network_policy(cluster: EtcdCluster, settings: OperatorSettings) -> dict[str, Any]:
    """The policy of ``cluster`` (whether or not it is enabled: ``enabled`` tells)."""
    spec = cluster.spec.networkPolicy
    members = members_peer(cluster)
    clients = [p.manifest() for p in spec.clients or []] or [{"podSelector": {}}]
    operator = operator_peer(settings)
    client_peers = [members, *([operator] if operator is not None else []), *clients]
    ingress: list[dict[str, Any]] = [
        {"from": [members], "ports": _port(naming.PEER_PORT)},
        {"from": client_peers, "ports": _port(naming.CLIENT_PORT)},
    ]
    if spec.metrics:
        ingress.append(
            {"from": [p.manifest() for p in spec.metrics], "ports": _port(naming.METRICS_PORT)},
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(
            cluster, naming.network_policy_name(cluster.name), naming.COMPONENT_NETWORK_POLICY
        ),
        "spec": {
            "podSelector": {"matchLabels": naming.selector_labels(cluster.name)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
