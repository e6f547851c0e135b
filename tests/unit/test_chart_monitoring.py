"""The chart's member PodMonitor and dashboard ConfigMaps, and the scrape config of the docs.

The PodMonitor must select the pods the operator's StatefulSet builder makes (its labels are
taken from the builder here, not written down again) and never the operator's own pod, scrape
their ``metrics`` port, and give every series the labels the alerts and dashboards group by
(``etcd_cluster``, ``namespace``, ``pod``). Its relabelling, and that of the plain Prometheus
scrape config in ``docs/monitoring.md``, are run here on the discovery labels Prometheus gives
a member pod (``__meta_kubernetes_pod_label_<name>`` & co.), and promtool checks the docs'
config. The dashboards reach Grafana's sidecar as ConfigMaps that hold the JSON files unchanged.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components import naming
from etcd_operator.components.statefulset import statefulset

from tests.monitored import TARGET_LABELS
from tests.unit.chart_copy import CHART
from tests.unit.operator.components.clusters import POD_TEMPLATE_EXTRAS, make_cluster
from tests.unit.test_chart import (
    K8S_VERSION,
    NAMESPACE,
    RELEASE,
    Doc,
    helm,
    of_kind,
    one,
    render,
    values_file,
)
from tests.unit.test_dashboards import promtool
from tools.tools import Tools

ROOT = CHART.parents[1]
DOCS = ROOT / "docs" / "monitoring.md"
DASHBOARDS = CHART / "dashboards"

MEMBER_MONITOR = {"memberMonitor": {"enabled": True}}
# Member labels this chart relies on: what the PodMonitor adds to every series.
MEMBER_TARGET_LABELS = {"etcd_cluster", "namespace", "pod"}


# --- what the operator makes ------------------------------------------------------------------


def member_pod(cluster: str, namespace: str, spec: Mapping[str, Any] | None = None) -> Doc:
    """The pod template of a cluster's StatefulSet, as the operator builds it."""
    sts = statefulset(
        make_cluster(dict(spec or {}), name=cluster, namespace=namespace), OperatorSettings()
    )
    template: Doc = sts["spec"]["template"]
    return template


MEMBERS = {
    "plain": member_pod("main", "team-a"),
    # A user's pod labels try to take app.kubernetes.io/instance; ours win.
    "podTemplate labels": member_pod("orders", "shop", {"podTemplate": POD_TEMPLATE_EXTRAS}),
    "upstream etcd": member_pod("etcd", "kube", {"engine": "etcd", "replicas": 3}),
}


