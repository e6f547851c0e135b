"""The metrics the chart's alerts and dashboards read: one list for every test that checks them.

Two checks meet here. The rule and dashboard tests assert that every metric name an expression
refers to is in this module; the member metrics test asserts that every name in
``MEMBER_METRICS`` is exposed by upstream etcd 3.5 and by pyetcd alike, with the same type, label
names and histogram buckets. Together they say that a dashboard panel or alert never reads a
metric that one of the two engines lacks.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]

# name (as in the exposition, without _bucket/_sum/_count) -> (type, label names).
# Types are what etcd's /metrics declares: etcd_server_proposals_committed_total is a gauge.
MEMBER_METRICS: dict[str, tuple[Kind, frozenset[str]]] = {
    "etcd_server_has_leader": ("gauge", frozenset()),
    "etcd_server_is_leader": ("gauge", frozenset()),
    "etcd_server_is_learner": ("gauge", frozenset()),
    "etcd_server_leader_changes_seen_total": ("counter", frozenset()),
    "etcd_server_proposals_committed_total": ("gauge", frozenset()),
    "etcd_server_proposals_applied_total": ("gauge", frozenset()),
    "etcd_server_proposals_pending": ("gauge", frozenset()),
    "etcd_server_proposals_failed_total": ("counter", frozenset()),
    "etcd_server_quota_backend_bytes": ("gauge", frozenset()),
    "etcd_mvcc_db_total_size_in_bytes": ("gauge", frozenset()),
    "etcd_mvcc_db_total_size_in_use_in_bytes": ("gauge", frozenset()),
    "etcd_disk_wal_fsync_duration_seconds": ("histogram", frozenset()),
    "etcd_disk_backend_commit_duration_seconds": ("histogram", frozenset()),
    "etcd_network_peer_round_trip_time_seconds": ("histogram", frozenset({"To"})),
    "etcd_network_peer_sent_bytes_total": ("counter", frozenset({"To"})),
    "etcd_network_peer_received_bytes_total": ("counter", frozenset({"From"})),
    "etcd_network_peer_sent_failures_total": ("counter", frozenset({"To"})),
    "etcd_network_client_grpc_sent_bytes_total": ("counter", frozenset()),
    "etcd_network_client_grpc_received_bytes_total": ("counter", frozenset()),
    "etcd_debugging_mvcc_keys_total": ("gauge", frozenset()),
    "etcd_debugging_mvcc_watcher_total": ("gauge", frozenset()),
    "etcd_debugging_mvcc_watch_stream_total": ("gauge", frozenset()),
    "grpc_server_started_total": (
        "counter",
        frozenset({"grpc_type", "grpc_service", "grpc_method"}),
    ),
    "grpc_server_handled_total": (
        "counter",
        frozenset({"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
    ),
    "process_resident_memory_bytes": ("gauge", frozenset()),
    "process_cpu_seconds_total": ("counter", frozenset()),
    "process_open_fds": ("gauge", frozenset()),
    "process_max_fds": ("gauge", frozenset()),
}

# Labels Prometheus adds to every member's series when the chart's PodMonitor scrapes it (or a
# scrape config doing the same relabelling): the alerts group by them.
TARGET_LABELS = frozenset({"namespace", "pod", "etcd_cluster", "instance", "job"})

# Series Prometheus makes itself for every target.
SCRAPE_METRICS = frozenset({"up"})
