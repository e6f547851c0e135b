"""The chart's PrometheusRule, rendered by real helm and judged by real promtool.

``promtool check rules`` on its spec, and ``promtool test rules`` on the unit tests in
``tests/unit/rules/`` (series that make each alert fire with its labels and annotations, and
must-not-fire cases: a healthy cluster, the control plane's own etcd). Then what promtool cannot
know: every metric an expression reads is one the members export (``tests.monitored``, which
the engine-parity test holds pyetcd and etcd 3.5 to) or the operator's registry; the member rules
read only series of our members; the annotations name the cluster (and pod) from labels the
alert has, and nothing else; every alert links to its runbook section in docs/operations.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from etcd_operator import metrics

from tests.monitored import MEMBER_METRICS, SCRAPE_METRICS, TARGET_LABELS
from tools.tools import INSTALL_HINT, ToolError, ensure_tools

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "etcd-operator"
RULE_TESTS = Path(__file__).resolve().parent / "rules"
OPERATIONS = ROOT / "docs" / "operations.md"
# What the promtool tests expect (tests/unit/rules/*.test.yaml).
RUNBOOKS = "https://runbooks.example/etcd/operations.md"
BACKUP_MAX_AGE = 3600
PROMTOOL_MISSING = (
    "promtool is not installed: `make system-deps` installs it (Debian's prometheus package)"
)
MEMBERS_GROUP, OPERATOR_GROUP = "etcd-members", "etcd-operator"
OPERATOR_UP_GROUP = "etcd-operator-up"
# The labels an annotation may print: which cluster, member, method, peer or reason. None of
# them can carry a credential.
PRINTABLE_LABELS = {
    "namespace",
    "etcd_cluster",
    "cluster",
    "pod",
    "grpc_service",
    "grpc_method",
    "To",
    "reason",
}
RUNBOOK_PARTS = ("*Meaning:*", "*Impact:*", "*Diagnosis:*", "*Mitigation:*")

Doc = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return ensure_tools().helm
    except ToolError as err:
        pytest.fail(f"helm is not available: {err}\nInstall it: {INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(PROMTOOL_MISSING, pytrace=False)
    return found


def render(helm: Path, *sets: str) -> Doc:
    proc = subprocess.run(
        [
            str(helm),
            "template",
            "eo",
            str(CHART),
            "--namespace",
            "etcd-system",
            "--show-only",
            "templates/prometheusrule.yaml",
            "--set",
            "prometheusRule.enabled=true",
            *(arg for value in sets for arg in ("--set", value)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc: Doc = yaml.safe_load(proc.stdout)
    assert doc["kind"] == "PrometheusRule"
    return doc


@pytest.fixture(scope="module")
def spec(helm: Path) -> Doc:
    """The rule's spec as the promtool tests expect it."""
    rule = render(
        helm,
        f"prometheusRule.runbookBaseURL={RUNBOOKS}",
        f"prometheusRule.backupMaxAgeSeconds={BACKUP_MAX_AGE}",
    )
    found: Doc = rule["spec"]
    return found


def rules_of(spec: Doc, group: str | None = None) -> list[Doc]:
    return [r for g in spec["groups"] if group is None or g["name"] == group for r in g["rules"]]


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, check=False, timeout=300, cwd=cwd
    )


def rule_test_files() -> list[Path]:
    files = sorted(RULE_TESTS.glob("*.test.yaml"))
    assert files, RULE_TESTS
    return files


def expectations() -> Iterator[tuple[str, list[Doc]]]:
    """(alertname, expected alerts) of every alert_rule_test in the promtool test files."""
    for path in rule_test_files():
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test") or []:
                yield case["alertname"], case.get("exp_alerts") or []


# --- promtool -----------------------------------------------------------------------------------


def test_promtool_checks_the_rules(spec: Doc, promtool: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    proc = run_promtool(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules_of(spec))} rules found" in proc.stdout


