"""The member's /metrics exposition: etcd's names, types, labels and buckets, and nothing else.

What a scrape of one ``ServerMetrics`` registry shows, parsed back with prometheus_client's own
parser (which drops ``_total`` from counter family names, as Prometheus's text format allows).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import enable_created_metrics, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pyetcd.api.rpc import counting_codec
from pyetcd.proto.etcdserverpb import rpc_pb2
from pyetcd.server.metrics import (
    FuncCounters,
    LabelGauge,
    OsGauges,
    PeerCollector,
    ServerMetrics,
)
from pyetcd.transport.metrics import RTT_BUCKETS, Histogram, TransportMetrics

# etcd's prometheus.ExponentialBuckets(0.0001, 2, 16), as its /metrics prints them.
ETCD_RTT_LE = [
    "0.0001",
    "0.0002",
    "0.0004",
    "0.0008",
    "0.0016",
    "0.0032",
    "0.0064",
    "0.0128",
    "0.0256",
    "0.0512",
    "0.1024",
    "0.2048",
    "0.4096",
    "0.8192",
    "1.6384",
    "3.2768",
    "+Inf",
]


def scrape(metrics: ServerMetrics) -> tuple[str, dict[str, Metric]]:
    text = generate_latest(metrics.registry).decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def series(family: Metric, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


@pytest.fixture
def created_on() -> Iterator[None]:
    """prometheus_client's process-wide switch as a program that never turned it off leaves
    it; restored afterwards."""
    saved = prometheus_metrics._use_created
    enable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        prometheus_metrics._use_created = saved


def test_no_created_series_even_if_the_switch_was_on(created_on: None) -> None:
    m = ServerMetrics()
    m.leader_changes.inc()
    m.wal_fsync.observe(0.002)
    m.grpc_handled.labels("unary", "etcdserverpb.KV", "Put", "OK").inc()
    text, families = scrape(m)
    assert "_created" not in text
    assert families["etcd_server_leader_changes_seen"].type == "counter"


def test_process_families_and_etcds_fd_gauges() -> None:
    _, families = scrape(ServerMetrics())
    expected = {
        "process_resident_memory_bytes": "gauge",
        "process_virtual_memory_bytes": "gauge",
        "process_start_time_seconds": "gauge",
        "process_cpu_seconds": "counter",  # process_cpu_seconds_total
        "process_open_fds": "gauge",
        "process_max_fds": "gauge",
        "process_virtual_memory_max_bytes": "gauge",
        "os_fd_used": "gauge",
        "os_fd_limit": "gauge",
    }
    assert {name: families[name].type for name in expected} == expected
    used = families["os_fd_used"].samples[0].value
    assert 0 < used <= families["os_fd_limit"].samples[0].value
    assert not [name for name in families if name.startswith(("python_", "go_"))]


def test_fd_gauges_are_left_out_where_proc_cannot_be_read() -> None:
    names = [f.name for f in OsGauges("/nonexistent/proc/self/fd").collect()]
    assert names == ["process_virtual_memory_max_bytes"]


def test_client_grpc_bytes_are_the_codecs_message_bytes() -> None:
    m = ServerMetrics()
    decode, encode = counting_codec(m.client_traffic, rpc_pb2.PutRequest)
    request = rpc_pb2.PutRequest(key=b"k", value=b"v" * 10).SerializeToString()
    assert decode(request) == rpc_pb2.PutRequest(key=b"k", value=b"v" * 10)
    response = rpc_pb2.PutResponse(header=rpc_pb2.ResponseHeader(revision=7))
    assert encode(response) == response.SerializeToString()
    assert encode(b"\x0a\x00") == b"\x0a\x00"  # a response assembled from stored bytes
    _, families = scrape(m)
    received = families["etcd_network_client_grpc_received_bytes"]
    sent = families["etcd_network_client_grpc_sent_bytes"]
    assert (received.type, sent.type) == ("counter", "counter")
    assert series(received, "_total") == {(): len(request)}
    assert series(sent, "_total") == {(): response.ByteSize() + 2}


def test_func_counters_and_the_cluster_version_gauge() -> None:
    m = ServerMetrics()
    counts = {"granted": 0}
    version: list[str] = []
    m.add_collector(
        FuncCounters({"etcd_debugging_lease_granted_total": ("doc", lambda: counts["granted"])})
    )
    m.add_collector(
        LabelGauge(
            "etcd_cluster_version",
            "doc",
            "cluster_version",
            lambda: version[0] if version else None,
        )
    )
    _, families = scrape(m)
    assert series(families["etcd_debugging_lease_granted"], "_total") == {(): 0.0}
    assert "etcd_cluster_version" not in families  # not decided yet: no series, as in etcd
    counts["granted"] = 3
    version.append("3.5")
    _, families = scrape(m)
    assert series(families["etcd_debugging_lease_granted"], "_total") == {(): 3.0}
    assert series(families["etcd_cluster_version"]) == {(("cluster_version", "3.5"),): 1.0}


def test_rtt_histogram_buckets_are_etcds_and_inclusive() -> None:
    assert len(RTT_BUCKETS) == 16
    h = Histogram(RTT_BUCKETS)
    for value in (0.0001, 0.00011, 0.0002, 5.0):
        h.observe(value)
    cumulative = dict(h.cumulative())
    assert cumulative[0.0001] == 1  # le is inclusive
    assert cumulative[0.0002] == 3
    assert cumulative[3.2768] == 3
    assert cumulative[float("inf")] == 4 == h.count
    assert h.sum == pytest.approx(5.00041)


def test_peer_families_by_etcds_names_with_hex_member_ids() -> None:
    m = ServerMetrics()
    transport = TransportMetrics()
    m.add_collector(PeerCollector(transport, 0x8E9E05C52164694D))
    _, families = scrape(m)
    # Nothing counted yet: no family at all, as a Go CounterVec without children shows none.
    assert not [name for name in families if name.startswith("etcd_network_peer")]
    assert "etcd_network_active_peers" not in families

    up = transport.peer(0xABC)
    up.sent_bytes, up.received_bytes, up.active = 100, 40, True
    up.rtt.observe(0.0003)
    up.rtt.observe(0.0009)
    down = transport.peer(0x1F)
    down.sent_failures, down.disconnects, down.active = 5, 1, False
    transport.peer(0x2A).received_failures = 2
    _, families = scrape(m)

    def kinds(name: str) -> tuple[str, str]:
        return families[name].type, families[name].documentation

    assert kinds("etcd_network_peer_sent_bytes") == (
        "counter",
        "The total number of bytes sent to peers.",
    )
    assert series(families["etcd_network_peer_sent_bytes"], "_total") == {(("To", "abc"),): 100}
    assert series(families["etcd_network_peer_received_bytes"], "_total") == {
        (("From", "abc"),): 40
    }
    assert series(families["etcd_network_peer_sent_failures"], "_total") == {(("To", "1f"),): 5}
    assert series(families["etcd_network_peer_received_failures"], "_total") == {
        (("From", "2a"),): 2
    }
    local = ("Local", "8e9e05c52164694d")
    assert series(families["etcd_network_active_peers"]) == {
        (local, ("Remote", "1f")): 0.0,
        (local, ("Remote", "abc")): 1.0,
    }
    assert series(families["etcd_network_disconnected_peers"], "_total") == {
        (local, ("Remote", "1f")): 1
    }
    rtt = families["etcd_network_peer_round_trip_time_seconds"]
    assert rtt.type == "histogram"
    buckets = [s for s in rtt.samples if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets] == ETCD_RTT_LE
    assert {s.labels["To"] for s in rtt.samples} == {"abc"}
    by_le = {s.labels["le"]: s.value for s in buckets}
    assert (by_le["0.0002"], by_le["0.0004"], by_le["0.0016"], by_le["+Inf"]) == (0, 1, 2, 2)
    assert series(rtt, "_count") == {(("To", "abc"),): 2}
    assert series(rtt, "_sum")[(("To", "abc"),)] == pytest.approx(0.0012)
