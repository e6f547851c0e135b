"""Gather the observed state of one EtcdCluster: its children and pods from Kubernetes, and the
etcd view from ``etcd_operator.members`` (already in ``reconcile.observed`` types).

The translation functions are pure (API object dicts in, dataclasses out) and tested as such;
only ``observe`` does I/O. The children are kept whole, as the API server returned them, so that
the children step can see any drift from what we applied. The volume claims are listed by the
pods' selector labels (the claim template carries them), so ``plan`` can delete the claims of
removed members. etcd is
asked only once the StatefulSet exists: before that there is no member to reach, and waiting
for a deadline on every creation would only slow it down. The etcd client comes from a
``Connect`` function (``connect_etcd``, or an in-memory etcd in tests); the same connection
type serves the membership changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from etcd_operator.api.etcdbackup import KIND as BACKUP_KIND
from etcd_operator.api.etcdbackup import EtcdBackup
from etcd_operator.api.etcddefrag import KIND as DEFRAG_KIND
from etcd_operator.api.etcddefrag import EtcdDefrag
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import parse_rfc3339
from etcd_operator.api.v1alpha1 import API_VERSION, EtcdCluster
from etcd_operator.components import auth, naming, pki, tls
from etcd_operator.components.bootstrap import (
    KEY_FORCE_NEW_CLUSTER,
    KEY_INITIAL_CLUSTER,
    KEY_INITIAL_CLUSTER_STATE,
    KEY_RESTORE_FOR_RECOVERY,
    BootstrapState,
)
from etcd_operator.components.children import optional
from etcd_operator.components.memberinit import CONTAINER_NAME as MEMBER_INIT_CONTAINER
from etcd_operator.components.restore import CONTAINER_NAME as RESTORE_CONTAINER
from etcd_operator.components.statefulset import CONTAINER_NAME as MEMBER_CONTAINER
from etcd_operator.members import EtcdConnection, connect_etcd, observe_auth
from etcd_operator.members import observe as observe_etcd
from etcd_operator.reconcile.backup_records import BackupRecord, backup_record, newest
from etcd_operator.reconcile.children import desired_children
from etcd_operator.reconcile.observed import (
    AuthView,
    ChildKey,
    EtcdView,
    Observed,
    PodState,
    RootSecretFacts,
    StatefulSetState,
)
from etcd_operator.reconcile.restore import newest_before
from etcd_operator.reconcile.status import selector
from etcd_operator.runtime.kube import KubeApi

log = logging.getLogger(__name__)

Json = Mapping[str, Any]

__all__ = ["Connect", "EtcdConnection", "connect_etcd", "observe"]


class Connect(Protocol):
    """(endpoints, timeout, client certificate, root's credentials) -> an etcd client;
    ``connect_etcd`` but in tests."""

    def __call__(
        self,
        endpoints: Sequence[str],
        timeout: float,
        tls: tls.ClientCredentials | None = None,
        auth: auth.RootCredentials | None = None,
        /,
    ) -> EtcdConnection: ...


def unschedulable(pod: Json) -> str | None:
    """The scheduler's message when it found no node for the pod: a Pending pod, not being
    deleted, whose ``PodScheduled`` condition is False with reason ``Unschedulable``."""
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if (status.get("phase") or "Pending") != "Pending" or (pod.get("spec") or {}).get("nodeName"):
        return None
    for c in status.get("conditions") or []:
        if (c.get("type"), c.get("status"), c.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            return str(c.get("message") or "no node fits the pod")
    return None


def init_failure(pod: Json, container: str) -> str | None:
    """The termination message of the pod's init container ``container`` when its last run
    failed (now, or before the back-off it waits in), else ``None``."""
    for c in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if c.get("name") != container:
            continue
        for state in (c.get("state") or {}, c.get("lastState") or {}):
            terminated = state.get("terminated")
            if terminated and terminated.get("exitCode"):
                message = str(terminated.get("message") or "").strip()
                return message or f"exit code {terminated['exitCode']}"
            if "running" in state:
                return None
    return None


def restore_failure(pod: Json) -> str | None:
    """The last line of the ``restore`` init container's failure, else ``None``."""
    message = init_failure(pod, RESTORE_CONTAINER)
    return message.splitlines()[-1] if message else None


def member_exit_message(pod: Json) -> str | None:
    """The termination message of the member container's last run (the current state when it is
    terminated, else the last state) when that exited non-zero, else ``None``."""
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        if c.get("name") != MEMBER_CONTAINER:
            continue
        for state in (c.get("state") or {}, c.get("lastState") or {}):
            terminated = state.get("terminated")
            if terminated:
                if not terminated.get("exitCode"):
                    return None
                message = str(terminated.get("message") or "").strip()
                return message or f"exit code {terminated['exitCode']}"
    return None


def not_ready_since(node: Json | None) -> datetime | None:
    """Since when ``node`` has not been Ready (its Ready condition False or Unknown); ``None``
    when it is Ready or unknown to us."""
    if node is None:
        return None
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            if c.get("status") == "True":
                return None
            return parse_rfc3339(c.get("lastTransitionTime"))
    return None


def pinned_node(volume: Json | None) -> str | None:
    """The one node a PersistentVolume is bound to by its required node affinity (a local
    volume: ``local``, ``hostPath``, or a CSI driver that places volumes on nodes), else
    ``None``: a zone affinity or none at all is a network volume that can follow its pod."""
    if volume is None:
        return None
    required = (((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required")) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for expr in term.get("matchExpressions") or []:
            values = expr.get("values") or []
            key = str(expr.get("key") or "")
            one_node = "hostname" in key or key.endswith(("/node", ".node"))
            if expr.get("operator") == "In" and len(values) == 1 and one_node:
                return str(values[0])
    return None


async def node_facts(
    kube: KubeApi, pods: Sequence[Json], pvcs: Sequence[Json]
) -> dict[str, tuple[datetime | None, str | None]]:
    """For each member pod that is not Ready on a node: since when its node is not Ready, and
    the node its data volume is pinned to. Ready pods cost no request."""
    claims = {str(c["metadata"]["name"]): c for c in pvcs}
    facts: dict[str, tuple[datetime | None, str | None]] = {}
    nodes: dict[str, datetime | None] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or pod_ready(pod):
            continue
        if node not in nodes:
            nodes[node] = not_ready_since(await kube.get("v1", "Node", "", node))
        name = str(pod["metadata"]["name"])
        claim = claims.get(f"{naming.VOLUME_NAME}-{name}") or {}
        volume_name = (claim.get("spec") or {}).get("volumeName")
        volume = await kube.get("v1", "PersistentVolume", "", volume_name) if volume_name else None
        facts[name] = (nodes[node], pinned_node(volume))
    return facts


# The label the StatefulSet controller puts on each pod: the revision it was made from.
REVISION_LABEL = "controller-revision-hash"


def ready_since(pod: Json) -> datetime | None:
    """When the pod's Ready condition last turned True; ``None`` when it is not Ready."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return parse_rfc3339(c.get("lastTransitionTime"))
    return None


def pod_ready(pod: Json) -> bool:
    """The pod's Ready condition is True."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def pod_state(pod: Json) -> PodState:
    status = pod.get("status") or {}
    ready = pod_ready(pod)
    return PodState(
        name=str(pod["metadata"]["name"]),
        ready=ready,
        phase=str(status.get("phase") or "Pending"),
        restore_failed=restore_failure(pod),
        exit_message=member_exit_message(pod),
        init_failed=init_failure(pod, MEMBER_INIT_CONTAINER),
        terminating=bool((pod.get("metadata") or {}).get("deletionTimestamp")),
        node=(pod.get("spec") or {}).get("nodeName"),
        unschedulable=unschedulable(pod),
        revision=((pod.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL),
        ready_since=ready_since(pod),
    )


def statefulset_state(sts: Json) -> StatefulSetState:
    status = sts.get("status") or {}
    return StatefulSetState(
        generation=int(sts["metadata"].get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        replicas=int((sts.get("spec") or {}).get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        current_revision=status.get("currentRevision"),
        update_revision=status.get("updateRevision"),
    )


def member_endpoints(desired: EtcdCluster, settings: OperatorSettings) -> list[str]:
    """Each desired member's client URL, then the client Service as a last resort."""
    # While scaling in, the members beyond spec.replicas are still reachable through the
    # Service; the lower ordinals answer first anyway.
    domain, secure = settings.cluster_domain, tls.client_secure(desired)
    urls = [
        naming.client_url(desired.name, desired.namespace, i, domain, secure=secure)
        for i in range(desired.spec.replicas)
    ]
    service = naming.client_service_url(desired.name, desired.namespace, domain, secure=secure)
    return [*urls, service]


def membership_endpoints(
    desired: EtcdCluster, settings: OperatorSettings, observed: Observed
) -> list[str]:
    """Where to send membership changes: the client URLs etcd lists for its started members
    (these answer), then the usual endpoints."""
    listed = (
        [m.client_urls[0] for m in observed.etcd.members if m.client_urls] if observed.etcd else []
    )
    rest = [e for e in member_endpoints(desired, settings) if e not in listed]
    return [*listed, *rest]


def assemble(
    children: Mapping[ChildKey, Json | None],
    pods: Iterable[Json],
    etcd: EtcdView | None,
    bootstrap_key: ChildKey,
    pvcs: Iterable[Json] = (),
    *,
    nodes: Mapping[str, tuple[datetime | None, str | None]] | None = None,
) -> Observed:
    """Observed state from the live objects (``None`` for an absent child), the member pods,
    the etcd view and the cluster's volume claims."""
    existing = {key: obj for key, obj in children.items() if obj is not None}
    configmap = existing.get(bootstrap_key)
    data = (configmap.get("data") or {}) if configmap else {}
    state = data.get(KEY_INITIAL_CLUSTER_STATE)
    listed = [m for m in str(data.get(KEY_INITIAL_CLUSTER) or "").split(",") if m]
    sts = next((obj for key, obj in existing.items() if key.kind == "StatefulSet"), None)
    return Observed(
        children=existing,
        pods=tuple(sorted((_with_node(pod_state(p), nodes) for p in pods), key=lambda p: p.name)),
        bootstrap_state=str(state) if state is not None else None,
        rendered_members=len(listed) if listed else None,
        statefulset=statefulset_state(sts) if sts is not None else None,
        etcd=etcd,
        pvcs=tuple(sorted(str(p["metadata"]["name"]) for p in pvcs)),
        force_new_cluster=str(forced) if (forced := data.get(KEY_FORCE_NEW_CLUSTER)) else None,
        restore_for_recovery=str(token) if (token := data.get(KEY_RESTORE_FOR_RECOVERY)) else None,
    )


def _with_node(
    pod: PodState, nodes: Mapping[str, tuple[datetime | None, str | None]] | None
) -> PodState:
    if not nodes or pod.name not in nodes:
        return pod
    since, volume_node = nodes[pod.name]
    return dataclasses.replace(pod, node_lost_since=since, volume_node=volume_node)


async def observe(
    desired: EtcdCluster,
    kube: KubeApi,
    settings: OperatorSettings,
    connect: Connect = connect_etcd,
    *,
    ask_etcd: bool = True,
    now: datetime | None = None,
) -> Observed:
    """One look at the world: the children, member pods and volume claims (concurrently), then
    etcd, unless ``ask_etcd`` is False (the etcd view is then ``None``, as if no member
    answered)."""
    ns = desired.namespace
    manifests = desired_children(desired, settings, BootstrapState.NEW)  # only kinds and names
    wanted = [(m["apiVersion"], m["kind"], m["metadata"]["name"]) for m in manifests]
    # Children the spec may have stopped asking for: looked up too, so the pass can delete them.
    lookups = [*wanted, *(o for o in optional(desired) if o not in wanted)]
    live = await asyncio.gather(*(kube.get(v, kind, ns, name) for v, kind, name in lookups))
    children = {
        ChildKey(kind, name): obj for (_, kind, name), obj in zip(lookups, live, strict=True)
    }
    pods, pvcs = await asyncio.gather(
        kube.list("v1", "Pod", ns, selector(desired.name)),
        kube.list("v1", "PersistentVolumeClaim", ns, selector(desired.name)),
    )
    certificates, credentials = await tls_secrets(desired, kube, now)
    root_secret, root_credentials = await root_secret_facts(desired, kube)
    etcd: EtcdView | None = None
    auth_view: AuthView | None = None
    sts_key = ChildKey("StatefulSet", naming.statefulset_name(desired.name))
    # With client TLS and no client certificate yet, no member would let the operator in.
    reachable = credentials is not None or not tls.client_secure(desired)
    if ask_etcd and reachable and children.get(sts_key) is not None:
        client = connect(
            member_endpoints(desired, settings),
            settings.etcd_timeout_seconds,
            credentials,
            root_credentials,
        )
        try:
            # etcd's auth, with spec.auth only: asked of every cluster on every pass, it slowed
            # the passes of a rollout with a member down (e2e test_upgrades, etcd 3.4, whose
            # Authenticate waits for a linearizable read). Both at once: no added wait.
            etcd, auth_view = await asyncio.gather(
                observe_etcd(client, settings.etcd_timeout_seconds),
                _observe_auth(client, root_credentials, desired, settings),
            )
        finally:
            await client.close()
    bootstrap_key = ChildKey("ConfigMap", naming.bootstrap_configmap_name(desired.name))
    nodes = await node_facts(kube, pods, pvcs)
    observed = assemble(children, pods, etcd, bootstrap_key, pvcs, nodes=nodes)
    backups: tuple[BackupRecord, ...] = ()
    if desired.spec.backup is not None:
        backups = await backup_records(kube, desired)
    requests = await defrag_requests(desired, kube)
    restore_backup = await _restore_backup(desired, kube)
    latest = None
    if etcd is None and backups:
        latest = await _latest_backup(desired, kube, backups)
    return dataclasses.replace(
        observed,
        backups=backups,
        now=now,
        restore_backup=restore_backup,
        latest_backup=latest,
        defrag_requests=requests,
        certificates=certificates,
        credentials=credentials,
        auth=auth_view,
        root_secret=root_secret,
        root_credentials=root_credentials,
    )


async def _observe_auth(
    client: EtcdConnection,
    root: auth.RootCredentials | None,
    desired: EtcdCluster,
    settings: OperatorSettings,
) -> AuthView | None:
    if desired.spec.auth is None:
        return None
    try:
        return await asyncio.wait_for(
            observe_auth(client, root, details=True),
            settings.etcd_timeout_seconds,
        )
    except TimeoutError:
        return None


async def root_secret_facts(
    desired: EtcdCluster, kube: KubeApi
) -> tuple[RootSecretFacts | None, auth.RootCredentials | None]:
    """The root Secret of ``spec.auth`` as found, and root's credentials from it (``None``
    without ``spec.auth``, or when the Secret does not hold them)."""
    secret = auth.root_secret(desired)
    if secret is None:
        return None, None
    raw = await kube.get("v1", "Secret", desired.namespace, secret.name)
    if raw is None:
        return RootSecretFacts(secret.name, exists=False), None
    found, problem = auth.read_credentials(raw)
    return RootSecretFacts(secret.name, exists=True, problem=problem), found


async def tls_secrets(
    desired: EtcdCluster, kube: KubeApi, now: datetime | None
) -> tuple[dict[str, pki.CertificateFacts], tls.ClientCredentials | None]:
    """The facts of the cluster's TLS Secrets (by name; one not found is left out), and the
    client certificate the operator connects with (``None`` without client TLS, or when its
    Secret does not hold a usable one)."""
    found: dict[str, pki.CertificateFacts] = {}
    credentials = None
    for secret in tls.secrets(desired):
        raw = await kube.get("v1", "Secret", desired.namespace, secret.name)
        if raw is None:
            continue
        data = tls.secret_data(raw)
        facts = found[secret.name] = pki.inspect(data, now)
        if secret.role == tls.Role.CLIENT and facts.usable:
            credentials = tls.credentials(data)
    return found, credentials


async def defrag_requests(desired: EtcdCluster, kube: KubeApi) -> tuple[EtcdDefrag, ...]:
    """The EtcdDefrags that name the cluster, oldest first; one being deleted, or one the
    model cannot read (the CRD's schema admits none), is left out."""
    listed = await kube.list(API_VERSION, DEFRAG_KIND, desired.namespace, "")
    found = []
    for raw in listed:
        meta = raw.get("metadata") or {}
        if (raw.get("spec") or {}).get("clusterName") != desired.name:
            continue
        if meta.get("deletionTimestamp"):
            continue
        try:
            found.append(EtcdDefrag.model_validate(without_kopf(raw)))
        except ValueError:
            name = meta.get("name")
            log.warning("EtcdDefrag %s/%s is unreadable: skipped", desired.namespace, name)
    return tuple(sorted(found, key=lambda r: (str(r.metadata.get("creationTimestamp")), r.name)))


async def _latest_backup(
    desired: EtcdCluster, kube: KubeApi, backups: Sequence[BackupRecord]
) -> EtcdBackup | None:
    """The newest Succeeded EtcdBackup of the cluster (what a rebuild from a backup restores)."""
    latest = newest(b for b in backups if b.succeeded)
    if latest is None:
        return None
    return await _backup_object(kube, desired.namespace, latest.name)


async def _restore_backup(desired: EtcdCluster, kube: KubeApi) -> EtcdBackup | None:
    """The EtcdBackup a cluster is to be created from, while that is not resolved yet: the
    named one, or with a point in time alone the newest of the cluster's name before it."""
    bootstrap = desired.spec.bootstrap
    recorded = desired.status.restoredFrom if desired.status is not None else None
    if bootstrap is None or recorded is not None:
        return None
    source = bootstrap.backup
    name = source.name
    if name is None and source.location is None and source.pointInTime is not None:
        picked = newest_before(await backup_records(kube, desired), source.pointInTime)
        name = picked.name if picked is not None else None
    return None if name is None else await _backup_object(kube, desired.namespace, name)


async def _backup_object(kube: KubeApi, namespace: str, name: str) -> EtcdBackup | None:
    raw = await kube.get(API_VERSION, BACKUP_KIND, namespace, name)
    if raw is None:
        return None
    try:
        return EtcdBackup.model_validate(without_kopf(raw))
    except ValueError:
        return None


def without_kopf(raw: Json) -> Json:
    """The object without what kopf and the API server add that the model does not type."""
    status = dict(raw.get("status") or {})
    status.pop("kopf", None)
    return {**raw, "status": status or None}


async def backup_records(kube: KubeApi, desired: EtcdCluster) -> tuple[BackupRecord, ...]:
    """The cluster's EtcdBackups, as the decisions see them."""
    listed = await kube.list(API_VERSION, BACKUP_KIND, desired.namespace, "")
    return tuple(
        backup_record(b)
        for b in listed
        if (b.get("spec") or {}).get("clusterName") == desired.name
        # One being deleted (its stored copy first) is gone for every decision.
        and not (b.get("metadata") or {}).get("deletionTimestamp")
    )
