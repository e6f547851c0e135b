"""The chart's Grafana dashboards read only metrics that exist, with labels that exist.

Every dashboard in ``charts/etcd-operator/dashboards`` is what ``tools/gendashboards.py``
generates and is a well-formed Grafana dashboard (uid, title, schemaVersion, unique panel ids,
every query on the ``datasource`` variable). Every expression, panel targets and variable queries
alike, refers only to member metrics of ``tests.monitored`` (the names upstream etcd 3.5 and
pyetcd both export) or ``up``, or, on the operator dashboard, to the operator's registry; its
label matchers and groupings use only the labels the scrape adds (``TARGET_LABELS``) and the
metric's own; and, with Grafana's variables substituted, Prometheus' own parser (Debian's
promtool) accepts it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_operator import metrics
from prometheus_client.metrics import MetricWrapperBase

from tests.monitored import MEMBER_METRICS, SCRAPE_METRICS, TARGET_LABELS
from tools import gendashboards

DIRECTORY = gendashboards.DIRECTORY
PROMTOOL = "/usr/bin/promtool"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
MEMBER_DASHBOARDS = ("etcd-cluster.json", "etcd-member.json")
OPERATOR_DASHBOARDS = ("etcd-operator.json",)
# Grafana's own variables, and what stands for them when promtool parses an expression.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

Json = dict[str, Any]


# --- what may be read -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Known:
    """A metric a dashboard may read: its type and its own label names."""

    kind: str
    labels: frozenset[str]


def member_metrics() -> dict[str, Known]:
    known = {name: Known(kind, labels) for name, (kind, labels) in MEMBER_METRICS.items()}
    known.update({name: Known("gauge", frozenset()) for name in SCRAPE_METRICS})
    return known


def operator_metrics() -> dict[str, Known]:
    """The operator registry's metrics under their exposition names (a counter's with
    ``_total``), with the label names of their collectors."""
    collectors = {
        wrapper._name: wrapper
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    known: dict[str, Known] = {}
    for family in metrics.REGISTRY.collect():
        wrapper = collectors[family.name]
        labels = frozenset(wrapper._labelnames)
        name = f"{family.name}_total" if family.type == "counter" else family.name
        known[name] = Known(family.type, labels)
    return known


def allowed_for(dashboard: str) -> dict[str, Known]:
    return operator_metrics() if dashboard in OPERATOR_DASHBOARDS else member_metrics()


# --- a small PromQL reader ------------------------------------------------------------------------

TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<variable>\$\{?\w+\}?)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+(?![A-Za-z0-9_]))
    | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@:])
    """,
    re.VERBOSE,
)
AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
# PromQL's functions (Prometheus 2.x and 3.x).
FUNCTIONS = frozenset(
    {
        "abs",
        "absent",
        "absent_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "ln",
        "log2",
        "log10",
        "minute",
        "month",
        "predict_linear",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sort",
        "sort_desc",
        "sqrt",
        "time",
        "timestamp",
        "vector",
        "year",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "quantile_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "last_over_time",
        "present_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "cos",
        "cosh",
        "sin",
        "sinh",
        "tan",
        "tanh",
        "deg",
        "rad",
        "pi",
    }
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
MATCH_OPS = frozenset({"=", "!=", "=~", "!~"})


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Parsed:
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos:]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            out.append((kind, m.group()))
    return out


def _label_list(toks: list[tuple[str, str]], i: int) -> tuple[list[str], int]:
    """The labels of ``( a, b )`` starting at ``toks[i] == "("``; the index after ``)``."""
    assert toks[i][1] == "("
    labels: list[str] = []
    i += 1
    while toks[i][1] != ")":
        kind, text = toks[i]
        if kind == "ident":
            labels.append(text)
        elif text != ",":
            raise ValueError(f"unexpected {text!r} in a label list")
        i += 1
    return labels, i + 1


def _matchers(toks: list[tuple[str, str]], i: int) -> tuple[list[tuple[str, str, str]], int]:
    """The matchers of ``{ l op "v", ... }`` starting at ``toks[i] == "{"``."""
    assert toks[i][1] == "{"
    found: list[tuple[str, str, str]] = []
    i += 1
    while toks[i][1] != "}":
        if toks[i][1] == ",":
            i += 1
            continue
        (lkind, label), (_, op), (vkind, value) = toks[i : i + 3]
        if lkind != "ident" or op not in MATCH_OPS or vkind != "string":
            raise ValueError(f"not a label matcher: {label} {op} {value}")
        found.append((label, op, value[1:-1]))
        i += 3
    return found, i + 1