def matches(selector: Doc, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def sanitize(label: str) -> str:
    """A Kubernetes label name as Prometheus' discovery spells it in meta labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def discovered(pod: Doc, name: str, namespace: str) -> list[dict[str, str]]:
    """The targets Prometheus' pod discovery gives for a pod: one per container port."""
    base = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_ip": "10.0.0.7",
    }
    for key, value in pod["metadata"]["labels"].items():
        base[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
        base[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
    targets = []
    for c in pod["spec"]["containers"]:
        for port in c.get("ports", []):
            targets.append(
                {
                    **base,
                    "__address__": f"10.0.0.7:{port['containerPort']}",
                    "__meta_kubernetes_pod_container_name": c["name"],
                    "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                    "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                }
            )
    return targets


def relabel(labels: dict[str, str], configs: list[Doc]) -> dict[str, str] | None:
    """Prometheus' relabelling (replace, keep, drop) in either spelling: the scrape config's
    snake_case or prometheus-operator's camelCase. None when the target is dropped."""
    labels = dict(labels)
    for config in configs:
        sources: list[str] = config.get("source_labels") or config.get("sourceLabels") or []
        separator: str = config.get("separator", ";")
        value = separator.join(labels.get(s, "") for s in sources)
        regex = re.compile(f"^(?:{config.get('regex', '(.*)')})$")
        action = config.get("action", "replace")
        m = regex.match(value)
        if action == "keep" and m is None:
            return None
        if action == "drop" and m is not None:
            return None
        if action == "replace" and m is not None:
            target = config.get("target_label", config.get("targetLabel"))
            assert target, config
            replacement = m.expand(config.get("replacement", "$1").replace("$", "\\"))
            if replacement:
                labels[target] = replacement
            else:
                labels.pop(target, None)
        assert action in {"keep", "drop", "replace"}, action
    return labels


def public(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if not k.startswith("__")}


# --- the PodMonitor ---------------------------------------------------------------------------


def test_off_by_default(tools: Tools, chart: Path, tmp_path: Path) -> None:
    docs = render(tools, chart, tmp_path, {})
    assert not of_kind(docs, "PodMonitor")
    assert not of_kind(docs, "ConfigMap")


def podmonitor(tools: Tools, chart: Path, tmp_path: Path, values: Mapping[str, Any]) -> Doc:
    docs = render(tools, chart, tmp_path, values)
    return one(docs, "PodMonitor")


def test_podmonitor_shape(tools: Tools, chart: Path, tmp_path: Path) -> None:
    monitor = podmonitor(
        tools,
        chart,
        tmp_path,
        {
            "memberMonitor": {
                "enabled": True,
                "interval": "15s",
                "scrapeTimeout": "5s",
                "labels": {"release": "kube-prometheus-stack"},
            }
        },
    )
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["name"] == f"{RELEASE}-etcd-operator-members"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http"
    assert endpoint["interval"] == "15s"
    assert endpoint["scrapeTimeout"] == "5s"


@pytest.mark.parametrize("case", sorted(MEMBERS))
def test_podmonitor_selects_member_pods_on_their_metrics_port(
    tools: Tools, chart: Path, tmp_path: Path, case: str
) -> None:
    selector = podmonitor(tools, chart, tmp_path, MEMBER_MONITOR)["spec"]["selector"]
    pod = MEMBERS[case]
    assert matches(selector, pod["metadata"]["labels"]), pod["metadata"]["labels"]
    ports = {p["name"]: p for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert ports["metrics"]["containerPort"] == naming.METRICS_PORT
    # etcd's --listen-metrics-urls serves /metrics on it, plain http even with client TLS.
    (container,) = pod["spec"]["containers"]
    assert f"--listen-metrics-urls=http://0.0.0.0:{naming.METRICS_PORT}" in container["args"]


def test_podmonitor_does_not_select_the_operator(tools: Tools, chart: Path, tmp_path: Path) -> None:
    docs = render(tools, chart, tmp_path, MEMBER_MONITOR)
    selector = one(docs, "PodMonitor")["spec"]["selector"]
    operator_pod = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not matches(selector, operator_pod), operator_pod
    # Nor any pod that only looks like a member in part (the operator's pod with its name set
    # to etcd, a pod of another controller labelled for the cluster).
    member = MEMBERS["plain"]["metadata"]["labels"]
    for key in (naming.LABEL_MANAGED_BY, naming.LABEL_COMPONENT, naming.LABEL_NAME):
        assert not matches(selector, {**member, key: "something-else"}), key


@pytest.mark.parametrize("case", sorted(MEMBERS))
def test_podmonitor_relabels_to_etcd_cluster(
    tools: Tools, chart: Path, tmp_path: Path, case: str
) -> None:
    """The PodMonitor's relabelings, run on what discovery says about the member's metrics
    port, give the cluster's name, namespace and pod."""
    (endpoint,) = podmonitor(tools, chart, tmp_path, MEMBER_MONITOR)["spec"]["podMetricsEndpoints"]
    pod = MEMBERS[case]
    cluster = pod["metadata"]["labels"][naming.LABEL_CLUSTER]
    namespace = {"main": "team-a", "orders": "shop", "etcd": "kube"}[cluster]
    (target,) = [
        t
        for t in discovered(pod, f"{cluster}-0", namespace)
        if t["__meta_kubernetes_pod_container_port_name"] == endpoint["port"]
    ]
    labels = relabel(target, endpoint["relabelings"])
    assert labels is not None
    assert {k: public(labels)[k] for k in MEMBER_TARGET_LABELS} == {
        "etcd_cluster": cluster,
        "namespace": namespace,
        "pod": f"{cluster}-0",
    }
    assert MEMBER_TARGET_LABELS <= TARGET_LABELS
    # The source is the label the issue names, the cluster's name on every member.
    sources = {s for r in endpoint["relabelings"] for s in r["sourceLabels"]}
    assert f"__meta_kubernetes_pod_label_{sanitize(naming.LABEL_INSTANCE)}" in sources


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, {"any": True}),
        ({"watchNamespaces": ["team-a", "team-b"]}, {"matchNames": ["team-a", "team-b"]}),
        (
            {"watchNamespaces": ["team-a"], "memberMonitor": {"namespaces": ["shop"]}},
            {"matchNames": ["shop"]},
        ),
        ({"memberMonitor": {"namespaces": ["shop", "kube"]}}, {"matchNames": ["shop", "kube"]}),
    ],
    ids=["all", "watchNamespaces", "own list over watchNamespaces", "own list"],
)
def test_podmonitor_namespaces(
    tools: Tools, chart: Path, tmp_path: Path, values: Doc, expected: Doc
) -> None:
    monitor_values = {**values.get("memberMonitor", {}), "enabled": True}
    monitor = podmonitor(tools, chart, tmp_path, {**values, "memberMonitor": monitor_values})
    assert monitor["spec"]["namespaceSelector"] == expected


