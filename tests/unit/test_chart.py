"""The Helm chart: `helm lint --strict`, manifests valid against Kubernetes 1.33, RBAC's shape.

Real helm renders the chart (fetched by ``tools/tools.py`` in a session fixture); every rendered
object except the ServiceMonitor (a CRD type) is validated strictly with ``kubernetes_validate``.
The chart is rendered from a copy; when the generated CRD is not in the chart yet, the copy gets a
placeholder CRD so that ``--include-crds`` renders something valid.

RBAC here is structure (``e2e.rbac`` folds the rules): no wildcards, bound to the operator's
service account only, and the same permissions whether the operator watches all namespaces or
some, placed at the right scope. Which verbs the operator needs is not a table here: the e2e run
records what the operator asks for in the API server's audit log, and ``e2e/test_rbac.py`` checks
the chart grants exactly that (plus its short list of permissions no request shows).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pyetcd
import pytest
import yaml
from etcd_operator.api.settings import ENV_PREFIX, OperatorSettings
from etcd_operator.main import parse_args

from e2e.rbac import Permission, granted, role_permissions, service_account_user
from tests.unit.chart_copy import CHART
from tools.tools import Tools

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33"
RELEASE = "eo"
NAMESPACE = "etcd-system"
FULLNAME = f"{RELEASE}-etcd-operator"

# Variables the entry point (etcd_operator.main) reads besides the settings model's.
ENTRY_POINT_ENV = {f"{ENV_PREFIX}METRICS_PORT"}


Doc = dict[str, Any]

OPERATOR_USER = service_account_user(NAMESPACE, FULLNAME)
# kopf lists and watches namespaces only when it serves a list of them, never when it serves all
# (kopf/_core/reactor/observation.py, namespace_observer): the one difference between the modes.
KOPF_NAMESPACE_OBSERVATION = frozenset(
    {Permission("", "namespaces", "list"), Permission("", "namespaces", "watch")}
)
# Of the resources the operator touches, the cluster-scoped ones (a Kubernetes fact): the only
# ones a ClusterRole may hold when the operator serves some namespaces.
CLUSTER_SCOPED = {
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumes"),
}
# Nothing the operator does needs these; a grant of them would be a leak.
SENSITIVE = {"pods/exec", "pods/attach", "leases", "serviceaccounts/token"}

NAMESPACED_VALUES: Doc = {
    "watchNamespaces": ["team-a", "team-b"],
    "logLevel": "debug",
}
MONITORING_VALUES: Doc = {
    "serviceMonitor": {
        "enabled": True,
        "interval": "15s",
        "scrapeTimeout": "5s",
        "labels": {"release": "prometheus"},
    },
    "prometheusRule": {"enabled": True, "backupMaxAgeSeconds": 7200, "labels": {"team": "db"}},
    "metrics": {
        "port": 9191,
        "service": {"enabled": True, "type": "ClusterIP", "port": 9191, "annotations": {}},
    },
}
CUSTOM_VALUES: Doc = {
    "image": {
        "repository": "registry.example.com/ops/etcd-operator",
        "tag": "1.2.3",
        "pullPolicy": "Always",
    },
    "members": {
        "pyetcdImage": "registry.example.com/ops/pyetcd",
        "etcdImage": "quay.io/coreos/etcd",
        "imagePullPolicy": "Always",
        "ssdNodeLabel": "disktype=ssd",
        "statusIntervalSeconds": 12.5,
        "etcdTimeoutSeconds": 3,
        "clusterDomain": "k8s.example",
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "ops", "operator": "Exists"}]}]
            }
        }
    },
    "extraEnv": [{"name": "EXTRA", "value": "1"}],
    "serviceAccount": {"create": True, "name": "etcd-ops", "annotations": {"a": "b"}},
    "podAnnotations": {"example.com/scrape": "true"},
    "podLabels": {"team": "storage"},
    "priorityClassName": "system-cluster-critical",
    "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"memory": "1Gi"}},
    "args": ["--standalone", "--verbose"],
}
NO_RBAC_VALUES: Doc = {
    "rbac": {"create": False},
    "serviceAccount": {"create": False, "name": "preexisting"},
    "metrics": {
        "port": 9090,
        "service": {"enabled": False, "type": "ClusterIP", "port": 9090, "annotations": {}},
    },
}
VALUE_SETS: dict[str, Doc] = {
    "default": {},
    "namespaced": NAMESPACED_VALUES,
    "monitoring": MONITORING_VALUES,
    "custom": CUSTOM_VALUES,
    "no-rbac": NO_RBAC_VALUES,
}


def helm(tools: Tools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools.helm), *args], capture_output=True, text=True, check=False, timeout=120
    )


def values_file(tmp_path: Path, values: Mapping[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(dict(values)))
    return path


def render(tools: Tools, chart: Path, tmp_path: Path, values: Mapping[str, Any]) -> list[Doc]:
    proc = helm(
        tools,
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        NAMESPACE,
        "--include-crds",
        "--values",
        str(values_file(tmp_path, values)),
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(params=sorted(VALUE_SETS))
def rendered(
    request: pytest.FixtureRequest, tools: Tools, chart: Path, tmp_path: Path
) -> tuple[str, list[Doc]]:
    name: str = request.param
    return name, render(tools, chart, tmp_path, VALUE_SETS[name])


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str) -> Doc:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[Doc]) -> Doc:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: Doc = containers[0]
    return c


def env_of(docs: list[Doc]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(docs)["env"] if "value" in e}


def resources(permissions: frozenset[Permission]) -> set[tuple[str, str]]:
    return {(p.group, p.resource) for p in permissions}


# --- lint -------------------------------------------------------------------------------------


def test_helm_lint_strict(tools: Tools, chart: Path) -> None:
    proc = helm(tools, "lint", "--strict", str(chart))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict_with_each_value_set(
    tools: Tools, chart: Path, tmp_path: Path, name: str
) -> None:
    proc = helm(
        tools,
        "lint",
        "--strict",
        str(chart),
        "--values",
        str(values_file(tmp_path, VALUE_SETS[name])),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_metadata() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "etcd-operator"
    assert meta["type"] == "application"
    assert isinstance(meta["appVersion"], str) and meta["appVersion"]


# --- Kubernetes 1.33 schema ---------------------------------------------------------------------


def test_manifests_are_valid_kubernetes_1_33(rendered: tuple[str, list[Doc]]) -> None:
    name, docs = rendered
    assert docs, f"{name}: nothing rendered"
    for doc in docs:
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # a CRD type: its shape is asserted in test_servicemonitor_shape
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata'].get('name')}: {err.message}")


def test_rendered_kinds(rendered: tuple[str, list[Doc]]) -> None:
    name, docs = rendered
    kinds = sorted(d["kind"] for d in docs)
    expected = {
        "default": [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Service",
            "ServiceAccount",
        ],
        "namespaced": [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ],
        "monitoring": [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ],
        "custom": [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Service",
            "ServiceAccount",
        ],
        "no-rbac": [
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
        ],
    }[name]
    assert kinds == expected


def test_standard_labels(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    for doc in docs:
        if doc["kind"] == "CustomResourceDefinition":
            continue  # owned by the CRD generator, not by the chart's templates
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "etcd-operator"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"].startswith("etcd-operator-")


# --- RBAC -------------------------------------------------------------------------------------


def test_rbac_has_no_wildcards(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups", "resourceNames"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            assert "nonResourceURLs" not in rule


def test_rbac_is_the_operators_alone(rendered: tuple[str, list[Doc]]) -> None:
    """Every binding names the operator's service account and nothing else, every role is
    bound to it, and no role touches what the operator never needs."""
    _, docs = rendered
    account = one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    for binding in of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
    roles = of_kind(docs, "ClusterRole") + of_kind(docs, "Role")
    spelled_out = frozenset[Permission]().union(*map(role_permissions, roles))
    user = service_account_user(NAMESPACE, account)
    bound = frozenset[Permission]().union(*granted(docs, user, NAMESPACE).values())
    assert bound == spelled_out
    assert not {p.resource for p in spelled_out} & SENSITIVE
    # Nodes and volumes are read, one by name (the node of a member pod that is not Ready, the
    # volume of its claim): never changed, never listed across the cluster.
    assert {p.verb for p in spelled_out if p.resource in ("nodes", "persistentvolumes")} <= {"get"}
    # Secrets are read by name (a backup store's, a user's TLS Secrets) and written by
    # server-side apply (the TLS Secrets the operator generates); listing or watching would
    # hand the operator every Secret of every namespace it serves, and it deletes none (the
    # garbage collector does, with their cluster).
    assert {p.verb for p in spelled_out if p.resource == "secrets"} <= {"get", "create", "patch"}


def test_cluster_wide_rbac_when_watching_all_namespaces(
    tools: Tools, chart: Path, tmp_path: Path
) -> None:
    docs = render(tools, chart, tmp_path, {})
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    cluster_role = one(docs, "ClusterRole")
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": cluster_role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    grants = granted(docs, OPERATOR_USER, NAMESPACE)
    assert grants == {"": role_permissions(cluster_role)}
    assert not grants[""] & KOPF_NAMESPACE_OBSERVATION


def test_namespaced_rbac_when_watching_some_namespaces(
    tools: Tools, chart: Path, tmp_path: Path
) -> None:
    """The permissions of the cluster-wide mode plus kopf's observation of namespaces: those on
    namespaced resources in a Role of each listed namespace, the rest in the ClusterRole."""
    wide = granted(render(tools, chart, tmp_path, {}), OPERATOR_USER, NAMESPACE)[""]
    docs = render(tools, chart, tmp_path, NAMESPACED_VALUES)
    roles = {r["metadata"]["namespace"]: r for r in of_kind(docs, "Role")}
    assert set(roles) == {"team-a", "team-b"}
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(docs, "RoleBinding")}
    assert set(bindings) == {"team-a", "team-b"}
    for namespace, binding in bindings.items():
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] == roles[namespace]["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]
    grants = granted(docs, OPERATOR_USER, NAMESPACE)
    assert set(grants) == {"", "team-a", "team-b"}
    assert grants["team-a"] == grants["team-b"]
    assert resources(grants[""]) <= CLUSTER_SCOPED
    assert not resources(grants["team-a"]) & CLUSTER_SCOPED
    assert grants[""] | grants["team-a"] == wide | KOPF_NAMESPACE_OBSERVATION


def test_namespace_flags_follow_watch_namespaces(tools: Tools, chart: Path, tmp_path: Path) -> None:
    default_args = container(render(tools, chart, tmp_path, {}))["args"]
    assert "--all-namespaces" in default_args
    assert not any(a.startswith("--namespace") for a in default_args)
    namespaced_args = container(render(tools, chart, tmp_path, NAMESPACED_VALUES))["args"]
    assert "--all-namespaces" not in namespaced_args
    assert [a for a in namespaced_args if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    assert "--debug" in namespaced_args and "--debug" not in default_args


def test_no_rbac_and_existing_service_account(tools: Tools, chart: Path, tmp_path: Path) -> None:
    docs = render(tools, chart, tmp_path, NO_RBAC_VALUES)
    assert not of_kind(docs, "ServiceAccount")
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io")]
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "preexisting"


# --- the Deployment ---------------------------------------------------------------------------


def test_deployment_runs_non_root_with_read_only_root(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    # A read-only root still needs a scratch /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_deployment_single_instance(tools: Tools, chart: Path, tmp_path: Path) -> None:
    deployment = one(render(tools, chart, tmp_path, {}), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "--standalone" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_probes_and_ports(rendered: tuple[str, list[Doc]]) -> None:
    name, docs = rendered
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["health"] == 8080
    assert ports["metrics"] == (9191 if name == "monitoring" else 9090)
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert env_of(docs)[f"{ENV_PREFIX}METRICS_PORT"] == str(ports["metrics"])


def test_metrics_service_selects_the_operator(tools: Tools, chart: Path, tmp_path: Path) -> None:
    docs = render(tools, chart, tmp_path, {})
    service = one(docs, "Service")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_env_sets_every_operator_setting_to_its_default(
    tools: Tools, chart: Path, tmp_path: Path
) -> None:
    docs = render(tools, chart, tmp_path, {})
    env = env_of(docs)
    # The operator's namespace comes from the downward API.
    (namespace,) = [e for e in container(docs)["env"] if e["name"].endswith("OPERATOR_NAMESPACE")]
    assert namespace["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    expected = {ENV_PREFIX + name.upper() for name in OperatorSettings.model_fields}
    operator_env = {k for k in env if k.startswith(ENV_PREFIX)} | {namespace["name"]}
    assert expected <= operator_env, f"settings without a chart value: {expected - operator_env}"
    assert operator_env - expected <= ENTRY_POINT_ENV
    # values.yaml's defaults are the operator's own defaults, but for what only a deployment
    # knows (its pods' labels) and the NetworkPolicy, on by default in the chart (the issue's
    # choice: a chart user gets it; an operator run by hand, e.g. from a workstation, does not).
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert OperatorSettings.from_env(env) == OperatorSettings(
        network_policy_default=True,
        operator_pod_labels=",".join(f"{k}={v}" for k, v in selector.items()),
    )


def test_entry_point_accepts_the_rendered_command(rendered: tuple[str, list[Doc]]) -> None:
    """The Deployment's args and env parse with the operator's own command line."""
    name, docs = rendered
    c = container(docs)
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    args = parse_args(c["args"], env)
    assert args.standalone is True
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    assert args.metrics_port == {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
    if name == "namespaced":
        assert args.namespace == ["team-a", "team-b"] and not args.all_namespaces
    else:
        assert args.all_namespaces and not args.namespace
    assert args.debug is (name == "namespaced")


def test_custom_images_and_settings_reach_the_operator(
    tools: Tools, chart: Path, tmp_path: Path
) -> None:
    docs = render(tools, chart, tmp_path, CUSTOM_VALUES)
    c = container(docs)
    assert c["image"] == "registry.example.com/ops/etcd-operator:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    settings = OperatorSettings.from_env(env_of(docs))
    assert settings.pyetcd_image == "registry.example.com/ops/pyetcd"
    assert settings.etcd_image == "quay.io/coreos/etcd"
    assert settings.image_pull_policy == "Always"
    assert settings.ssd_node_label == "disktype=ssd"
    assert settings.status_interval_seconds == 12.5
    assert settings.etcd_timeout_seconds == 3.0
    assert settings.cluster_domain == "k8s.example"
    assert env_of(docs)["EXTRA"] == "1"
    assert c["args"][:2] == ["--standalone", "--verbose"]
    pod = one(docs, "Deployment")["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "etcd-ops"
    assert one(docs, "ServiceAccount")["metadata"]["name"] == "etcd-ops"
    assert pod["spec"]["nodeSelector"] == CUSTOM_VALUES["nodeSelector"]
    assert pod["spec"]["tolerations"] == CUSTOM_VALUES["tolerations"]
    assert pod["spec"]["affinity"] == CUSTOM_VALUES["affinity"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["metadata"]["labels"]["team"] == "storage"
    assert pod["metadata"]["annotations"] == {"example.com/scrape": "true"}
    assert c["resources"] == CUSTOM_VALUES["resources"]


def test_default_image_tag_is_app_version(tools: Tools, chart: Path, tmp_path: Path) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    c = container(render(tools, chart, tmp_path, {}))
    assert c["image"] == f"ghcr.io/pyetcd/etcd-operator:{app_version}"


# --- ServiceMonitor ---------------------------------------------------------------------------


def test_servicemonitor_shape(tools: Tools, chart: Path, tmp_path: Path) -> None:
    docs = render(tools, chart, tmp_path, MONITORING_VALUES)
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    spec = monitor["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["endpoints"] == [
        {
            "port": "metrics",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "5s",
            "honorLabels": True,
            "relabelings": [{"targetLabel": "job", "replacement": "etcd-operator"}],
        }
    ]
    assert service["spec"]["ports"][0]["name"] == "metrics"
    assert service["spec"]["ports"][0]["port"] == 9191


def test_prometheus_rule_takes_its_labels_and_backup_age_from_the_values(
    tools: Tools, chart: Path, tmp_path: Path
) -> None:
    # What the alerts read and say, and promtool's verdict on them: test_prometheus_rules.py.
    docs = render(tools, chart, tmp_path, MONITORING_VALUES)
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["team"] == "db"
    rules = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert rules["EtcdBackupTooOld"]["expr"].endswith("> 7200")


def test_servicemonitor_needs_the_metrics_service(
    tools: Tools, chart: Path, tmp_path: Path
) -> None:
    values = {
        "serviceMonitor": {"enabled": True},
        "metrics": {
            "port": 9090,
            "service": {"enabled": False, "type": "ClusterIP", "port": 9090},
        },
    }
    proc = helm(tools, "template", RELEASE, str(chart), "-f", str(values_file(tmp_path, values)))
    assert proc.returncode != 0
    assert "metrics.service.enabled" in proc.stderr


# --- values.schema.json -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"replicaCount": 2}, "/replicaCount"),
        ({"watchNamespaces": "team-a"}, "/watchNamespaces"),
        ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
        ({"serviceMonitor": {"enabled": "yes"}}, "/serviceMonitor/enabled"),
        ({"rbac": {"create": "true"}}, "/rbac/create"),
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"image": {"repository": "r", "tag": 1.0, "pullPolicy": "IfNotPresent"}}, "/image/tag"),
        ({"members": {"statusIntervalSeconds": "30s"}}, "/members/statusIntervalSeconds"),
        ({"securityContext": {"readOnlyRootFilesystem": "yes"}}, "readOnlyRootFilesystem"),
        ({"replicas": 1}, "replicas"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v),
)
def test_values_schema_refuses_wrong_values(
    tools: Tools, chart: Path, tmp_path: Path, values: Doc, message: str
) -> None:
    proc = helm(tools, "template", RELEASE, str(chart), "-f", str(values_file(tmp_path, values)))
    assert proc.returncode != 0, f"accepted {values}"
    assert "schema" in proc.stderr and message in proc.stderr, proc.stderr


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, (*path, str(k)))
    else:
        yield path, value


def test_values_schema_types_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    untyped = []
    for path, _ in _leaves(values):
        node = schema
        for part in path:
            props = node.get("properties", {})
            if part in props:
                node = props[part]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            else:
                node = {}
                break
        if "type" not in node:
            untyped.append(".".join(path))
    assert not untyped, f"values without a type in values.schema.json: {untyped}"


def test_notes_explain_the_first_cluster(tools: Tools, chart: Path) -> None:
    proc = helm(tools, "install", RELEASE, str(chart), "--namespace", NAMESPACE, "--dry-run=client")
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "kind: EtcdCluster" in notes
    assert "kubectl get etcdclusters" in notes
    assert "etcd.pyetcd.io/disk=ssd" in notes
    assert "my-etcd-client" in notes
    # The first cluster runs the bundled pyetcd image, whose tag is the etcd version it speaks.
    assert f"version: {pyetcd.__version__}" in notes
