"""Owner references and object metadata shared by every child of an EtcdCluster.

Every child carries the cluster's common labels and one controller owner reference to the
EtcdCluster, so that Kubernetes garbage-collects the children with their cluster and kopf routes
their events back to it. Pure: builds dicts, does no I/O.
"""

from __future__ import annotations

from typing import Any

from etcd_operator.api.v1alpha1 import API_VERSION, KIND, EtcdCluster
from etcd_operator.components import naming


def owner_reference(cluster: EtcdCluster) -> dict[str, Any]:
    """The controller reference to ``cluster``; needs the uid the API server assigned it."""
    uid = cluster.metadata.get("uid")
    if not cluster.name or not uid:
        # An owner reference without a uid is rejected by the API server; a child without one
        # would outlive its cluster. Fail loudly in the caller instead.
        raise ValueError("an EtcdCluster needs metadata.name and metadata.uid to own children")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": cluster.name,
        "uid": str(uid),
        "controller": True,
        # Foreground deletion of the cluster waits for its children.
        "blockOwnerDeletion": True,
    }


def object_meta(cluster: EtcdCluster, name: str, component: str) -> dict[str, Any]:
    """metadata of a namespaced child: name, namespace, common labels, owner reference."""
    return {
        "name": name,
        "namespace": cluster.namespace,
        "labels": naming.common_labels(cluster.name, component),
        "ownerReferences": [owner_reference(cluster)],
    }