def test_promtool_unit_tests_of_the_rules_pass(spec: Doc, promtool: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    files = rule_test_files()
    for path in files:
        shutil.copy(path, tmp_path / path.name)
    proc = run_promtool(promtool, "test", "rules", *(p.name for p in files), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(files), proc.stdout


def test_every_alert_and_severity_is_made_to_fire_and_to_stay_silent(spec: Doc) -> None:
    fired: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for name, expected in expectations():
        if not expected:
            silent.add(name)
        fired |= {(name, e["exp_labels"]["severity"]) for e in expected}
    shipped = {(r["alert"], r["labels"]["severity"]) for r in rules_of(spec)}
    assert shipped - fired == set(), "alerts no promtool test makes fire"
    assert fired - shipped == set(), "tests of alerts the chart does not ship"
    assert {name for name, _ in shipped} - silent == set(), "alerts never tested silent"


# --- what the expressions read ------------------------------------------------------------------

# A name, not the tail of a number or a duration (1e9, 5m).
IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: every identifier left once strings, label
    matchers, ranges and grouping clauses are gone, except functions and keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for found in IDENTIFIER.finditer(text):
        word = found.group()
        if text[found.end() :].lstrip().startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def grouping_clauses(expr: str) -> list[set[str]]:
    """The label sets of each ``by (...)`` clause."""
    assert not re.search(r"\bwithout\s*\(", expr), "without() would keep unknown labels"
    return [
        {label.strip() for label in clause.split(",") if label.strip()}
        for clause in re.findall(r"\bby\s*\(([^)]*)\)", expr)
    ]


def member_names() -> set[str]:
    names = set(SCRAPE_METRICS)
    for name, (kind, _) in MEMBER_METRICS.items():
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def operator_names() -> set[str]:
    """Names as the operator's /metrics exposes them (collect() names a counter without
    ``_total``)."""
    names = set()
    for family in metrics.REGISTRY.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        else:
            names.add(family.name)
    return names


def test_the_expression_reader_finds_selectors_and_only_them() -> None:
    expr = (
        'sum by (a, b) (rate(x_total{l="v", m=~"a|b"}[5m])) / on (c) group_left y '
        "> bool 1 and last_over_time(z[4h:1m]) unless time() - w offset 1h"
    )
    assert metric_names(expr) == {"x_total", "y", "z", "w"}
    assert grouping_clauses(expr) == [{"a", "b"}]


def test_every_metric_an_alert_reads_is_exported(spec: Doc) -> None:
    """Member alerts read only the member metrics both engines export (and ``up``); operator
    alerts only the operator's registry."""
    for group, known in ((MEMBERS_GROUP, member_names()), (OPERATOR_GROUP, operator_names())):
        rules = rules_of(spec, group)
        assert rules, group
        for r in rules:
            names = metric_names(r["expr"])
            assert names, r["alert"]
            assert names <= known, (r["alert"], names - known)


def test_member_alerts_read_only_our_members_and_group_by_their_labels(spec: Doc) -> None:
    """Every member series is selected with ``etcd_cluster!=""``, so that another etcd that
    Prometheus scrapes (the control plane's) is never judged; they group by the labels the
    PodMonitor gives and etcd's own."""
    member_labels = set(TARGET_LABELS)
    for _, labels in MEMBER_METRICS.values():
        member_labels |= labels
    names = member_names()
    for r in rules_of(spec, MEMBERS_GROUP):
        expr = r["expr"]
        for found in IDENTIFIER.finditer(expr):
            if found.group() not in names:
                continue
            matchers = re.match(r"\s*\{([^}]*)\}", expr[found.end() :])
            assert matchers is not None, (r["alert"], found.group(), "selected without labels")
            assert 'etcd_cluster!=""' in matchers.group(1), (r["alert"], found.group())
        # Every aggregation keeps the cluster's identity, and uses labels the series have.
        for clause in grouping_clauses(expr):
            assert {"namespace", "etcd_cluster"} <= clause <= member_labels, (r["alert"], clause)
    for r in rules_of(spec, OPERATOR_GROUP):
        for clause in grouping_clauses(r["expr"]):
            assert {"namespace", "cluster"} <= clause <= {"namespace", "cluster", "reason"}


def test_the_operator_down_alert_reads_the_job_of_this_releases_namespace(spec: Doc) -> None:
    """Not about a cluster: its own group, the up series of the job the chart's ServiceMonitor
    and the documented scrape config name (test_chart_monitoring.py), in the release's
    namespace, which it also carries as a label (absent() makes none of its own)."""
    (rule,) = rules_of(spec, OPERATOR_UP_GROUP)
    assert rule["alert"] == "EtcdOperatorDown"
    assert rule["expr"].strip() == 'absent(up{job="etcd-operator", namespace="etcd-system"} == 1)'
    assert rule["labels"] == {"severity": "critical", "namespace": "etcd-system"}
    assert "etcd-system" in rule["annotations"]["summary"]


# --- what the alerts say ------------------------------------------------------------------------


def printed_labels(text: str) -> set[str]:
    return set(re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", text))


def test_alerts_name_their_cluster_and_pod_from_labels_they_have(spec: Doc) -> None:
    """Severity, summary, description, runbook; the cluster by namespace and name; the member
    pod when the alert is about one; only labels the alert carries (as the promtool tests
    expect them), so nothing renders as "<no value>", and none that could hold a secret."""
    alert_labels: dict[str, set[str]] = {}
    for name, expected in expectations():
        for e in expected:
            alert_labels.setdefault(name, set()).update(e["exp_labels"])
    for group, cluster_label in ((MEMBERS_GROUP, "etcd_cluster"), (OPERATOR_GROUP, "cluster")):
        for r in rules_of(spec, group):
            name, annotations = r["alert"], r["annotations"]
            assert r["labels"]["severity"] in {"warning", "critical"}, name
            assert set(annotations) == {"summary", "description", "runbook_url"}, name
            has = alert_labels[name]
            for key in ("summary", "description"):
                printed = printed_labels(annotations[key])
                assert {"namespace", cluster_label} <= printed, (name, key)
                assert printed <= PRINTABLE_LABELS, (name, key, printed - PRINTABLE_LABELS)
                assert printed <= has, (name, key, printed - has)
            if group == MEMBERS_GROUP and "pod" in has:
                assert "pod" in printed_labels(annotations["description"]), name


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to
    hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> dict[str, str]:
    """Each heading's anchor (GitHub numbers repeated ones: -1, -2, ...) -> its section text."""
    found: dict[str, str] = {}
    seen: dict[str, int] = {}
    parts = re.split(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found[base if count == 0 else f"{base}-{count}"] = body
    return found


def test_every_alert_links_to_its_runbook_section(spec: Doc) -> None:
    sections = anchors(OPERATIONS.read_text())
    names = {r["alert"] for r in rules_of(spec)}
    for r in rules_of(spec):
        url = r["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert (base, anchor) == (RUNBOOKS, r["alert"].lower()), url
        assert anchor in sections, f"docs/operations.md has no section #{anchor}"
        for part in RUNBOOK_PARTS:
            assert part in sections[anchor], (r["alert"], part)
    # And no runbook of an alert the chart does not ship.
    runbooks = OPERATIONS.read_text().split("## Alerts and their runbooks", 1)[1]
    assert set(re.findall(r"^### (\S+)$", runbooks, flags=re.MULTILINE)) == names


def test_the_runbook_links_default_to_the_documented_page(helm: Path) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]
    default = values["runbookBaseURL"]
    assert default.endswith("/docs/operations.md")
    rule = render(helm)
    for r in rules_of(rule["spec"]):
        assert r["annotations"]["runbook_url"] == f"{default}#{r['alert'].lower()}"


def test_the_links_inside_the_runbooks_page_resolve() -> None:
    text = OPERATIONS.read_text()
    sections = anchors(text)
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links, "no links found"
    assert links - set(sections) == set()
