"""Generate the chart's Grafana dashboards, ``charts/etcd-operator/dashboards/*.json``.

Three dashboards, kept as plain JSON files in the chart (its ``grafana-dashboards.yaml`` template
loads them with ``.Files.Get`` into ConfigMaps for Grafana's sidecar; they import by hand as
they are):

- ``etcd-cluster.json``: one EtcdCluster's members side by side (health, leadership, database
  size against the quota, client RPCs and watches, Raft proposals, disk and peer latencies,
  traffic, memory);
- ``etcd-member.json``: the same for one member (pod);
- ``etcd-operator.json``: the operator (reconciles, clusters' availability and health, backups,
  member replacements).

Member panels read only the metric names of ``tests/monitored.py`` (those that upstream etcd 3.5
and pyetcd both export, with the labels the chart's PodMonitor adds); operator panels read only
``etcd_operator.metrics``. ``tests/unit/test_dashboards.py`` holds them to that, parses every
expression with promtool and checks that these files are what this module generates. Run
``python tools/gendashboards.py`` after editing it; ``--check`` fails when a file is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DIRECTORY = ROOT / "charts" / "etcd-operator" / "dashboards"

Json = dict[str, Any]

SCHEMA_VERSION = 39  # Grafana 10.4 / 11
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["etcd", "etcd-operator"]
GRID_WIDTH = 24

# The selectors of member series: the labels the PodMonitor (or the documented scrape config)
# puts on every series of a member.
CLUSTER = 'namespace="$namespace", etcd_cluster="$etcd_cluster"'
MEMBER = f'{CLUSTER}, pod="$pod"'
# The operator's per-cluster gauges carry the cluster's namespace and name as their own labels.
OPERATOR_CLUSTER = 'namespace=~"$namespace", cluster=~"$etcd_cluster"'

RATE = "[$__rate_interval]"
WATCH_STREAMS = 'grpc_service="etcdserverpb.Watch", grpc_type="bidi_stream"'
# etcd's own guidance (FAQ): p99 WAL fsync under 10 ms, backend commit under 25 ms; its mixin
# alerts at 0.5 s and 0.25 s.
FSYNC_STEPS = [(None, "green"), (0.01, "yellow"), (0.5, "red")]
COMMIT_STEPS = [(None, "green"), (0.025, "yellow"), (0.25, "red")]
RTT_STEPS = [(None, "green"), (0.05, "yellow"), (0.15, "red")]
QUOTA_STEPS = [(None, "green"), (0.8, "yellow"), (0.95, "red")]
# The chart's prometheusRule.backupMaxAgeSeconds default (26 hours).
BACKUP_AGE_STEPS = [(None, "green"), (86400.0, "yellow"), (93600.0, "red")]


# --- targets and panels -------------------------------------------------------------------------


def target(expr: str, legend: str = "", *, instant: bool = False) -> Json:
    """A Prometheus query; refIds are given by the panel."""
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


def _mappings(texts: dict[int, tuple[str, str]]) -> list[Json]:
    """Value mappings: number -> (text, colour)."""
    options = {
        str(value): {"text": text, "color": color, "index": index}
        for index, (value, (text, color)) in enumerate(sorted(texts.items()))
    }
    return [{"type": "value", "options": options}]


@dataclass
class Panel:
    """A panel before layout: Grafana's fields except id and gridPos."""

    title: str
    description: str
    kind: str
    targets: list[Json]
    unit: str = "short"
    width: int = 12
    height: int = 8
    options: Json = field(default_factory=dict)
    defaults: Json = field(default_factory=dict)
    custom: Json = field(default_factory=dict)

    def render(self, panel_id: int, x: int, y: int) -> Json:
        defaults: Json = {"unit": self.unit, **self.defaults}
        if self.custom:
            defaults["custom"] = self.custom
        targets = [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(self.targets)]
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": self.options,
            "targets": targets,
        }


