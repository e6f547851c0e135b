"""The member container's image, command and etcd flags, for either engine.

pyetcd and upstream etcd take the same flags, so one builder serves both; only the image and the
binary differ. The flags are the same for every member: the member's own name and URLs come from
``$(POD_NAME)``, which Kubernetes expands from the downward-API environment variable.

``--initial-cluster`` and ``--initial-cluster-state`` are deliberately NOT flags. They reach the
member as ``ETCD_INITIAL_CLUSTER`` and ``ETCD_INITIAL_CLUSTER_STATE`` from the bootstrap ConfigMap
(see ``bootstrap.py``), read at each container start, so that the operator can switch the state
from ``new`` to ``existing`` without rewriting the pod template (which would roll every member).
Giving both a flag and its environment variable makes upstream etcd refuse to start.
"""

from __future__ import annotations

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import Engine, EtcdCluster
from etcd_operator.components import naming, tls

PYETCD_COMMAND = ["pyetcd"]
ETCD_COMMAND = ["/usr/local/bin/etcd"]

# The environment variables that carry the bootstrap settings (etcd maps --flag-name to
# ETCD_FLAG_NAME); never to be given as flags as well.
ENV_INITIAL_CLUSTER = "ETCD_INITIAL_CLUSTER"
ENV_INITIAL_CLUSTER_STATE = "ETCD_INITIAL_CLUSTER_STATE"


def image(cluster: EtcdCluster, settings: OperatorSettings) -> str:
    """The member image: pyetcd tags are bare versions, upstream etcd tags start with ``v``.

    ``spec.version`` may be written with or without the ``v``; it is normalised so that
    ``3.5.17`` and ``v3.5.17`` name the same image.
    """
    version = cluster.spec.version.removeprefix("v")
    if cluster.spec.engine == Engine.ETCD:
        return f"{settings.etcd_image}:v{version}"
    return f"{settings.pyetcd_image}:{version}"


def command(cluster: EtcdCluster) -> list[str]:
    """The binary, set explicitly rather than relying on the image's entrypoint."""
    return list(ETCD_COMMAND if cluster.spec.engine == Engine.ETCD else PYETCD_COMMAND)


def args(cluster: EtcdCluster, settings: OperatorSettings) -> list[str]:
    """etcd's flags for every member of ``cluster``, in a stable order (a change rolls pods)."""
    name, ns, domain = cluster.name, cluster.namespace, settings.cluster_domain
    me = naming.POD_NAME_REF
    client, peer = tls.client_secure(cluster), tls.peer_secure(cluster)
    flags = [
        f"--name={me}",
        f"--data-dir={naming.DATA_DIR}",
        f"--listen-client-urls={naming.scheme(client)}://0.0.0.0:{naming.CLIENT_PORT}",
        "--advertise-client-urls=" + naming.named_client_url(name, ns, me, domain, secure=client),
        f"--listen-peer-urls={naming.scheme(peer)}://0.0.0.0:{naming.PEER_PORT}",
        "--initial-advertise-peer-urls=" + naming.named_peer_url(name, ns, me, domain, secure=peer),
        f"--initial-cluster-token={naming.initial_cluster_token(name, ns)}",
        # /health and /metrics on their own port: probes and scrapers never touch the client
        # port. Plain http even with client TLS, as etcd's own metrics listener allows: the
        # kubelet's probe and Prometheus then need no client certificate.
        f"--listen-metrics-urls=http://0.0.0.0:{naming.METRICS_PORT}",
        *tls.member_flags(cluster),
    ]
    options = cluster.spec.etcd
    flags += [
        f"--heartbeat-interval={options.heartbeatIntervalMs}",
        f"--election-timeout={options.electionTimeoutMs}",
        # A member cut off from the others campaigns in vain and raises its term; without
        # pre-vote it deposes the healthy leader the moment it is back (an election, writes
        # stalled). etcd 3.5 and pyetcd default to it; etcd 3.4 does not.
        "--pre-vote=true",
    ]
    # Unset options are left to the engine's own defaults rather than restated here.
    if options.quotaBackendBytes is not None:
        flags.append(f"--quota-backend-bytes={options.quotaBackendBytes}")
    if options.autoCompaction is not None:
        flags += [
            f"--auto-compaction-mode={options.autoCompaction.mode}",
            f"--auto-compaction-retention={options.autoCompaction.retention}",
        ]
    if options.snapshotCount is not None:
        flags.append(f"--snapshot-count={options.snapshotCount}")
    return flags