def parse(expr: str) -> Parsed:
    """The metric selectors (with their matchers) and the grouping labels of ``expr``.

    Function and aggregation names, keywords, label names inside ``{}`` and ``by (...)`` & co.,
    strings, durations and numbers are not metric names; an identifier followed by ``(`` that
    is no PromQL function is an error, as is a selector without a metric name.
    """
    toks = tokens(expr)
    parsed = Parsed()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident":
            if text in GROUPING:
                if following == "(":
                    labels, i = _label_list(toks, i + 1)
                    parsed.grouping.update(labels)
                    continue
                if text in ("group_left", "group_right"):
                    i += 1
                    continue
                raise ValueError(f"{text} without labels in {expr!r}")
            if text in AGGREGATIONS or text in FUNCTIONS:
                i += 1
                continue
            if text.lower() in KEYWORDS:
                i += 1
                continue
            if following == "(":
                raise ValueError(f"{text}( is no PromQL function, in {expr!r}")
            selector = Selector(text)
            parsed.selectors.append(selector)
            i += 1
            if following == "{":
                selector.matchers, i = _matchers(toks, i)
            continue
        if text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        if text == "[":
            while toks[i][1] != "]":
                i += 1
        i += 1
    return parsed


# --- what the dashboards hold ---------------------------------------------------------------------


def load(name: str) -> Json:
    board: Json = json.loads((DIRECTORY / name).read_text(encoding="utf-8"))
    return board


def panels(board: Json) -> Iterator[Json]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variables(board: Json) -> list[Json]:
    found: list[Json] = board["templating"]["list"]
    return found


LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_]\w*)\)$")


def expressions(board: Json) -> Iterator[tuple[str, str]]:
    """(where, PromQL): every target's expression and every variable query's selector."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for variable in variables(board):
        if variable["type"] == "query":
            m = LABEL_VALUES.match(variable["query"])
            assert m, f"variable {variable['name']}: not label_values(selector, label)"
            yield f"variable {variable['name']}", m["selector"]


def substitute(expr: str) -> str:
    """Grafana's variables replaced as Grafana would: built-ins by a duration, ours by a value."""

    def value(m: re.Match[str]) -> str:
        return BUILTIN_VARIABLES.get(m["name"], "x")

    return re.sub(r"\$\{?(?P<name>\w+)\}?", value, expr)


ALL = sorted(gendashboards.DASHBOARDS)


# --- the reader itself ----------------------------------------------------------------------------


def test_parse_tells_metric_names_from_functions_keywords_and_labels() -> None:
    parsed = parse(
        'histogram_quantile(0.99, sum by (pod, le) (rate(a_bucket{job="j", To!~"x"}[5m])))'
        " / on (pod) group_left (etcd_cluster) max without (instance) (b offset 1h)"
        " > bool 2 and count(c{grpc_code!='OK'} @ 100) or vector(0) unless d[5m:1m] * inf"
        ' - label_replace(e, "dst", "$1", "src", "(.*)")'
    )
    assert [s.metric for s in parsed.selectors] == ["a_bucket", "b", "c", "d", "e"]
    assert parsed.selectors[0].matchers == [("job", "=", "j"), ("To", "!~", "x")]
    assert parsed.selectors[2].matchers == [("grpc_code", "!=", "OK")]
    assert parsed.grouping == {"pod", "le", "etcd_cluster", "instance"}


@pytest.mark.parametrize(
    "expr", ["sum(rate(made_up_fn(x)[5m]))", '{__name__="x"}', "sum by x (y)", "rate(x{a=1}[5m])"]
)
def test_parse_refuses_what_it_cannot_check(expr: str) -> None:
    with pytest.raises(ValueError):
        parse(expr)