def timeseries(
    title: str,
    description: str,
    targets: list[Json],
    unit: str = "short",
    *,
    width: int = 12,
    steps: Sequence[tuple[float | None, str]] | None = None,
    minimum: float | None = 0,
    stepped: bool = False,
) -> Panel:
    custom: Json = {
        "drawStyle": "line",
        "lineInterpolation": "stepAfter" if stepped else "linear",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
        "thresholdsStyle": {"mode": "line" if steps else "off"},
    }
    defaults: Json = {"color": {"mode": "palette-classic"}}
    if minimum is not None:
        defaults["min"] = minimum
    if steps:
        defaults["thresholds"] = _thresholds(steps)
    return Panel(
        title,
        description,
        "timeseries",
        targets,
        unit,
        width=width,
        options={
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        defaults=defaults,
        custom=custom,
    )


def stat(
    title: str,
    description: str,
    targets: list[Json],
    unit: str = "short",
    *,
    width: int = 4,
    mappings: dict[int, tuple[str, str]] | None = None,
    steps: Sequence[tuple[float | None, str]] | None = None,
    text_mode: str = "auto",
    no_value: str | None = None,
) -> Panel:
    defaults: Json = {
        "color": {"mode": "thresholds"},
        "thresholds": _thresholds(steps or [(None, "green")]),
    }
    if mappings:
        defaults["mappings"] = _mappings(mappings)
    if no_value is not None:
        defaults["noValue"] = no_value
    return Panel(
        title,
        description,
        "stat",
        [{**t, "range": False, "instant": True} for t in targets],
        unit,
        width=width,
        height=4,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": text_mode,
        },
        defaults=defaults,
    )


def gauge(
    title: str,
    description: str,
    targets: list[Json],
    unit: str,
    steps: Sequence[tuple[float | None, str]],
    *,
    width: int = 4,
    maximum: float = 1,
) -> Panel:
    return Panel(
        title,
        description,
        "gauge",
        [{**t, "range": False, "instant": True} for t in targets],
        unit,
        width=width,
        height=4,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
        },
        defaults={"min": 0, "max": maximum, "thresholds": _thresholds(steps)},
    )


def bargauge(
    title: str,
    description: str,
    targets: list[Json],
    unit: str,
    steps: Sequence[tuple[float | None, str]],
    *,
    width: int = 12,
) -> Panel:
    return Panel(
        title,
        description,
        "bargauge",
        [{**t, "range": False, "instant": True} for t in targets],
        unit,
        width=width,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "displayMode": "basic",
            "orientation": "horizontal",
            "showUnfilled": True,
        },
        defaults={"min": 0, "thresholds": _thresholds(steps)},
    )


# --- dashboards ---------------------------------------------------------------------------------


@dataclass
class Row:
    title: str
    panels: list[Panel]


