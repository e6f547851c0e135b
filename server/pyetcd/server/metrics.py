"""etcd's Prometheus metrics, by etcd's names, on a registry of this member's own.

Dashboards and alerts written for etcd (the etcd mixin) read these names; keeping them identical
is what lets users point their existing monitoring at pyetcd.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_DISK_BUCKETS = tuple(0.001 * 2**i for i in range(14))


class ServerMetrics:
    """The metric objects one member updates; exposed on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.has_leader = Gauge(
            "etcd_server_has_leader", "Whether or not a leader exists.", registry=r
        )
        self.is_leader = Gauge(
            "etcd_server_is_leader", "Whether or not this member is a leader.", registry=r
        )
        self.is_learner = Gauge(
            "etcd_server_is_learner", "Whether or not this member is a learner.", registry=r
        )
        self.leader_changes = Counter(
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen.",
            registry=r,
        )
        self.proposals_committed = Gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            registry=r,
        )
        self.proposals_applied = Gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            registry=r,
        )
        self.proposals_pending = Gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            registry=r,
        )
        self.proposals_failed = Counter(
            "etcd_server_proposals_failed", "The total number of failed proposals seen.", registry=r
        )
        self.quota_backend_bytes = Gauge(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            registry=r,
        )
        self.server_id = Gauge(
            "etcd_server_id",
            "Server or member ID in hexadecimal format.",
            ["server_id"],
            registry=r,
        )
        self.version = Gauge(
            "etcd_server_version", "Which version is running.", ["server_version"], registry=r
        )
        self.wal_fsync = Histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            buckets=_DISK_BUCKETS,
            registry=r,
        )
        self.backend_commit = Histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            buckets=_DISK_BUCKETS,
            registry=r,
        )
        self.put_total = Counter(
            "etcd_mvcc_put", "Total number of puts seen by this member.", registry=r
        )
        self.delete_total = Counter(
            "etcd_mvcc_delete", "Total number of deletes seen by this member.", registry=r
        )
        self.range_total = Counter(
            "etcd_mvcc_range", "Total number of ranges seen by this member.", registry=r
        )
        self.txn_total = Counter(
            "etcd_mvcc_txn", "Total number of txns seen by this member.", registry=r
        )
        self.lease_expired = Counter(
            "etcd_debugging_server_lease_expired", "The total number of expired leases.", registry=r
        )
        self.grpc_started = Counter(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            ["grpc_type", "grpc_service", "grpc_method"],
            registry=r,
        )
        self.grpc_handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            registry=r,
        )

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)


class FuncGauges(Collector):
    """Gauges computed when scraped (etcd's GaugeFunc), e.g. db sizes and revisions."""

    def __init__(self, gauges: dict[str, tuple[str, object]]) -> None:
        self._gauges = gauges

    def collect(self):  # type: ignore[no-untyped-def]
        for name, (doc, fn) in self._gauges.items():
            yield GaugeMetricFamily(name, doc, value=float(fn()))  # type: ignore[operator]