def test_substitute_gives_durations_to_ranges_and_values_to_matchers() -> None:
    assert (
        substitute('rate(x{namespace=~"$namespace", pod="${pod}"}[$__rate_interval])')
        == 'rate(x{namespace=~"x", pod="x"}[1m])'
    )
    assert substitute("increase(x[$__range])") == "increase(x[1h])"


# --- the files --------------------------------------------------------------------------------


def test_dashboards_are_generated() -> None:
    assert gendashboards.stale_files() == [], "run: python tools/gendashboards.py"
    assert sorted(p.name for p in DIRECTORY.glob("*.json")) == ALL
    assert set(ALL) == set(MEMBER_DASHBOARDS) | set(OPERATOR_DASHBOARDS)


@pytest.mark.parametrize("name", ALL)
def test_dashboard_is_well_formed_grafana_json(name: str) -> None:
    board = load(name)
    assert isinstance(board["uid"], str) and 0 < len(board["uid"]) <= 40
    assert isinstance(board["title"], str) and board["title"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["id"] is None, "an id would clash with Grafana's own on import"
    ids = [p["id"] for p in panels(board)]
    assert ids and len(ids) == len(set(ids)), "panel ids must be unique"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0 and grid["y"] >= 0
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "gauge", "bargauge"}, panel["type"]
        assert panel["title"] and panel["description"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip()
    (first, *rest) = variables(board)
    assert first["name"] == "datasource"
    assert first["type"] == "datasource" and first["query"] == "prometheus"
    for variable in rest:
        assert variable["datasource"] == DATASOURCE, variable["name"]


@pytest.mark.parametrize("name", ALL)
def test_panels_do_not_overlap(name: str) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in load(name)["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_uids_are_distinct() -> None:
    uids = [load(name)["uid"] for name in ALL]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("name", ALL)
def test_variables_are_defined_before_use_and_all_used(name: str) -> None:
    board = load(name)
    defined: set[str] = set()
    for variable in variables(board):
        used = set(re.findall(r"\$\{?(\w+)\}?", json.dumps(variable.get("query", ""))))
        assert used <= defined, f"{variable['name']} uses {used - defined} before definition"
        defined.add(variable["name"])
    used_anywhere: set[str] = set()
    for where, expr in expressions(board):
        used = set(re.findall(r"\$\{?(\w+)\}?", expr))
        assert used <= defined | set(BUILTIN_VARIABLES), (where, used)
        used_anywhere |= used
    assert defined - {"datasource"} <= used_anywhere, "a variable nothing uses"


# --- the expressions --------------------------------------------------------------------------


def _resolve(name: str, known: dict[str, Known]) -> tuple[str, Known] | None:
    if name in known:
        return name, known[name]
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if name.endswith(suffix) and known.get(base, Known("", frozenset())).kind == "histogram":
            return base, known[base]
    return None


@pytest.mark.parametrize("name", ALL)
def test_expressions_read_only_metrics_that_exist(name: str) -> None:
    known = allowed_for(name)
    unknown = {}
    for where, expr in expressions(load(name)):
        for selector in parse(expr).selectors:
            if _resolve(selector.metric, known) is None:
                unknown[where] = selector.metric
    assert not unknown, f"metrics outside tests/monitored.py or the operator registry: {unknown}"


@pytest.mark.parametrize("name", ALL)
def test_expressions_use_only_labels_the_series_carry(name: str) -> None:
    """Matchers: the scrape's labels or the metric's own (``le`` on buckets); groupings: those
    of the metrics the expression reads."""
    known = allowed_for(name)
    for where, expr in expressions(load(name)):
        parsed = parse(expr)
        readable: set[str] = set(TARGET_LABELS)
        for selector in parsed.selectors:
            resolved = _resolve(selector.metric, known)
            assert resolved is not None, (where, selector.metric)
            own = set(resolved[1].labels) | TARGET_LABELS
            if selector.metric.endswith("_bucket"):
                own.add("le")
            readable |= own
            bad = {label for label, _, _ in selector.matchers} - own
            assert not bad, f"{where}: {selector.metric} has no label {bad}"
        assert parsed.grouping <= readable, f"{where}: groups by {parsed.grouping - readable}"


@pytest.mark.parametrize("name", MEMBER_DASHBOARDS)
def test_member_series_are_selected_by_cluster(name: str) -> None:
    """No member panel mixes clusters: every member series is selected by the namespace and
    etcd_cluster variables (and, on the member dashboard, the pod)."""
    want = {("namespace", "=", "$namespace"), ("etcd_cluster", "=", "$etcd_cluster")}
    if name == "etcd-member.json":
        want.add(("pod", "=", "$pod"))
    for where, expr in expressions(load(name)):
        if where.startswith("variable"):
            continue
        for selector in parse(expr).selectors:
            assert want <= set(selector.matchers), (where, selector.metric)


def test_operator_cluster_gauges_follow_the_variables() -> None:
    known = operator_metrics()
    for where, expr in expressions(load("etcd-operator.json")):
        if where.startswith("variable"):
            continue
        for selector in parse(expr).selectors:
            resolved = _resolve(selector.metric, known)
            assert resolved is not None
            if resolved[1].labels >= {"namespace", "cluster"}:
                assert {
                    ("namespace", "=~", "$namespace"),
                    ("cluster", "=~", "$etcd_cluster"),
                } <= set(selector.matchers), (where, selector.metric)


# What the issue asks the dashboards to show, by metric.
MEMBER_METRICS_SHOWN = {
    "up",
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_server_quota_backend_bytes",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "etcd_debugging_mvcc_watcher_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_network_peer_round_trip_time_seconds",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "process_resident_memory_bytes",
}
OPERATOR_METRICS_SHOWN = {
    "etcd_operator_reconciles_total",
    "etcd_operator_reconcile_errors_total",
    "etcd_operator_reconcile_duration_seconds",
    "etcd_operator_cluster_available",
    "etcd_operator_cluster_healthy_members",
    "etcd_operator_backup_last_success_timestamp_seconds",
    "etcd_operator_backup_duration_seconds",
    "etcd_operator_backup_size_bytes",
    "etcd_operator_backup_failures_total",
    "etcd_operator_cluster_members_replaced",
}


def read_metrics(name: str) -> set[str]:
    """The metrics (histograms by their base name) a dashboard's panels read."""
    known = allowed_for(name)
    read = set()
    for where, expr in expressions(load(name)):
        if where.startswith("panel"):
            for selector in parse(expr).selectors:
                resolved = _resolve(selector.metric, known)
                assert resolved is not None, (where, selector.metric)
                read.add(resolved[0])
    return read


@pytest.mark.parametrize("name", MEMBER_DASHBOARDS)
def test_member_dashboards_show_what_the_issue_asks(name: str) -> None:
    read = read_metrics(name)
    assert read >= MEMBER_METRICS_SHOWN, MEMBER_METRICS_SHOWN - read


def test_operator_dashboard_shows_what_the_issue_asks() -> None:
    read = read_metrics("etcd-operator.json")
    assert read >= OPERATOR_METRICS_SHOWN, OPERATOR_METRICS_SHOWN - read


# --- promtool ---------------------------------------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool") or (PROMTOOL if Path(PROMTOOL).exists() else None)
    if path is None:
        pytest.fail(
            "promtool is not installed (Debian's prometheus package): `make system-deps` "
            "installs it",
            pytrace=False,
        )
    return path


def check_rules(tmp_path: Path, exprs: list[str]) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on one recording rule per expression."""
    rules = [{"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    return subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_promtool_refuses_a_broken_expression(tmp_path: Path) -> None:
    """The check below can fail: promtool parses, it does not just load YAML."""
    proc = check_rules(tmp_path, ["sum(rate(x[1m]))", "sum(rate(x[1m])", "rate(x[$__range])"])
    assert proc.returncode != 0
    assert "rule 2" in proc.stdout + proc.stderr and "rule 3" in proc.stdout + proc.stderr
    assert "rule 1," not in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ALL)
def test_expressions_are_valid_promql(tmp_path: Path, name: str) -> None:
    found = list(expressions(load(name)))
    proc = check_rules(tmp_path, [substitute(expr) for _, expr in found])
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        bad = [
            f"{found[int(n) - 1][0]}: {found[int(n) - 1][1]}"
            for n in re.findall(r"rule (\d+),", output)
        ]
        pytest.fail(f"promtool refuses:\n{output}\n" + "\n".join(bad))
    assert f"SUCCESS: {len(found)} rules found" in proc.stdout