def layout(rows: Iterable[Row]) -> list[Json]:
    """Rows of panels left to right, wrapping at Grafana's 24 columns; ids from 1 in order."""
    out: list[Json] = []
    y = 0
    for row in rows:
        out.append(
            {
                "id": len(out) + 1,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            out.append(panel.render(len(out) + 1, x, y))
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return out


def datasource_variable() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "includeAll": False,
        "multi": False,
        "options": [],
    }


def query_variable(
    name: str, label: str, query: str, *, all_values: bool = False, hide: int = 0
) -> Json:
    """A variable from ``label_values(...)``: single-valued unless ``all_values`` (multi, with
    an All option matching everything)."""
    variable: Json = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "current": {},
        "hide": hide,
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "includeAll": all_values,
        "multi": all_values,
        "options": [],
    }
    if all_values:
        variable["allValue"] = ".*"
    return variable


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], rows: list[Row]
) -> Json:
    return {
        "__comment": "Generated by tools/gendashboards.py; edit the generator, not this file.",
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "refresh": "30s",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "etcd-operator dashboards",
                "type": "dashboards",
                "tags": ["etcd-operator"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": layout(rows),
    }


# --- the member dashboards (cluster overview and one member) -------------------------------------


def _member_variables(with_pod: bool) -> list[Json]:
    variables = [
        query_variable(
            "namespace",
            "Namespace",
            'label_values(etcd_server_has_leader{etcd_cluster!=""}, namespace)',
        ),
        query_variable(
            "etcd_cluster",
            "EtcdCluster",
            'label_values(etcd_server_has_leader{namespace="$namespace"}, etcd_cluster)',
        ),
    ]
    if with_pod:
        variables.append(
            query_variable(
                "pod", "Member", f"label_values(etcd_server_has_leader{{{CLUSTER}}}, pod)"
            )
        )
    return variables


def _database_row(s: str) -> Row:
    return Row(
        "Database",
        [
            timeseries(
                "DB size against quota",
                "The backend file's physical size, the part of it in use (the rest is free pages "
                "a defragmentation returns) and the quota (--quota-backend-bytes): writes fail "
                "with NOSPACE once the file reaches it.",
                [
                    target(f"etcd_mvcc_db_total_size_in_bytes{{{s}}}", "{{pod}} size"),
                    target(f"etcd_mvcc_db_total_size_in_use_in_bytes{{{s}}}", "{{pod}} in use"),
                    target(f"max(etcd_server_quota_backend_bytes{{{s}}})", "quota"),
                ],
                "bytes",
                width=8,
            ),
            timeseries(
                "Fragmentation",
                "The share of the backend file that is free pages: what a defragmentation "
                "would give back (spec.maintenance.defrag acts on it).",
                [
                    target(
                        f"1 - etcd_mvcc_db_total_size_in_use_in_bytes{{{s}}}"
                        f" / etcd_mvcc_db_total_size_in_bytes{{{s}}}",
                        "{{pod}}",
                    )
                ],
                "percentunit",
                width=8,
            ),
            timeseries(
                "Keys",
                "Keys in the key index (every key with a live revision).",
                [target(f"etcd_debugging_mvcc_keys_total{{{s}}}", "{{pod}}")],
                width=8,
            ),
        ],
    )


def _client_row(s: str, by: str) -> Row:
    """``by`` is the grouping for per-member series: ``pod`` (overview) or nothing (member)."""
    legend = "{{pod}} " if by else ""
    started = f"grpc_server_started_total{{{s}, {WATCH_STREAMS}}}"
    handled = f"grpc_server_handled_total{{{s}, {WATCH_STREAMS}}}"
    grouping = f"sum by ({by}) " if by else "sum"
    return Row(
        "Client requests",
        [
            timeseries(
                "RPC rate by method",
                "Unary gRPC calls completed per second (Range, Put, Txn, LeaseGrant, ...), "
                "across the members.",
                [
                    target(
                        "sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total"
                        f'{{{s}, grpc_type="unary"}}{RATE}))',
                        "{{grpc_service}}/{{grpc_method}}",
                    )
                ],
                "reqps",
            ),
            timeseries(
                "Failed RPC rate by method and code",
                "gRPC calls (unary and streams) that ended with a code other than OK, per "
                "second. Canceled on Watch usually means clients that went away.",
                [
                    target(
                        "sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total"
                        f'{{{s}, grpc_code!="OK"}}{RATE}))',
                        "{{grpc_method}} {{grpc_code}}",
                    )
                ],
                "reqps",
            ),
            timeseries(
                "Active watch streams and watchers",
                "Watch streams open now (gRPC Watch streams started minus those ended), and "
                "what the MVCC store counts: its watch streams and the watchers on them.",
                [
                    target(
                        f"{grouping}({started}) - ({grouping}({handled})"
                        f" or {grouping}({started}) * 0)",
                        f"{legend}gRPC watch streams",
                    ),
                    target(
                        f"{grouping}(etcd_debugging_mvcc_watch_stream_total{{{s}}})",
                        f"{legend}MVCC watch streams",
                    ),
                    target(
                        f"{grouping}(etcd_debugging_mvcc_watcher_total{{{s}}})",
                        f"{legend}watchers",
                    ),
                ],
                width=8,
            ),
            timeseries(
                "Failed RPC ratio",
                "The share of gRPC calls that ended with a code other than OK.",
                [
                    target(
                        f'sum(rate(grpc_server_handled_total{{{s}, grpc_code!="OK"}}{RATE}))'
                        f" / sum(rate(grpc_server_handled_total{{{s}}}{RATE}))",
                        "failed",
                    )
                ],
                "percentunit",
                width=8,
            ),
            timeseries(
                "Client traffic",
                "Bytes per second received from and sent to gRPC clients.",
                [
                    target(
                        f"{grouping}(rate(etcd_network_client_grpc_received_bytes_total{{{s}}}"
                        f"{RATE}))",
                        f"{legend}received",
                    ),
                    target(
                        f"{grouping}(rate(etcd_network_client_grpc_sent_bytes_total{{{s}}}{RATE}))",
                        f"{legend}sent",
                    ),
                ],
                "Bps",
                width=8,
            ),
        ],
    )


def _proposals_row(s: str) -> Row:
    return Row(
        "Raft proposals",
        [
            timeseries(
                "Proposals committed and applied",
                "Raft entries committed and applied per second (the rate of the commit and "
                "apply indexes).",
                [
                    target(
                        f"rate(etcd_server_proposals_committed_total{{{s}}}{RATE})",
                        "{{pod}} committed",
                    ),
                    target(
                        f"rate(etcd_server_proposals_applied_total{{{s}}}{RATE})",
                        "{{pod}} applied",
                    ),
                ],
                "ops",
                width=6,
            ),
            timeseries(
                "Committed but not applied",
                "Entries a member has committed and not applied yet: growing means its apply "
                "(the backend) cannot keep up.",
                [
                    target(
                        f"etcd_server_proposals_committed_total{{{s}}}"
                        f" - etcd_server_proposals_applied_total{{{s}}}",
                        "{{pod}}",
                    )
                ],
                width=6,
            ),
            timeseries(
                "Pending proposals",
                "Proposals waiting to be committed (on the leader: what the followers have "
                "not acknowledged yet).",
                [target(f"etcd_server_proposals_pending{{{s}}}", "{{pod}}")],
                width=6,
            ),
            timeseries(
                "Failed proposals",
                "Proposals that failed per second (leader lost, timeouts): a steady rate "
                "means an unstable leadership or an overloaded cluster.",
                [
                    target(
                        f"rate(etcd_server_proposals_failed_total{{{s}}}{RATE})",
                        "{{pod}}",
                    )
                ],
                "ops",
                width=6,
            ),
        ],
    )


def _quantile(q: float, metric: str, s: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}le) (rate({metric}_bucket{{{s}}}{RATE})))"


