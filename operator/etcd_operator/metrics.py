"""The operator's own Prometheus metrics, on a registry of their own, served over HTTP.

Reconcile passes count by result and time themselves; errors count by a short reason; the
periodic status refresh counts its rounds and the clusters it could not refresh; each
cluster's size, health and availability are gauges labelled by namespace and cluster, removed
when the cluster is deleted so that dashboards do not show clusters that no longer exist.

The chart's alerts read the per-cluster gauges (charts/etcd-operator/templates/
prometheusrule.yaml): how many passes of a cluster failed in a row, and the current status and
reason of each of its conditions, which is how a stuck rollout or replacement shows (the
operator itself decides when a rollout is stuck, against the cluster's own deadline).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()

RECONCILES = Counter(
    "etcd_operator_reconciles_total",
    "Reconcile passes, by result (success or error).",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "etcd_operator_reconcile_errors_total",
    "Failed reconcile passes, by reason.",
    ["reason"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "etcd_operator_reconcile_duration_seconds",
    "Duration of one reconcile pass (observe, plan, execute).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
STATUS_REFRESH_FAILURES = Counter(
    "etcd_operator_status_refresh_failures_total",
    "Periodic status refreshes of one cluster that failed or ran out of time.",
    registry=REGISTRY,
)
STATUS_REFRESH_ROUNDS = Counter(
    "etcd_operator_status_refresh_rounds_total",
    "Completed rounds of the periodic status refresh (every cluster once).",
    registry=REGISTRY,
)
_CLUSTER_LABELS = ["namespace", "cluster"]
CLUSTER_MEMBERS = Gauge(
    "etcd_operator_cluster_members",
    "Members in etcd's member list (pods when etcd is unreachable).",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
CLUSTER_HEALTHY_MEMBERS = Gauge(
    "etcd_operator_cluster_healthy_members",
    "Members that answered a linearizable read.",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
CLUSTER_AVAILABLE = Gauge(
    "etcd_operator_cluster_available",
    "1 when the cluster has a leader and a healthy quorum (the Available condition), else 0.",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
BACKUP_DURATION = Histogram(
    "etcd_operator_backup_duration_seconds",
    "Duration of successful backups, from the snapshot's first byte to the completed object.",
    _CLUSTER_LABELS,
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600),
    registry=REGISTRY,
)
BACKUP_SIZE = Gauge(
    "etcd_operator_backup_size_bytes",
    "Stored size of the last successful backup (after compression and encryption).",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
BACKUP_LAST_SUCCESS = Gauge(
    "etcd_operator_backup_last_success_timestamp_seconds",
    "Unix time of the last successful backup: alert when it is too old.",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
BACKUP_FAILURES = Counter(
    "etcd_operator_backup_failures_total",
    "Backups that ended Failed (not those Rejected before they started).",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
BACKUP_READY = Gauge(
    "etcd_operator_cluster_backup_ready",
    "1 when the BackupReady condition is True, 0 when False or Unknown; absent without "
    "spec.backup.",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
MEMBERS_REPLACED = Gauge(
    "etcd_operator_cluster_members_replaced",
    "How many times a member that lost its data was replaced (status.membersReplaced); "
    "alert on changes().",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
RECONCILE_FAILURES = Gauge(
    "etcd_operator_cluster_reconcile_failures",
    "Reconcile passes of the cluster that failed in a row (the spec invalid included); 0 once "
    "a pass completes.",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
# One series per condition type of the cluster's status: the current status and reason. The
# reasons are the operator's own constants (a CamelCase word each, never a message), so the
# label values are a small fixed set; a cluster has at most six condition types.
CONDITION = Gauge(
    "etcd_operator_cluster_condition",
    "1 for each condition in the cluster's status, labelled by its current status and reason; "
    "the series of an earlier status or reason is removed.",
    [*_CLUSTER_LABELS, "condition", "status", "reason"],
    registry=REGISTRY,
)
# The (condition, status, reason) series each cluster has now, so that the ones it no longer
# has can be removed: prometheus_client cannot list a gauge's children.
_conditions: dict[tuple[str, str], frozenset[tuple[str, str, str]]] = {}
_CLUSTER_GAUGES = (
    RECONCILE_FAILURES,
    MEMBERS_REPLACED,
    CLUSTER_MEMBERS,
    CLUSTER_HEALTHY_MEMBERS,
    CLUSTER_AVAILABLE,
    BACKUP_SIZE,
    BACKUP_LAST_SUCCESS,
    BACKUP_READY,
)


def record_cluster(
    namespace: str,
    cluster: str,
    *,
    members: int,
    healthy: int,
    available: bool,
    backup_ready: bool | None = None,
    last_backup: float | None = None,
    members_replaced: int = 0,
) -> None:
    """A cluster's gauges from the status a pass wrote. The backup gauges come from the status
    too (not only from the backups this process ran), so they survive an operator restart."""
    CLUSTER_MEMBERS.labels(namespace, cluster).set(members)
    CLUSTER_HEALTHY_MEMBERS.labels(namespace, cluster).set(healthy)
    CLUSTER_AVAILABLE.labels(namespace, cluster).set(1 if available else 0)
    MEMBERS_REPLACED.labels(namespace, cluster).set(members_replaced)
    if backup_ready is None:
        # No spec.backup (no BackupReady condition): the backup alerts are about scheduled
        # backups, and the timestamp a one-off EtcdBackup left (record_backup) would otherwise
        # age into EtcdBackupTooOld.
        for gauge in (BACKUP_READY, BACKUP_LAST_SUCCESS):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, cluster)
        return
    BACKUP_READY.labels(namespace, cluster).set(1 if backup_ready else 0)
    if last_backup is not None:
        BACKUP_LAST_SUCCESS.labels(namespace, cluster).set(last_backup)


def record_conditions(
    namespace: str, cluster: str, conditions: Iterable[tuple[str, str, str]]
) -> None:
    """The cluster's conditions as ``(type, status, reason)`` from the status the operator
    wrote; the series of a status or reason it no longer has go."""
    current = frozenset(conditions)
    for condition, status, reason in current:
        CONDITION.labels(namespace, cluster, condition, status, reason).set(1)
    for gone in _conditions.get((namespace, cluster), frozenset()) - current:
        with contextlib.suppress(KeyError):
            CONDITION.remove(namespace, cluster, *gone)
    _conditions[(namespace, cluster)] = current


def record_pass(namespace: str, cluster: str, *, failed: bool) -> None:
    """A reconcile pass of the cluster ended: count a failure, or end the streak."""
    if failed:
        RECONCILE_FAILURES.labels(namespace, cluster).inc()
    else:
        RECONCILE_FAILURES.labels(namespace, cluster).set(0)


def record_backup(namespace: str, cluster: str, seconds: float, size: int) -> None:
    BACKUP_DURATION.labels(namespace, cluster).observe(seconds)
    BACKUP_SIZE.labels(namespace, cluster).set(size)
    BACKUP_LAST_SUCCESS.labels(namespace, cluster).set_to_current_time()


def forget_cluster(namespace: str, cluster: str) -> None:
    for gauge in _CLUSTER_GAUGES:
        # KeyError: never recorded (deleted before its first pass).
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, cluster)
    record_conditions(namespace, cluster, ())
    _conditions.pop((namespace, cluster), None)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