# --- the dashboards' ConfigMaps ---------------------------------------------------------------


def dashboard_configmaps(docs: list[Doc]) -> dict[str, Doc]:
    return {
        key: cm for cm in of_kind(docs, "ConfigMap") for key in cm["data"] if key.endswith(".json")
    }


def test_dashboards_reach_the_sidecar_unchanged(tools: Tools, chart: Path, tmp_path: Path) -> None:
    docs = render(tools, chart, tmp_path, {"grafanaDashboards": {"enabled": True}})
    maps = dashboard_configmaps(docs)
    files = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert sorted(maps) == files and len(files) == 3
    for name, cm in maps.items():
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == NAMESPACE
        assert cm["metadata"]["name"] == f"{RELEASE}-etcd-operator-dashboard-{name[:-5]}"
        assert "annotations" not in cm["metadata"]
        assert list(cm["data"]) == [name]
        assert cm["data"][name] == (DASHBOARDS / name).read_text(encoding="utf-8")
        json.loads(cm["data"][name])
        # A ConfigMap holds at most 1 MiB.
        assert len(json.dumps(cm)) < 1024 * 1024
        kubernetes_validate.validate(cm, K8S_VERSION, strict=True)


def test_dashboards_label_namespace_and_folder(tools: Tools, chart: Path, tmp_path: Path) -> None:
    values = {
        "grafanaDashboards": {
            "enabled": True,
            "label": "grafana.example.com/dashboard",
            "labelValue": "etcd",
            "namespace": "monitoring",
            "folder": "Databases/etcd",
            "folderAnnotation": "k8s-sidecar-target-directory",
            "labels": {"team": "db"},
            "annotations": {"note": "x"},
        }
    }
    maps = dashboard_configmaps(render(tools, chart, tmp_path, values))
    assert len(maps) == 3
    for cm in maps.values():
        meta = cm["metadata"]
        assert meta["namespace"] == "monitoring"
        assert meta["labels"]["grafana.example.com/dashboard"] == "etcd"
        assert "grafana_dashboard" not in meta["labels"]
        assert meta["labels"]["team"] == "db"
        assert meta["annotations"] == {
            "k8s-sidecar-target-directory": "Databases/etcd",
            "note": "x",
        }
        kubernetes_validate.validate(cm, K8S_VERSION, strict=True)


MONITORING = {
    "memberMonitor": {"enabled": True, "labels": {"release": "prom"}},
    "grafanaDashboards": {"enabled": True, "folder": "etcd"},
}


def test_helm_lint_strict_with_monitoring(tools: Tools, chart: Path, tmp_path: Path) -> None:
    proc = helm(
        tools, "lint", "--strict", str(chart), "--values", str(values_file(tmp_path, MONITORING))
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"memberMonitor": {"enabled": "yes"}}, "/memberMonitor/enabled"),
        ({"memberMonitor": {"interval": "30"}}, "/memberMonitor/interval"),
        ({"memberMonitor": {"namespaces": "team-a"}}, "/memberMonitor/namespaces"),
        ({"memberMonitor": {"selector": {}}}, "selector"),
        ({"grafanaDashboards": {"labelValue": 1}}, "/grafanaDashboards/labelValue"),
        ({"grafanaDashboards": {"label": "not a label"}}, "/grafanaDashboards/label"),
        ({"grafanaDashboards": {"namespace": "Monitoring"}}, "/grafanaDashboards/namespace"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v),
)
def test_values_schema_refuses_wrong_monitoring_values(
    tools: Tools, chart: Path, tmp_path: Path, values: Doc, message: str
) -> None:
    proc = helm(tools, "template", RELEASE, str(chart), "-f", str(values_file(tmp_path, values)))
    assert proc.returncode != 0, f"accepted {values}"
    assert "schema" in proc.stderr and message in proc.stderr, proc.stderr