def _process_row(s: str) -> Row:
    return Row(
        "Process",
        [
            timeseries(
                "Memory",
                "Resident memory of each member's process.",
                [target(f"process_resident_memory_bytes{{{s}}}", "{{pod}}")],
                "bytes",
                width=8,
            ),
            timeseries(
                "CPU",
                "CPU time per second (1 = one core busy).",
                [target(f"rate(process_cpu_seconds_total{{{s}}}{RATE})", "{{pod}}")],
                "none",
                width=8,
            ),
            timeseries(
                "Open file descriptors",
                "Open file descriptors against the process' limit.",
                [target(f"process_open_fds{{{s}}} / process_max_fds{{{s}}}", "{{pod}}")],
                "percentunit",
                width=8,
            ),
        ],
    )


def cluster_dashboard() -> Json:
    s = CLUSTER
    health = Row(
        "Cluster",
        [
            stat(
                "Members up",
                "Members Prometheus scraped successfully, and the members it scrapes.",
                [
                    target(f"sum(up{{{s}}})", "up", instant=True),
                    target(f"count(up{{{s}}})", "scraped", instant=True),
                ],
            ),
            stat(
                "Leader present",
                "Whether a member sees a leader (etcd_server_has_leader).",
                [target(f"max(etcd_server_has_leader{{{s}}})", "leader", instant=True)],
                mappings={0: ("no", "red"), 1: ("yes", "green")},
                no_value="no member scraped",
            ),
            stat(
                "Leader",
                "The member that leads.",
                [target(f"etcd_server_is_leader{{{s}}} == 1", "{{pod}}", instant=True)],
                text_mode="name",
                no_value="none",
            ),
            stat(
                "Leader changes",
                "Leader changes seen in the dashboard's time range (the most any member saw).",
                [
                    target(
                        f"max(increase(etcd_server_leader_changes_seen_total{{{s}}}[$__range]))",
                        "changes",
                        instant=True,
                    )
                ],
                steps=[(None, "green"), (3, "yellow"), (10, "red")],
                unit="none",
            ),
            stat(
                "Learners",
                "Members that are learners (not voting yet: a member being added or replaced).",
                [target(f"sum(etcd_server_is_learner{{{s}}})", "learners", instant=True)],
                steps=[(None, "green"), (1, "yellow")],
            ),
            gauge(
                "DB size of quota",
                "The largest member's backend file against its quota.",
                [
                    target(
                        f"max(etcd_mvcc_db_total_size_in_bytes{{{s}}}"
                        f" / etcd_server_quota_backend_bytes{{{s}}})",
                        "used",
                        instant=True,
                    )
                ],
                "percentunit",
                QUOTA_STEPS,
            ),
        ],
    )
    leadership = Row(
        "Leadership",
        [
            timeseries(
                "Leader by member",
                "1 on the member that leads. Each change of leader interrupts writes briefly.",
                [target(f"etcd_server_is_leader{{{s}}}", "{{pod}}")],
                stepped=True,
            ),
            timeseries(
                "Leader changes",
                "Leader changes seen per interval (the most any member saw).",
                [
                    target(
                        f"max(increase(etcd_server_leader_changes_seen_total{{{s}}}{RATE}))",
                        "leader changes",
                    )
                ],
                "none",
            ),
        ],
    )
    disk = Row(
        "Disk",
        [
            timeseries(
                "WAL fsync p99",
                "99th percentile of the write-ahead log's fsync; etcd's guidance is under "
                "10 ms, its alert fires at 500 ms.",
                [
                    target(
                        _quantile(0.99, "etcd_disk_wal_fsync_duration_seconds", s, "pod, "),
                        "{{pod}}",
                    )
                ],
                "s",
                steps=FSYNC_STEPS,
            ),
            timeseries(
                "Backend commit p99",
                "99th percentile of the backend's batch commit; etcd's guidance is under "
                "25 ms, its alert fires at 250 ms.",
                [
                    target(
                        _quantile(0.99, "etcd_disk_backend_commit_duration_seconds", s, "pod, "),
                        "{{pod}}",
                    )
                ],
                "s",
                steps=COMMIT_STEPS,
            ),
        ],
    )
    peers = Row(
        "Peers",
        [
            timeseries(
                "Peer round-trip p99",
                "99th percentile of the round trip from each member to each peer (To is the "
                "peer's member ID); etcd alerts at 150 ms.",
                [
                    target(
                        _quantile(
                            0.99, "etcd_network_peer_round_trip_time_seconds", s, "pod, To, "
                        ),
                        "{{pod}} to {{To}}",
                    )
                ],
                "s",
                width=8,
                steps=RTT_STEPS,
            ),
            timeseries(
                "Peer traffic",
                "Bytes per second each member sends to and receives from its peers.",
                [
                    target(
                        f"sum by (pod) (rate(etcd_network_peer_sent_bytes_total{{{s}}}{RATE}))",
                        "{{pod}} sent",
                    ),
                    target(
                        f"sum by (pod) (rate(etcd_network_peer_received_bytes_total{{{s}}}{RATE}))",
                        "{{pod}} received",
                    ),
                ],
                "Bps",
                width=8,
            ),
            timeseries(
                "Peer send failures",
                "Messages to a peer that could not be sent, per second.",
                [
                    target(
                        "sum by (pod, To) (rate(etcd_network_peer_sent_failures_total"
                        f"{{{s}}}{RATE}))",
                        "{{pod}} to {{To}}",
                    )
                ],
                "ops",
                width=8,
            ),
        ],
    )
    return dashboard(
        "etcd-operator-cluster",
        "etcd / Cluster",
        "One EtcdCluster's members side by side: health, leadership, database against the "
        "quota, client requests and watches, Raft proposals, disk and peer latencies, traffic.",
        _member_variables(with_pod=False),
        [
            health,
            leadership,
            _database_row(s),
            _client_row(s, "pod"),
            _proposals_row(s),
            disk,
            peers,
            _process_row(s),
        ],
    )


