"""The StatefulSet that runs the members: one pod and one volume per member.

Choices, each for a reason stated next to it: parallel pod management (a new cluster's members
must start together), a readiness probe and no liveness probe, a restricted non-root security
context (the user's pod security context merged over it), required anti-affinity across nodes
merged with the SSD placement and the user's own affinity, and volume retention as the cluster
asks. The user's tolerations, topology spread constraints and image pull secrets are used as
given: the operator has none of its own to merge them with.
"""

from __future__ import annotations

import copy
from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import DEFAULT_SSD_LABEL, EtcdCluster, PlacementMode, RestoredFrom
from etcd_operator.components import flags, naming, tls
from etcd_operator.components.bootstrap import KEY_INITIAL_CLUSTER, KEY_INITIAL_CLUSTER_STATE
from etcd_operator.components.memberinit import member_init_container
from etcd_operator.components.owner import object_meta
from etcd_operator.components.restore import restore_container, restore_volumes

CONTAINER_NAME = "etcd"
RUN_AS = 65532  # the conventional "nonroot" uid/gid of distroless images
TERMINATION_GRACE_SECONDS = 30
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
TMP_VOLUME = "tmp"

Json = dict[str, Any]


def ssd_node_label(cluster: EtcdCluster, settings: OperatorSettings) -> tuple[str, str]:
    """The (key, value) of the SSD node label.

    A cluster that leaves ``storage.placement.nodeLabel`` at the built-in default gets the
    operator's configured default instead: the CRD may default the field on the server, so
    "equal to the default" is the only reliable sign that the user did not choose one.
    """
    label = cluster.spec.storage.placement.nodeLabel
    if label == DEFAULT_SSD_LABEL:
        label = settings.ssd_node_label
    key, _, value = label.partition("=")
    return key, value


def anti_affinity_term(cluster: EtcdCluster) -> Json:
    """Never two members of this cluster on one node: a node loss costs at most one vote."""
    return {
        "labelSelector": {"matchLabels": naming.selector_labels(cluster.name)},
        "topologyKey": HOSTNAME_TOPOLOGY,
    }


def affinity(cluster: EtcdCluster, settings: OperatorSettings) -> Json:
    """The operator's anti-affinity and SSD placement merged into the user's affinity.

    Nothing of either side is dropped. Required node selector terms are ORed by Kubernetes, so
    the SSD requirement is added to every user term (ANDed within a term) rather than appended
    as a term of its own, which would let pods land on any node matching either.
    """
    user = cluster.spec.podTemplate.affinity
    merged: Json = copy.deepcopy(user) if user else {}

    anti = merged.setdefault("podAntiAffinity", {})
    anti.setdefault("requiredDuringSchedulingIgnoredDuringExecution", []).append(
        anti_affinity_term(cluster)
    )

    mode = cluster.spec.storage.placement.mode
    if mode != PlacementMode.OFF:
        key, value = ssd_node_label(cluster, settings)
        expression = {"key": key, "operator": "In", "values": [value]}
        node = merged.setdefault("nodeAffinity", {})
        if mode == PlacementMode.REQUIRED:
            required = node.setdefault(
                "requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": []}
            )
            terms = required.setdefault("nodeSelectorTerms", [])
            if not terms:
                terms.append({})
            for term in terms:
                term.setdefault("matchExpressions", []).append(dict(expression))
        else:
            node.setdefault("preferredDuringSchedulingIgnoredDuringExecution", []).append(
                {"weight": 100, "preference": {"matchExpressions": [expression]}}
            )
    return merged


def pod_labels(cluster: EtcdCluster) -> dict[str, str]:
    """User labels first, then ours: a user label can never change what the selectors match."""
    user = cluster.spec.podTemplate.labels or {}
    return {**user, **naming.common_labels(cluster.name, naming.COMPONENT_MEMBER)}


