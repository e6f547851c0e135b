"""The ``restore`` init container of a cluster created from a backup (``status.restoredFrom``).

It runs ``etcd-restore`` (``etcd_operator.restore``) from the operator's own image, which holds
the backup library and ``pyetcdutl``, whatever the engine: pyetcdutl's data dir is what etcd
3.4 and 3.5 read too, and it bumps revisions and marks them compacted as etcd 3.5's etcdutl does.
It sees the member's identity and bootstrap settings exactly as the member does (the same
environment), and restores only for a founding member (``initial-cluster-state new``) whose
data dir is empty, so a restart, or a member added later, restores nothing; or, while the
bootstrap ConfigMap carries a rebuild from a backup (``restore-for-recovery``), for any member
whose data dir is empty: every member of a cluster that lost them all starts from the backup.

Credentials reach it as environment variables from the store's Secret (``secretKeyRef``): the pod
spec names the Secret, never holds its values. A CA bundle is a Secret volume. On failure it
exits non-zero with a one-line message, which ``FallbackToLogsOnError`` makes the container's
termination message: the operator shows it in the cluster's conditions.
"""

from __future__ import annotations

from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster, RestoredFrom
from etcd_operator.components import naming, tls
from etcd_operator.components.bootstrap import KEY_RESTORE_FOR_RECOVERY

Json = dict[str, Any]

CONTAINER_NAME = "restore"
COMMAND = "etcd-restore"
CA_VOLUME = "restore-ca"
CA_MOUNT = "/etc/etcd-restore"
CA_FILE = "ca.pem"
# The environment variables etcd-restore reads its secrets from.
ENV_ACCESS_KEY_ID = "RESTORE_ACCESS_KEY_ID"
ENV_SECRET_ACCESS_KEY = "RESTORE_SECRET_ACCESS_KEY"
ENV_SESSION_TOKEN = "RESTORE_SESSION_TOKEN"
ENV_ENCRYPTION_KEY = "RESTORE_ENCRYPTION_KEY"
# The bootstrap ConfigMap's restore-for-recovery key (optional): a rebuild from a backup under way.
ENV_RESTORE_FOR_RECOVERY = "RESTORE_FOR_RECOVERY"


def _secret_env(name: str, secret: str, key: str, *, optional: bool = False) -> Json:
    ref = {"name": secret, "key": key, "optional": optional}
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def restore_args(
    cluster: EtcdCluster, settings: OperatorSettings, source: RestoredFrom
) -> list[str]:
    name, ns, domain = cluster.name, cluster.namespace, settings.cluster_domain
    me = naming.POD_NAME_REF
    store = source.store
    args = [
        f"--data-dir={naming.DATA_DIR}",
        f"--name={me}",
        "--initial-advertise-peer-urls="
        + naming.named_peer_url(name, ns, me, domain, secure=tls.peer_secure(cluster)),
        f"--initial-cluster-token={naming.initial_cluster_token(name, ns)}",
        f"--location={source.location}",
        f"--bump-revision={source.bumpRevision}",
    ]
    if source.markCompacted:
        args.append("--mark-compacted")
    if source.toRevision is not None:
        args.append(f"--to-revision={source.toRevision}")
    if source.toTime is not None:
        args.append(f"--to-time={source.toTime}")
    if (source.toRevision or source.toTime) and source.baseRevision is not None:
        args.append(f"--base-revision={source.baseRevision}")
    if source.sha256:
        args.append(f"--sha256={source.sha256}")
    if store.endpoint:
        args.append(f"--endpoint={store.endpoint}")
    if store.region:
        args.append(f"--region={store.region}")
    if store.forcePathStyle:
        args.append("--force-path-style")
    if store.caBundle is not None:
        args.append(f"--ca-bundle={CA_MOUNT}/{CA_FILE}")
    return args


def restore_env(cluster: EtcdCluster, source: RestoredFrom) -> list[Json]:
    configmap = naming.bootstrap_configmap_name(cluster.name)
    recovery = {"name": configmap, "key": KEY_RESTORE_FOR_RECOVERY, "optional": True}
    env: list[Json] = [
        {"name": ENV_RESTORE_FOR_RECOVERY, "valueFrom": {"configMapKeyRef": recovery}}
    ]
    secret = source.store.credentialsSecret
    if secret:
        env += [
            _secret_env(ENV_ACCESS_KEY_ID, secret, "accessKeyId"),
            _secret_env(ENV_SECRET_ACCESS_KEY, secret, "secretAccessKey"),
            _secret_env(ENV_SESSION_TOKEN, secret, "sessionToken", optional=True),
        ]
    key = source.encryptionKeySecret
    if key is not None:
        env.append(_secret_env(ENV_ENCRYPTION_KEY, key.name, key.key))
    return env


def restore_volumes(source: RestoredFrom) -> list[Json]:
    ca = source.store.caBundle
    if ca is None:
        return []
    items = [{"key": ca.key, "path": CA_FILE}]
    return [{"name": CA_VOLUME, "secret": {"secretName": ca.name, "items": items}}]


def restore_container(
    cluster: EtcdCluster,
    settings: OperatorSettings,
    source: RestoredFrom,
    *,
    member_env: list[Json],
    mounts: list[Json],
    security_context: Json,
) -> Json:
    """The init container; ``member_env``, ``mounts`` and ``security_context`` are the member
    container's, so that it sees the same identity, volume and restrictions."""
    volume_mounts = list(mounts)
    if source.store.caBundle is not None:
        volume_mounts.append({"name": CA_VOLUME, "mountPath": CA_MOUNT, "readOnly": True})
    return {
        "name": CONTAINER_NAME,
        "image": settings.restore_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [COMMAND],
        "args": restore_args(cluster, settings, source),
        "env": [*member_env, *restore_env(cluster, source)],
        "volumeMounts": volume_mounts,
        "securityContext": security_context,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
