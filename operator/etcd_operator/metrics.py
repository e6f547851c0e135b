"""The operator's own Prometheus metrics, on a registry of their own, served over HTTP.

Reconcile passes count by result and time themselves; errors count by a short reason; the
periodic status refresh counts its rounds and the clusters it could not refresh; each
cluster's size, health and availability are gauges labelled by namespace and cluster, removed
when the cluster is deleted so that dashboards do not show clusters that no longer exist.

The chart's alerts read the per-cluster gauges (charts/etcd-operator/templates/
prometheusrule.yaml): how many passes of a cluster failed in a row, and the current status and
reason of each of its conditions, which is how a stuck rollout or replacement shows (the
operator itself decides when a rollout is stuck, against the cluster's own deadline).

The keyspace gauges (``spec.analysis``) say what the last analysis of the cluster's newest backup
found: live keys, leases holding no key, when, and the stored bytes of its top prefixes, one
series per prefix for at most ten prefixes per cluster; a prefix that drops out of the top loses
its series, so the label values stay a small set that changes slowly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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
KEYSPACE_PREFIX_BYTES = Gauge(
    "etcd_operator_keyspace_prefix_bytes",
    "Bytes the keys under a prefix store (every revision kept), for the top prefixes of the "
    "last keyspace analysis (spec.analysis.top, ten at most).",
    [*_CLUSTER_LABELS, "prefix"],
    registry=REGISTRY,
)
KEYSPACE_LIVE_KEYS = Gauge(
    "etcd_operator_keyspace_live_keys",
    "Live keys in the newest backup, as its last keyspace analysis counted them.",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
KEYSPACE_LEASES_WITHOUT_KEYS = Gauge(
    "etcd_operator_keyspace_leases_without_keys",
    "Leases that hold no key, in the newest backup's last keyspace analysis.",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
KEYSPACE_ANALYSIS_TIME = Gauge(
    "etcd_operator_keyspace_analysis_timestamp_seconds",
    "Unix time of the last successful keyspace analysis.",
    _CLUSTER_LABELS,
    registry=REGISTRY,
)
KEYSPACE_WRITE_RATE = Gauge(
    "etcd_operator_keyspace_write_rate",
    "Writes (puts and deletes) per second under a prefix in the last window of the live "
    "cluster's sampled watch (spec.analysis.writes), for its top prefixes (five at most).",
    [*_CLUSTER_LABELS, "prefix"],
    registry=REGISTRY,
)
# The prefixes each cluster has write-rate series for.
_write_rates: dict[tuple[str, str], frozenset[str]] = {}
# Ten prefix series per cluster at most, whatever spec.analysis.top asks of the report.
KEYSPACE_PREFIX_SERIES = 10
# The prefixes each cluster has series for, and the analysis they came from (prometheus_client
# cannot list a gauge's children).
_keyspace: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}
_CLUSTER_GAUGES = (
    RECONCILE_FAILURES,
    MEMBERS_REPLACED,
    CLUSTER_MEMBERS,
    CLUSTER_HEALTHY_MEMBERS,
    CLUSTER_AVAILABLE,
    BACKUP_SIZE,
    BACKUP_LAST_SUCCESS,
    BACKUP_READY,
    KEYSPACE_LIVE_KEYS,
    KEYSPACE_LEASES_WITHOUT_KEYS,
    KEYSPACE_ANALYSIS_TIME,
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


@dataclass(frozen=True)
class KeyspaceGauges:
    """What the keyspace gauges of one cluster show: one analysis."""

    analyzed_at: float  # Unix time
    live_keys: int
    leases_without_keys: int
    prefixes: Sequence[tuple[str, int]]  # (prefix, stored bytes), the biggest first


def record_keyspace(namespace: str, cluster: str, analysis: KeyspaceGauges | None) -> None:
    """The cluster's keyspace gauges: those of ``analysis`` (prefix series beyond the first
    ``KEYSPACE_PREFIX_SERIES`` are not made, those of prefixes no longer in it are removed),
    or none at all (``None``: no spec.analysis, or no analysis yet)."""
    key = (namespace, cluster)
    _, before = _keyspace.pop(key, (0.0, frozenset()))
    if analysis is None:
        for gauge in (KEYSPACE_LIVE_KEYS, KEYSPACE_LEASES_WITHOUT_KEYS, KEYSPACE_ANALYSIS_TIME):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, cluster)
        now: frozenset[str] = frozenset()
    else:
        KEYSPACE_LIVE_KEYS.labels(namespace, cluster).set(analysis.live_keys)
        KEYSPACE_LEASES_WITHOUT_KEYS.labels(namespace, cluster).set(analysis.leases_without_keys)
        KEYSPACE_ANALYSIS_TIME.labels(namespace, cluster).set(analysis.analyzed_at)
        shown = dict(list(analysis.prefixes)[:KEYSPACE_PREFIX_SERIES])
        for prefix, stored in shown.items():
            KEYSPACE_PREFIX_BYTES.labels(namespace, cluster, prefix).set(stored)
        now = frozenset(shown)
        _keyspace[key] = (analysis.analyzed_at, now)
    for gone in before - now:
        with contextlib.suppress(KeyError):
            KEYSPACE_PREFIX_BYTES.remove(namespace, cluster, gone)


def record_write_rates(namespace: str, cluster: str, rates: Mapping[str, float]) -> None:
    """The cluster's write-rate series: one per prefix of ``rates`` (those of prefixes no
    longer in it are removed; empty: none at all)."""
    key = (namespace, cluster)
    before = _write_rates.pop(key, frozenset())
    for prefix, rate in rates.items():
        KEYSPACE_WRITE_RATE.labels(namespace, cluster, prefix).set(rate)
    if rates:
        _write_rates[key] = frozenset(rates)
    for gone in before - frozenset(rates):
        with contextlib.suppress(KeyError):
            KEYSPACE_WRITE_RATE.remove(namespace, cluster, gone)


def keyspace_recorded_at(namespace: str, cluster: str) -> float | None:
    """When the analysis the cluster's keyspace gauges show was made; ``None``: no gauges."""
    found = _keyspace.get((namespace, cluster))
    return found[0] if found is not None else None


def forget_cluster(namespace: str, cluster: str) -> None:
    for gauge in _CLUSTER_GAUGES:
        # KeyError: never recorded (deleted before its first pass).
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, cluster)
    record_conditions(namespace, cluster, ())
    _conditions.pop((namespace, cluster), None)
    record_keyspace(namespace, cluster, None)
    record_write_rates(namespace, cluster, {})


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