# --- the docs' plain Prometheus config ----------------------------------------------------------


def docs_scrape_config() -> Doc:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(scrape_configs:.*?)```", text, re.DOTALL)
    assert len(blocks) == 1, "docs/monitoring.md: one ```yaml block starting scrape_configs:"
    config: Doc = yaml.safe_load(blocks[0])
    return config


def test_docs_scrape_config_is_valid_prometheus_config(tmp_path: Path) -> None:
    """promtool checks the config with each job's discovery swapped for a static target:
    Debian's Prometheus is built without Kubernetes discovery, so its promtool refuses
    ``kubernetes_sd_configs`` whatever it holds. The discovery roles are checked here."""
    config = docs_scrape_config()
    roles = {}
    for job in config["scrape_configs"]:
        (sd,) = job.pop("kubernetes_sd_configs")
        roles[job["job_name"]] = sd
        job["static_configs"] = [{"targets": ["10.0.0.7:2381"]}]
    assert roles == {"etcd-members": {"role": "pod"}, "etcd-operator": {"role": "endpoints"}}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [promtool(), "check", "config", "--syntax-only", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_docs_scrape_config_scrapes_members_like_the_podmonitor(
    tools: Tools, chart: Path, tmp_path: Path
) -> None:
    """Run on every port of every pod: the members' metrics ports, and nothing else, come
    out, with the labels the PodMonitor gives them."""
    (job,) = [j for j in docs_scrape_config()["scrape_configs"] if j["job_name"] == "etcd-members"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    docs = render(tools, chart, tmp_path, MEMBER_MONITOR)
    (endpoint,) = one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"]
    for case, pod in MEMBERS.items():
        cluster = pod["metadata"]["labels"][naming.LABEL_CLUSTER]
        targets = discovered(pod, f"{cluster}-1", "ns1")
        kept = [t for t in (relabel(t, job["relabel_configs"]) for t in targets) if t]
        assert len(targets) == 3 and len(kept) == 1, case
        (labels,) = kept
        assert labels["__address__"].endswith(f":{naming.METRICS_PORT}")
        (metrics_target,) = [
            t for t in targets if t["__meta_kubernetes_pod_container_port_name"] == "metrics"
        ]
        from_monitor = relabel(metrics_target, endpoint["relabelings"])
        assert from_monitor is not None
        assert {k: labels[k] for k in MEMBER_TARGET_LABELS} == {
            k: from_monitor[k] for k in MEMBER_TARGET_LABELS
        }
        assert labels["etcd_cluster"] == cluster
    operator_pod = one(docs, "Deployment")["spec"]["template"]
    assert not [
        t
        for t in discovered(operator_pod, "eo-etcd-operator-abc", NAMESPACE)
        if relabel(t, job["relabel_configs"])
    ]


def test_docs_scrape_config_keeps_the_operators_cluster_labels(
    tools: Tools, chart: Path, tmp_path: Path
) -> None:
    """The operator job honours the scraped labels, as the chart's ServiceMonitor does: the
    per-cluster gauges' namespace is the cluster's. Both name the job etcd-operator, the job
    EtcdOperatorDown looks for (its expression: test_prometheus_rules.py)."""
    (job,) = [j for j in docs_scrape_config()["scrape_configs"] if j["job_name"] == "etcd-operator"]
    assert job["honor_labels"] is True
    docs = render(tools, chart, tmp_path, {"serviceMonitor": {"enabled": True}})
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert {"targetLabel": "job", "replacement": "etcd-operator"} in endpoint["relabelings"]
    service = one(docs, "Service")
    meta = {
        f"__meta_kubernetes_service_label_{sanitize(k)}": v
        for k, v in service["metadata"]["labels"].items()
    }
    meta["__meta_kubernetes_namespace"] = NAMESPACE
    meta["__meta_kubernetes_endpoint_port_name"] = service["spec"]["ports"][0]["name"]
    assert relabel(meta, job["relabel_configs"]) is not None
    assert (
        relabel({**meta, "__meta_kubernetes_endpoint_port_name": "health"}, job["relabel_configs"])
        is None
    )