def member_dashboard() -> Json:
    s = MEMBER
    member = Row(
        "Member",
        [
            stat(
                "Scraped",
                "Whether Prometheus' last scrape of the member's /metrics succeeded.",
                [target(f"up{{{s}}}", "up", instant=True)],
                width=3,
                mappings={0: ("down", "red"), 1: ("up", "green")},
                no_value="not scraped",
            ),
            stat(
                "Sees a leader",
                "Whether the member sees a leader.",
                [target(f"etcd_server_has_leader{{{s}}}", "leader", instant=True)],
                width=3,
                mappings={0: ("no", "red"), 1: ("yes", "green")},
            ),
            stat(
                "Role",
                "Leader, follower or learner (a non-voting member catching up).",
                [
                    target(
                        f"2 * etcd_server_is_leader{{{s}}} + etcd_server_is_learner{{{s}}}",
                        "role",
                        instant=True,
                    )
                ],
                width=3,
                mappings={
                    0: ("follower", "blue"),
                    1: ("learner", "yellow"),
                    2: ("leader", "green"),
                },
            ),
            stat(
                "Leader changes",
                "Leader changes the member saw in the dashboard's time range.",
                [
                    target(
                        f"increase(etcd_server_leader_changes_seen_total{{{s}}}[$__range])",
                        "changes",
                        instant=True,
                    )
                ],
                width=3,
                unit="none",
                steps=[(None, "green"), (3, "yellow"), (10, "red")],
            ),
            stat(
                "DB size",
                "The backend file's physical size.",
                [target(f"etcd_mvcc_db_total_size_in_bytes{{{s}}}", "size", instant=True)],
                "bytes",
                width=3,
            ),
            stat(
                "DB in use",
                "The part of the backend file in use.",
                [target(f"etcd_mvcc_db_total_size_in_use_in_bytes{{{s}}}", "in use", instant=True)],
                "bytes",
                width=3,
            ),
            gauge(
                "DB size of quota",
                "The backend file against the quota.",
                [
                    target(
                        f"etcd_mvcc_db_total_size_in_bytes{{{s}}}"
                        f" / etcd_server_quota_backend_bytes{{{s}}}",
                        "used",
                        instant=True,
                    )
                ],
                "percentunit",
                QUOTA_STEPS,
                width=3,
            ),
            stat(
                "Keys",
                "Keys in the key index.",
                [target(f"etcd_debugging_mvcc_keys_total{{{s}}}", "keys", instant=True)],
                width=3,
            ),
        ],
    )
    leadership = Row(
        "Leadership",
        [
            timeseries(
                "Sees a leader",
                "1 while the member sees a leader, 0 during elections or when cut off.",
                [
                    target(f"etcd_server_has_leader{{{s}}}", "has leader"),
                    target(f"etcd_server_is_leader{{{s}}}", "is leader"),
                ],
                stepped=True,
            ),
            timeseries(
                "Leader changes",
                "Leader changes the member saw per interval.",
                [
                    target(
                        f"increase(etcd_server_leader_changes_seen_total{{{s}}}{RATE})",
                        "leader changes",
                    )
                ],
                "none",
            ),
        ],
    )
    quantiles = (0.5, 0.9, 0.99)
    disk = Row(
        "Disk",
        [
            timeseries(
                "WAL fsync",
                "Quantiles of the write-ahead log's fsync; etcd's guidance is a p99 under "
                "10 ms, its alert fires at 500 ms.",
                [
                    target(
                        _quantile(q, "etcd_disk_wal_fsync_duration_seconds", s, ""), f"p{q * 100:g}"
                    )
                    for q in quantiles
                ],
                "s",
                steps=FSYNC_STEPS,
            ),
            timeseries(
                "Backend commit",
                "Quantiles of the backend's batch commit; etcd's guidance is a p99 under "
                "25 ms, its alert fires at 250 ms.",
                [
                    target(
                        _quantile(q, "etcd_disk_backend_commit_duration_seconds", s, ""),
                        f"p{q * 100:g}",
                    )
                    for q in quantiles
                ],
                "s",
                steps=COMMIT_STEPS,
            ),
        ],
    )
    peers = Row(
        "Peers",
        [
            timeseries(
                "Peer round-trip p99",
                "99th percentile of the round trip to each peer (by member ID); etcd alerts at "
                "150 ms.",
                [
                    target(
                        _quantile(0.99, "etcd_network_peer_round_trip_time_seconds", s, "To, "),
                        "to {{To}}",
                    )
                ],
                "s",
                width=6,
                steps=RTT_STEPS,
            ),
            timeseries(
                "Peer traffic sent",
                "Bytes per second sent to each peer.",
                [
                    target(
                        f"rate(etcd_network_peer_sent_bytes_total{{{s}}}{RATE})",
                        "to {{To}}",
                    )
                ],
                "Bps",
                width=6,
            ),
            timeseries(
                "Peer traffic received",
                "Bytes per second received from each peer.",
                [
                    target(
                        f"rate(etcd_network_peer_received_bytes_total{{{s}}}{RATE})",
                        "from {{From}}",
                    )
                ],
                "Bps",
                width=6,
            ),
            timeseries(
                "Peer send failures",
                "Messages to each peer that could not be sent, per second.",
                [
                    target(
                        f"rate(etcd_network_peer_sent_failures_total{{{s}}}{RATE})",
                        "to {{To}}",
                    )
                ],
                "ops",
                width=6,
            ),
        ],
    )
    return dashboard(
        "etcd-operator-member",
        "etcd / Member",
        "One member (pod) of an EtcdCluster: health and role, database, client requests and "
        "watches, Raft proposals, disk and peer latencies, traffic, process.",
        _member_variables(with_pod=True),
        [
            member,
            leadership,
            _database_row(s),
            _client_row(s, ""),
            _proposals_row(s),
            disk,
            peers,
            _process_row(s),
        ],
    )


