"""The two Services of a cluster: the headless peer Service and the client Service.

The peer Service is the StatefulSet's ``serviceName``: it gives every member the stable DNS name
that its peer and client URLs use. It publishes members before they are ready, because a member
only becomes ready (has a leader) after it has reached its peers by those names. The client
Service load-balances over ready members only.
"""

from __future__ import annotations

from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components import naming
from etcd_operator.components.owner import object_meta

CLIENT_PORT = {
    "name": "client",
    "port": naming.CLIENT_PORT,
    "targetPort": "client",
    "protocol": "TCP",
}
PEER_PORT = {"name": "peer", "port": naming.PEER_PORT, "targetPort": "peer", "protocol": "TCP"}


def peer_service(cluster: EtcdCluster, settings: OperatorSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(
            cluster, naming.peer_service_name(cluster.name), naming.COMPONENT_PEER_SERVICE
        ),
        "spec": {
            "clusterIP": "None",
            # Members of a forming cluster must resolve each other before any is ready.
            "publishNotReadyAddresses": True,
            "selector": naming.selector_labels(cluster.name),
            "ports": [dict(CLIENT_PORT), dict(PEER_PORT)],
        },
    }


def client_service(cluster: EtcdCluster, settings: OperatorSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(
            cluster, naming.client_service_name(cluster.name), naming.COMPONENT_CLIENT_SERVICE
        ),
        "spec": {
            "type": "ClusterIP",
            # Only ready members: readiness is etcd's /health (a leader and no alarm).
            "publishNotReadyAddresses": False,
            "selector": naming.selector_labels(cluster.name),
            "ports": [dict(CLIENT_PORT)],
        },
    }
