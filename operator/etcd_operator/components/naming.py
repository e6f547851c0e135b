"""Names, labels, ports and URLs of everything an EtcdCluster owns: one place, used by all.

A cluster ``c`` in namespace ``ns`` owns: StatefulSet ``c`` (pods ``c-0`` .. ``c-N-1``), the
headless peer Service ``c-peer`` (the StatefulSet's serviceName: stable DNS per member), the
client Service ``c-client``, the PodDisruptionBudget ``c`` and the ConfigMap ``c-bootstrap``
that tells members whether they start a new cluster or join an existing one.
"""

from __future__ import annotations

CLIENT_PORT = 2379
PEER_PORT = 2380
METRICS_PORT = 2381  # --listen-metrics-urls: /health and /metrics, for probes and scraping
DATA_MOUNT = "/var/lib/etcd"
DATA_DIR = f"{DATA_MOUNT}/data"
VOLUME_NAME = "data"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_CLUSTER = "etcd.pyetcd.io/cluster"
MANAGED_BY = "etcd-operator"


def statefulset_name(cluster: str) -> str:
    return cluster


def peer_service_name(cluster: str) -> str:
    return f"{cluster}-peer"


def client_service_name(cluster: str) -> str:
    return f"{cluster}-client"


def pdb_name(cluster: str) -> str:
    return cluster


def bootstrap_configmap_name(cluster: str) -> str:
    return f"{cluster}-bootstrap"


def member_name(cluster: str, ordinal: int) -> str:
    return f"{cluster}-{ordinal}"


def selector_labels(cluster: str) -> dict[str, str]:
    """The labels that select a cluster's member pods (immutable on the StatefulSet)."""
    return {LABEL_NAME: "etcd", LABEL_INSTANCE: cluster, LABEL_CLUSTER: cluster}


def common_labels(cluster: str, component: str) -> dict[str, str]:
    return {**selector_labels(cluster), LABEL_COMPONENT: component, LABEL_MANAGED_BY: MANAGED_BY}


def member_host(cluster: str, namespace: str, ordinal: int, domain: str = "cluster.local") -> str:
    return f"{member_name(cluster, ordinal)}.{peer_service_name(cluster)}.{namespace}.svc.{domain}"


def peer_url(cluster: str, namespace: str, ordinal: int, domain: str = "cluster.local") -> str:
    return f"http://{member_host(cluster, namespace, ordinal, domain)}:{PEER_PORT}"


def client_url(cluster: str, namespace: str, ordinal: int, domain: str = "cluster.local") -> str:
    return f"http://{member_host(cluster, namespace, ordinal, domain)}:{CLIENT_PORT}"


def client_service_url(cluster: str, namespace: str, domain: str = "cluster.local") -> str:
    return f"http://{client_service_name(cluster)}.{namespace}.svc.{domain}:{CLIENT_PORT}"


def initial_cluster(
    cluster: str, namespace: str, replicas: int, domain: str = "cluster.local"
) -> str:
    """etcd's --initial-cluster for members 0..replicas-1."""
    return ",".join(
        f"{member_name(cluster, i)}={peer_url(cluster, namespace, i, domain)}"
        for i in range(replicas)
    )