# --- the operator dashboard -----------------------------------------------------------------------


def operator_dashboard() -> Json:
    c = OPERATOR_CLUSTER
    by_cluster = "{{namespace}}/{{cluster}}"
    clusters = Row(
        "Clusters",
        [
            stat(
                "Clusters",
                "EtcdClusters the operator serves (of the selected namespaces and names).",
                [
                    target(
                        f"count(etcd_operator_cluster_available{{{c}}})", "clusters", instant=True
                    )
                ],
            ),
            stat(
                "Available",
                "Clusters whose Available condition is True: a leader and a healthy quorum.",
                [target(f"sum(etcd_operator_cluster_available{{{c}}})", "available", instant=True)],
            ),
            stat(
                "Not available",
                "Clusters without a leader or a healthy quorum.",
                [
                    target(
                        f"count(etcd_operator_cluster_available{{{c}}} == 0) or vector(0)",
                        "not available",
                        instant=True,
                    )
                ],
                steps=[(None, "green"), (1, "red")],
            ),
            stat(
                "Healthy members",
                "Members that answered a linearizable read, and members in etcd's member list, "
                "across the clusters.",
                [
                    target(
                        f"sum(etcd_operator_cluster_healthy_members{{{c}}})",
                        "healthy",
                        instant=True,
                    ),
                    target(f"sum(etcd_operator_cluster_members{{{c}}})", "members", instant=True),
                ],
            ),
            stat(
                "Backups not ready",
                "Clusters with spec.backup whose BackupReady condition is not True.",
                [
                    target(
                        f"count(etcd_operator_cluster_backup_ready{{{c}}} == 0) or vector(0)",
                        "not ready",
                        instant=True,
                    )
                ],
                steps=[(None, "green"), (1, "red")],
            ),
            stat(
                "Members replaced",
                "Members that lost their data and were replaced, in the dashboard's time range.",
                [
                    target(
                        f"sum(max_over_time(etcd_operator_cluster_members_replaced{{{c}}}"
                        f"[$__range]) - min_over_time(etcd_operator_cluster_members_replaced"
                        f"{{{c}}}[$__range]))",
                        "replaced",
                        instant=True,
                    )
                ],
                steps=[(None, "green"), (1, "yellow")],
            ),
            timeseries(
                "Available by cluster",
                "1 while a cluster's Available condition is True.",
                [target(f"etcd_operator_cluster_available{{{c}}}", by_cluster)],
                stepped=True,
            ),
            timeseries(
                "Healthy members by cluster",
                "Members that answered a linearizable read, against the members in etcd's "
                "member list.",
                [
                    target(
                        f"etcd_operator_cluster_healthy_members{{{c}}}", f"{by_cluster} healthy"
                    ),
                    target(f"etcd_operator_cluster_members{{{c}}}", f"{by_cluster} members"),
                ],
                stepped=True,
            ),
        ],
    )
    reconciles = Row(
        "Reconciles",
        [
            timeseries(
                "Reconciles by result",
                "Reconcile passes per second, by result.",
                [
                    target(
                        f"sum by (result) (rate(etcd_operator_reconciles_total{RATE}))",
                        "{{result}}",
                    )
                ],
                "ops",
                width=8,
            ),
            timeseries(
                "Reconcile errors by reason",
                "Failed reconcile passes per second, by reason.",
                [
                    target(
                        f"sum by (reason) (rate(etcd_operator_reconcile_errors_total{RATE}))",
                        "{{reason}}",
                    )
                ],
                "ops",
                width=8,
            ),
            timeseries(
                "Reconcile duration",
                "Quantiles of one reconcile pass (observe, plan, execute).",
                [
                    target(
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(etcd_operator_reconcile_duration_seconds_bucket{RATE})))",
                        f"p{q * 100:g}",
                    )
                    for q in (0.5, 0.99)
                ],
                "s",
                width=8,
            ),
            timeseries(
                "Status refresh",
                "Rounds of the periodic status refresh (every cluster once) per second, and "
                "clusters whose refresh failed or ran out of time.",
                [
                    target(f"sum(rate(etcd_operator_status_refresh_rounds_total{RATE}))", "rounds"),
                    target(
                        f"sum(rate(etcd_operator_status_refresh_failures_total{RATE}))",
                        "failures",
                    ),
                ],
                "ops",
                width=24,
            ),
        ],
    )
    backups = Row(
        "Backups",
        [
            bargauge(
                "Age of the last successful backup",
                "Time since each cluster's last successful backup (clusters with spec.backup); "
                "red past 26 hours, the chart's default for the EtcdBackupTooOld alert.",
                [
                    target(
                        f"time() - etcd_operator_backup_last_success_timestamp_seconds{{{c}}}",
                        by_cluster,
                        instant=True,
                    )
                ],
                "s",
                BACKUP_AGE_STEPS,
            ),
            timeseries(
                "BackupReady",
                "1 while a cluster's BackupReady condition is True.",
                [target(f"etcd_operator_cluster_backup_ready{{{c}}}", by_cluster)],
                stepped=True,
            ),
            timeseries(
                "Backup duration",
                "Mean duration of the successful backups that ended in the hour before each "
                "point, from the snapshot's first byte to the stored object.",
                [
                    target(
                        "sum by (namespace, cluster) (increase("
                        f"etcd_operator_backup_duration_seconds_sum{{{c}}}[1h]))"
                        " / (sum by (namespace, cluster) (increase("
                        f"etcd_operator_backup_duration_seconds_count{{{c}}}[1h])) > 0)",
                        by_cluster,
                    )
                ],
                "s",
                width=8,
            ),
            timeseries(
                "Backup size",
                "Stored size of each cluster's last successful backup (after compression and "
                "encryption).",
                [target(f"etcd_operator_backup_size_bytes{{{c}}}", by_cluster)],
                "bytes",
                width=8,
                stepped=True,
            ),
            timeseries(
                "Backup failures",
                "Backups that ended Failed, per hour.",
                [
                    target(
                        "sum by (namespace, cluster) (increase("
                        f"etcd_operator_backup_failures_total{{{c}}}[1h]))",
                        by_cluster,
                    )
                ],
                "none",
                width=8,
            ),
        ],
    )
    replacement = Row(
        "Member replacement",
        [
            timeseries(
                "Members replaced",
                "How many times each cluster had a member that lost its data replaced "
                "(status.membersReplaced); each step up is a replacement.",
                [target(f"etcd_operator_cluster_members_replaced{{{c}}}", by_cluster)],
                width=24,
                stepped=True,
            ),
        ],
    )
    return dashboard(
        "etcd-operator-operator",
        "etcd / Operator",
        "The operator: reconcile passes and errors, its clusters' availability and healthy "
        "members, backups (age, duration, size, failures) and member replacements.",
        [
            query_variable(
                "namespace",
                "Namespace",
                "label_values(etcd_operator_cluster_available, namespace)",
                all_values=True,
            ),
            query_variable(
                "etcd_cluster",
                "EtcdCluster",
                'label_values(etcd_operator_cluster_available{namespace=~"$namespace"}, cluster)',
                all_values=True,
            ),
        ],
        [clusters, reconciles, backups, replacement],
    )


# --- files ----------------------------------------------------------------------------------------

DASHBOARDS = {
    "etcd-cluster.json": cluster_dashboard,
    "etcd-member.json": member_dashboard,
    "etcd-operator.json": operator_dashboard,
}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def stale_files() -> list[str]:
    """The dashboard files (relative to the repository) missing or different from a fresh
    generation; empty when up to date."""
    return [
        str((DIRECTORY / name).relative_to(ROOT))
        for name in DASHBOARDS
        if not (DIRECTORY / name).is_file()
        or (DIRECTORY / name).read_text(encoding="utf-8") != render(name)
    ]


def write() -> None:
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        (DIRECTORY / name).write_text(render(name), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a dashboard is stale")
    opts = parser.parse_args()
    if opts.check:
        stale = stale_files()
        if stale:
            sys.exit("stale dashboards: " + ", ".join(stale) + " (run tools/gendashboards.py)")
        return
    write()


if __name__ == "__main__":
    main()
