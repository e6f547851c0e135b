"""etcd's Prometheus metrics, by etcd's names, on a registry of this member's own.

Dashboards and alerts written for etcd (the etcd mixin) read these names; keeping them identical
is what lets users point their existing monitoring at pyetcd. Nothing else may show up either:
no ``*_created`` series (etcd's Go client has none), no Python runtime families.

Two kinds of metric live here. Those updated now and then (a leader change, an fsync) are
``prometheus_client`` objects. Those on a per-request or per-message path (client gRPC bytes,
peer bytes, lease renewals) are plain ints owned by the code that counts them and read only when
``/metrics`` is scraped, by the collectors below: a ``prometheus_client`` call takes a lock and
costs more than the add.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from pyetcd.transport.metrics import TransportMetrics

_DISK_BUCKETS = tuple(0.001 * 2**i for i in range(14))
# ``le`` as Go's client writes it ("+Inf", "0.0001"); typed here, untyped upstream.
_go_float: Callable[[float], str] = floatToGoString


class ClientTraffic:
    """Bytes of gRPC messages from and to clients (etcd's v3rpc codec counts the same: the
    marshalled messages, without gRPC's 5-byte prefixes); bumped by the services' codec."""

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0


class ServerMetrics:
    """The metric objects one member updates; exposed on /metrics."""

    def __init__(self) -> None:
        # A process-wide switch in prometheus_client, read at every collection: set here so
        # that it holds wherever a member's registry exists.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        self.client_traffic = ClientTraffic()
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

        traffic = self.client_traffic
        self.add_collector(
            FuncCounters(
                {
                    "etcd_network_client_grpc_sent_bytes_total": (
                        "The total number of bytes sent to grpc clients.",
                        lambda: traffic.sent,
                    ),
                    "etcd_network_client_grpc_received_bytes_total": (
                        "The total number of bytes received from grpc clients.",
                        lambda: traffic.received,
                    ),
                }
            )
        )
        self.add_collector(OsGauges())

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)


Reading = Callable[[], float]


class FuncGauges(Collector):
    """Gauges computed when scraped (etcd's GaugeFunc), e.g. db sizes and revisions."""

    def __init__(self, gauges: Mapping[str, tuple[str, Reading]]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        for name, (doc, fn) in self._gauges.items():
            yield GaugeMetricFamily(name, doc, value=float(fn()))


class FuncCounters(Collector):
    """Counters whose value is a plain int kept by the code that counts (see the module doc)."""

    def __init__(self, counters: Mapping[str, tuple[str, Reading]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        for name, (doc, fn) in self._counters.items():
            yield CounterMetricFamily(name, doc, value=float(fn()))


class LabelGauge(Collector):
    """A gauge set to 1 under one label whose value is read when scraped (etcd's
    ``etcd_cluster_version{cluster_version}``); no series while the value is unknown."""

    def __init__(self, name: str, doc: str, label: str, value: Callable[[], str | None]) -> None:
        self._name, self._doc, self._label, self._value = name, doc, label, value

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self._name, self._doc, labels=[self._label])

    def collect(self) -> Iterator[Metric]:
        value = self._value()
        if value is not None:
            family = GaugeMetricFamily(self._name, self._doc, labels=[self._label])
            family.add_metric([value], 1.0)
            yield family


_VM_MAX_DOC = "Maximum amount of virtual memory available in bytes."
_GO_MAX_UINT64 = float(2**64 - 1)


class OsGauges(Collector):
    """What etcd shows of its process beyond prometheus_client's ``ProcessCollector``: etcd's
    ``os_fd_used`` and ``os_fd_limit`` (descriptors open, soft RLIMIT_NOFILE), and Go's
    ``process_virtual_memory_max_bytes`` (soft RLIMIT_AS, unlimited as Go's MaxUint64). The fd
    pair is left out where /proc cannot be read, as etcd stops updating it then."""

    def __init__(self, proc_fd: str = "/proc/self/fd") -> None:
        self._proc_fd = proc_fd

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("os_fd_used", "The number of used file descriptors.")
        yield GaugeMetricFamily("os_fd_limit", "The file descriptor limit.")
        yield GaugeMetricFamily("process_virtual_memory_max_bytes", _VM_MAX_DOC)

    def collect(self) -> Iterator[Metric]:
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        vm_max = _GO_MAX_UINT64 if soft == resource.RLIM_INFINITY else float(soft)
        yield GaugeMetricFamily("process_virtual_memory_max_bytes", _VM_MAX_DOC, vm_max)
        try:
            used = len(os.listdir(self._proc_fd))
        except OSError:
            return
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        yield GaugeMetricFamily("os_fd_used", "The number of used file descriptors.", value=used)
        yield GaugeMetricFamily("os_fd_limit", "The file descriptor limit.", value=limit)


class PeerCollector(Collector):
    """The peer transport's counts under etcd's rafthttp names; label values are member ids
    in lower-case hex, as etcd's ``types.ID`` prints them.

    A series appears once its count was first touched and a family only with a series, as a
    Go ``CounterVec`` shows nothing for a peer it never counted.
    """

    def __init__(self, metrics: TransportMetrics, local_id: int) -> None:
        self._metrics = metrics
        self._local = f"{local_id:x}"

    @staticmethod
    def _families() -> tuple[
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        HistogramMetricFamily,
    ]:
        return (
            CounterMetricFamily(
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                labels=["To"],
            ),
            CounterMetricFamily(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                labels=["From"],
            ),
            CounterMetricFamily(
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                labels=["To"],
            ),
            CounterMetricFamily(
                "etcd_network_peer_received_failures_total",
                "The total number of receive failures from peers.",
                labels=["From"],
            ),
            GaugeMetricFamily(
                "etcd_network_active_peers",
                "The current number of active peer connections.",
                labels=["Local", "Remote"],
            ),
            CounterMetricFamily(
                "etcd_network_disconnected_peers_total",
                "The total number of disconnected peers.",
                labels=["Local", "Remote"],
            ),
            HistogramMetricFamily(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
                labels=["To"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        sent, received, sent_failed, received_failed, active, disconnected, rtt = families
        local = self._local
        for peer_id, st in sorted(self._metrics.peers.items()):
            peer = f"{peer_id:x}"
            if st.sent_bytes:
                sent.add_metric([peer], st.sent_bytes)
            if st.received_bytes:
                received.add_metric([peer], st.received_bytes)
            if st.sent_failures:
                sent_failed.add_metric([peer], st.sent_failures)
            if st.received_failures:
                received_failed.add_metric([peer], st.received_failures)
            if st.active is not None:
                active.add_metric([local, peer], 1.0 if st.active else 0.0)
            if st.disconnects:
                disconnected.add_metric([local, peer], st.disconnects)
            if st.rtt.count:
                buckets = [(_go_float(le), n) for le, n in st.rtt.cumulative()]
                rtt.add_metric([peer], buckets, st.rtt.sum)
        return (family for family in families if family.samples)
