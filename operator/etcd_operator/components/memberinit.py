"""The ``member-init`` init container of every member pod (``etcd_operator.memberinit``).

From the operator's image, for either engine. Before the member starts, it refuses an empty data
dir that the cluster lists as started (the evidence the operator replaces a member on, in etcd's
words, even where etcd 3.4 itself would rejoin), and it carries out the offline
``--force-new-cluster`` of a quorum-loss recovery on the one pod the bootstrap ConfigMap names
(``force-new-cluster: <pod>:<token>``; the key is optional and absent outside a recovery).

It asks the other members listed in the member's own ``ETCD_INITIAL_CLUSTER`` (the bootstrap
ConfigMap's, through the headless peer Service, which publishes members that are not Ready) and
the client Service: the flags stay the same for every member and every member count, so scaling
never changes the pod template.
"""

from __future__ import annotations

from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components import auth, naming, tls
from etcd_operator.components.bootstrap import KEY_FORCE_NEW_CLUSTER

Json = dict[str, Any]

CONTAINER_NAME = "member-init"
COMMAND = "etcd-member-init"
# The environment variable the bootstrap ConfigMap's force-new-cluster key reaches it as.
ENV_FORCE_NEW_CLUSTER = "ETCD_OPERATOR_FORCE_NEW_CLUSTER"


def member_init_args(cluster: EtcdCluster, settings: OperatorSettings) -> list[str]:
    name, ns, domain = cluster.name, cluster.namespace, settings.cluster_domain
    me = naming.POD_NAME_REF
    secure = tls.client_secure(cluster)
    return [
        f"--name={me}",
        f"--data-dir={naming.DATA_DIR}",
        "--peer-url="
        + naming.named_peer_url(name, ns, me, domain, secure=tls.peer_secure(cluster)),
        f"--endpoints={naming.client_service_url(name, ns, domain, secure=secure)}",
        f"--client-port={naming.CLIENT_PORT}",
        # Only with client TLS: the template of a plaintext cluster stays as it was (a change
        # would roll every member of every cluster on an operator upgrade).
        *([f"--client-scheme={naming.scheme(secure)}"] if secure else []),
        # The client certificate: with --client-cert-auth the members answer no one without.
        *tls.client_flags(cluster),
    ]


def member_init_container(
    cluster: EtcdCluster,
    settings: OperatorSettings,
    *,
    member_env: list[Json],
    mounts: list[Json],
    security_context: Json,
) -> Json:
    """The init container; ``member_env``, ``mounts`` and ``security_context`` are the member
    container's, so that it sees the same identity, volume and restrictions."""
    configmap = naming.bootstrap_configmap_name(cluster.name)
    force = {
        "name": ENV_FORCE_NEW_CLUSTER,
        "valueFrom": {
            "configMapKeyRef": {"name": configmap, "key": KEY_FORCE_NEW_CLUSTER, "optional": True}
        },
    }
    return {
        "name": CONTAINER_NAME,
        "image": settings.restore_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [COMMAND],
        "args": member_init_args(cluster, settings),
        # With spec.auth, root's credentials (from its Secret) for the member list.
        "env": [*member_env, force, *auth.member_init_env(cluster)],
        "volumeMounts": list(mounts),
        "securityContext": security_context,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
