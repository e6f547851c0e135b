"""Names, labels, ports and URLs of everything an EtcdCluster owns: one place, used by all.

A cluster ``c`` in namespace ``ns`` owns: StatefulSet ``c`` (pods ``c-0`` .. ``c-N-1``), the
headless peer Service ``c-peer`` (the StatefulSet's serviceName: stable DNS per member), the
client Service ``c-client``, the PodDisruptionBudget ``c``, the ConfigMap ``c-bootstrap``
that tells members whether they start a new cluster or join an existing one, and, with
``spec.networkPolicy`` in force, the NetworkPolicy ``c``. With ``spec.tls``
it owns the TLS Secrets too (``tls_secret_name``), and its URLs are https on the planes with TLS
(``secure``).
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


def network_policy_name(cluster: str) -> str:
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


def scheme(secure: bool) -> str:
    """The URL scheme of a plane: https when it has TLS."""
    return "https" if secure else "http"


def peer_url(
    cluster: str,
    namespace: str,
    ordinal: int,
    domain: str = "cluster.local",
    *,
    secure: bool = False,
) -> str:
    return f"{scheme(secure)}://{member_host(cluster, namespace, ordinal, domain)}:{PEER_PORT}"


def client_url(
    cluster: str,
    namespace: str,
    ordinal: int,
    domain: str = "cluster.local",
    *,
    secure: bool = False,
) -> str:
    return f"{scheme(secure)}://{member_host(cluster, namespace, ordinal, domain)}:{CLIENT_PORT}"


def client_service_host(cluster: str, namespace: str, domain: str = "cluster.local") -> str:
    return f"{client_service_name(cluster)}.{namespace}.svc.{domain}"


def client_service_url(
    cluster: str, namespace: str, domain: str = "cluster.local", *, secure: bool = False
) -> str:
    return f"{scheme(secure)}://{client_service_host(cluster, namespace, domain)}:{CLIENT_PORT}"


def initial_cluster(
    cluster: str,
    namespace: str,
    replicas: int,
    domain: str = "cluster.local",
    *,
    secure: bool = False,
) -> str:
    """etcd's --initial-cluster for members 0..replicas-1 (https peer URLs with ``secure``)."""
    return ",".join(
        f"{member_name(cluster, i)}={peer_url(cluster, namespace, i, domain, secure=secure)}"
        for i in range(replicas)
    )


# Component label values: one per kind of child, so that `kubectl get -l` can tell them apart.
COMPONENT_MEMBER = "member"  # the StatefulSet and its pods
COMPONENT_PEER_SERVICE = "peer-service"
COMPONENT_CLIENT_SERVICE = "client-service"
COMPONENT_DISRUPTION_BUDGET = "disruption-budget"
COMPONENT_NETWORK_POLICY = "network-policy"
COMPONENT_BOOTSTRAP = "bootstrap"
COMPONENT_DATA = "data"  # the members' PersistentVolumeClaims
COMPONENT_TLS = "tls"  # the Secrets of spec.tls that the operator generates

# The TLS Secrets the operator generates (spec.tls, source Generated), by role: the CA of each
# plane (its key never leaves this Secret), the members' serving certificate on the client port,
# their peer certificate, and the client certificate of the operator, its backups and
# applications (what `etcdctl --cacert --cert --key` needs: ca.crt, tls.crt, tls.key).
TLS_CLIENT_CA = "client-ca"
TLS_SERVER = "server-tls"
TLS_CLIENT = "client-tls"
TLS_PEER_CA = "peer-ca"
TLS_PEER = "peer-tls"


def tls_secret_name(cluster: str, role: str) -> str:
    return f"{cluster}-{role}"


# The pod's own name as Kubernetes expands it in a container's command and args (dependent
# environment variable): one pod template serves every ordinal.
POD_NAME_REF = "$(POD_NAME)"


def named_member_host(
    cluster: str, namespace: str, member: str, domain: str = "cluster.local"
) -> str:
    """Stable DNS name of a member given by pod name (or by ``POD_NAME_REF``)."""
    return f"{member}.{peer_service_name(cluster)}.{namespace}.svc.{domain}"


def named_peer_url(
    cluster: str,
    namespace: str,
    member: str,
    domain: str = "cluster.local",
    *,
    secure: bool = False,
) -> str:
    return f"{scheme(secure)}://{named_member_host(cluster, namespace, member, domain)}:{PEER_PORT}"


def named_client_url(
    cluster: str,
    namespace: str,
    member: str,
    domain: str = "cluster.local",
    *,
    secure: bool = False,
) -> str:
    host = named_member_host(cluster, namespace, member, domain)
    return f"{scheme(secure)}://{host}:{CLIENT_PORT}"


def initial_cluster_token(cluster: str, namespace: str) -> str:
    """etcd's --initial-cluster-token: stable for the life of the cluster, distinct per cluster.

    It seeds the cluster ID together with the peer URLs, which already contain the namespace and
    the name, so two clusters never share an ID even if their tokens collided.
    """
    return f"{namespace}-{cluster}"