def env(cluster: EtcdCluster) -> list[Json]:
    """The pod's identity from the downward API (the flags refer to ``$(POD_NAME)``) and the
    bootstrap settings from the ConfigMap, resolved at every container start (see bootstrap.py)."""
    configmap = naming.bootstrap_configmap_name(cluster.name)

    def field(path: str) -> Json:
        return {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}

    def from_configmap(key: str) -> Json:
        # Not optional: a member must never start without knowing whether to join.
        return {"configMapKeyRef": {"name": configmap, "key": key, "optional": False}}

    return [
        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
        {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
        {"name": flags.ENV_INITIAL_CLUSTER, "valueFrom": from_configmap(KEY_INITIAL_CLUSTER)},
        {
            "name": flags.ENV_INITIAL_CLUSTER_STATE,
            "valueFrom": from_configmap(KEY_INITIAL_CLUSTER_STATE),
        },
    ]


def readiness_probe() -> Json:
    """etcd's /health on the metrics port: false without a leader or with an alarm raised, which
    is exactly when a member must leave the client Service's endpoints. The rollout gates on etcd's
    own view of each member instead (``reconcile/rollout.py``)."""
    return {
        "httpGet": {"path": "/health", "port": "metrics", "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


# The pod-level security context the operator sets; the user's (podTemplate.securityContext)
# is merged over it field by field.
POD_SECURITY_CONTEXT: Json = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    # The volume is made group-writable for the member; only when its root does not already
    # match, so a large data dir is not chowned again at every start.
    "fsGroup": RUN_AS,
    "fsGroupChangePolicy": "OnRootMismatch",
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The container's own: what only a container can say (no privilege escalation, no capabilities,
# a read-only root), and the identity and seccomp profile again, as the restricted Pod Security
# Standard wants them on every container.
CONTAINER_SECURITY_CONTEXT: Json = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# Container fields that repeat a pod-level one: a container's value wins over the pod's, so one
# the user sets on the pod must not be overridden by the operator's on the container.
_SHARED_SECURITY_FIELDS = ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile")


def pod_security_context(cluster: EtcdCluster) -> Json:
    """The operator's pod security context with the user's fields over it (a user's field
    replaces the operator's whole: a seccompProfile is not merged key by key)."""
    user = cluster.spec.podTemplate.securityContext or {}
    return {**copy.deepcopy(POD_SECURITY_CONTEXT), **copy.deepcopy(user)}


def container_security_context(cluster: EtcdCluster) -> Json:
    """The container's security context, less the fields the user set on the pod."""
    user = cluster.spec.podTemplate.securityContext or {}
    return {
        key: copy.deepcopy(value)
        for key, value in CONTAINER_SECURITY_CONTEXT.items()
        if not (key in _SHARED_SECURITY_FIELDS and key in user)
    }


def container(cluster: EtcdCluster, settings: OperatorSettings) -> Json:
    spec: Json = {
        "name": CONTAINER_NAME,
        "image": flags.image(cluster, settings),
        "imagePullPolicy": settings.image_pull_policy,
        "command": flags.command(cluster),
        "args": flags.args(cluster, settings),
        "env": env(cluster),
        "ports": [
            {"name": "client", "containerPort": naming.CLIENT_PORT, "protocol": "TCP"},
            {"name": "peer", "containerPort": naming.PEER_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": naming.METRICS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": readiness_probe(),
        # The end of the log of a member that exits with an error (etcd's panic on a lost raft
        # log, the refusal of a wiped member) becomes its termination message: the evidence the
        # operator replaces a member on.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # No livenessProbe, on purpose: /health fails on every member at once when the cluster
        # loses its leader or raises an alarm, and restarting members then turns a blip into an
        # outage (improbable-eng's FAQ). A hung process is left to the operator's health checks.
        "securityContext": container_security_context(cluster),
        "volumeMounts": [
            {"name": naming.VOLUME_NAME, "mountPath": naming.DATA_MOUNT},
            # The root filesystem is read-only; the runtime (Python's tempfile in pyetcd) still
            # needs a scratch directory.
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
            *tls.member_mounts(cluster),
        ],
    }
    resources = cluster.spec.podTemplate.resources
    if resources:
        spec["resources"] = copy.deepcopy(resources)
    return spec


def pod_spec(
    cluster: EtcdCluster, settings: OperatorSettings, restore: RestoredFrom | None = None
) -> Json:
    template = cluster.spec.podTemplate
    member = container(cluster, settings)
    spec: Json = {
        "containers": [member],
        "volumes": [
            {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}},
            *tls.volumes(cluster),
        ],
        "affinity": affinity(cluster, settings),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pod_security_context(cluster),
        # Members never call the Kubernetes API.
        "automountServiceAccountToken": False,
        # Service links inject <SERVICE>_PORT variables; for a cluster named "etcd" they would be
        # ETCD_CLIENT_PORT & co., which etcd reads as (unknown) configuration.
        "enableServiceLinks": False,
    }
    if template.nodeSelector:
        spec["nodeSelector"] = dict(template.nodeSelector)
    if template.tolerations:
        spec["tolerations"] = [
            t.model_dump(mode="json", exclude_none=True) for t in template.tolerations
        ]
    if template.topologySpreadConstraints:
        spec["topologySpreadConstraints"] = copy.deepcopy(template.topologySpreadConstraints)
    if template.imagePullSecrets:
        spec["imagePullSecrets"] = [{"name": secret.name} for secret in template.imagePullSecrets]
    if template.priorityClassName:
        spec["priorityClassName"] = template.priorityClassName
    shared: Json = {
        "member_env": member["env"],
        "mounts": member["volumeMounts"],
        "security_context": member["securityContext"],
    }
    # member-init first: a recovery's surgery or the lost-data refusal, before anything else
    # touches the data dir.
    spec["initContainers"] = [member_init_container(cluster, settings, **shared)]
    if restore is not None:
        spec["initContainers"].append(restore_container(cluster, settings, restore, **shared))
        spec["volumes"] += restore_volumes(restore)
    return spec


def volume_claim_template(cluster: EtcdCluster) -> Json:
    storage = cluster.spec.storage
    spec: Json = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storageClassName is not None:
        spec["storageClassName"] = storage.storageClassName
    return {
        "metadata": {
            "name": naming.VOLUME_NAME,
            "labels": naming.common_labels(cluster.name, naming.COMPONENT_DATA),
        },
        "spec": spec,
    }


def statefulset(
    cluster: EtcdCluster,
    settings: OperatorSettings,
    *,
    replicas: int | None = None,
    restore: RestoredFrom | None = None,
) -> Json:
    """The members' StatefulSet; ``replicas`` overrides ``spec.replicas`` while scaling step by
    step (the operator changes the membership one member at a time); ``restore`` is the backup
    a new cluster's founding members start from."""
    name = naming.statefulset_name(cluster.name)
    template_metadata: Json = {"labels": pod_labels(cluster)}
    if cluster.spec.podTemplate.annotations:
        template_metadata["annotations"] = dict(cluster.spec.podTemplate.annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": object_meta(cluster, name, naming.COMPONENT_MEMBER),
        "spec": {
            "replicas": cluster.spec.replicas if replicas is None else replicas,
            "selector": {"matchLabels": naming.selector_labels(cluster.name)},
            "serviceName": naming.peer_service_name(cluster.name),
            # A new cluster's members must all start before any can become ready (no quorum
            # alone); OrderedReady would wait forever for member 0 to be ready first.
            "podManagementPolicy": "Parallel",
            # The operator restarts the members itself (reconcile/rollout.py): the controller's
            # RollingUpdate goes by ordinal and pod readiness alone, so it would restart the
            # leader whenever its ordinal comes up and a second member while the first is Ready
            # but still catching up. With OnDelete a changed template waits until the operator
            # deletes each pod: followers first, the leader last after a leadership transfer,
            # each only while etcd reports every member healthy and caught up. A partition would
            # still fix the order by ordinal.
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": cluster.spec.storage.volumeRetention,
                # Scaling in is a membership change the operator makes deliberately, and a replica
                # count going down must not by itself destroy a member's data. The operator must
                # then delete the removed member's claim: a later scale-out into that ordinal
                # would otherwise start on the data dir of a member etcd has removed.
                "whenScaled": "Retain",
            },
            "template": {
                "metadata": template_metadata,
                "spec": pod_spec(cluster, settings, restore),
            },
            "volumeClaimTemplates": [volume_claim_template(cluster)],
        },
    }
