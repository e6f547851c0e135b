"""The pydantic models of EtcdCluster: their rules, their defaults as the API server applies them,
and the api package's place at the bottom of the operator's layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from etcd_operator.api import v1alpha1
from etcd_operator.api.v1alpha1 import (
    STORAGE_SIZE_PATTERN,
    AutoCompaction,
    Engine,
    EtcdCluster,
    EtcdClusterSpec,
    EtcdOptions,
    Phase,
    PlacementMode,
)
from pydantic import ValidationError

from tests.unit.operator.api import examples
from tests.unit.operator.api.kube_schema import admit, apply_defaults

SCHEMA = examples.openapi_schema()


@pytest.mark.parametrize("size", ["4Gi", "1.5Gi", "0.5Gi", "500M", "10G", "1Ti", "1024", ".5Gi"])
def test_storage_sizes_accepted(size: str) -> None:
    assert re.match(STORAGE_SIZE_PATTERN, size)


@pytest.mark.parametrize("size", ["0", "0Gi", "0.0Gi", "-1Gi", "+1Gi", "1e9", "100m", "4GB", ""])
def test_storage_sizes_refused(size: str) -> None:
    assert not re.match(STORAGE_SIZE_PATTERN, size)


def test_election_timeout_must_cover_five_heartbeats() -> None:
    EtcdOptions(heartbeatIntervalMs=200, electionTimeoutMs=1000)
    with pytest.raises(ValidationError, match="at least 5 times"):
        EtcdOptions(heartbeatIntervalMs=200, electionTimeoutMs=999)
    with pytest.raises(ValidationError, match="at least 5 times"):
        EtcdOptions(heartbeatIntervalMs=300)  # against the default timeout, as on the server


def test_revision_mode_keeps_a_number_of_revisions() -> None:
    AutoCompaction(mode="revision", retention="1000")
    AutoCompaction(mode="periodic", retention="90m")
    with pytest.raises(ValidationError, match="number of revisions"):
        AutoCompaction(mode="revision", retention="1h")


def test_a_minimal_spec_gets_the_same_defaults_on_both_sides() -> None:
    spec = EtcdClusterSpec(version="3.5.17").model_dump(mode="json", exclude_none=True)
    server = apply_defaults(SCHEMA, {"metadata": {"name": "a"}, "spec": {"version": "3.5.17"}})
    assert server["spec"] == {k: v for k, v in spec.items() if v != {}}
    assert server["spec"]["storage"]["placement"]["nodeLabel"] == v1alpha1.DEFAULT_SSD_LABEL


def test_crd_enums_are_the_python_enums() -> None:
    spec = SCHEMA["properties"]["spec"]["properties"]
    status = SCHEMA["properties"]["status"]["properties"]
    assert spec["engine"]["enum"] == [e.value for e in Engine]
    assert spec["storage"]["properties"]["placement"]["properties"]["mode"]["enum"] == [
        m.value for m in PlacementMode
    ]
    assert status["phase"]["enum"] == [p.value for p in Phase]


def test_status_written_by_the_operator_is_accepted() -> None:
    body = {
        "metadata": {"name": "a"},
        "spec": {"version": "3.5.17"},
        "status": v1alpha1.EtcdClusterStatus(
            phase=Phase.RUNNING,
            conditions=[
                v1alpha1.Condition(
                    type="Available",
                    status="True",
                    reason="QuorumHealthy",
                    lastTransitionTime="2025-01-01T00:00:00Z",
                )
            ],
            members=[v1alpha1.MemberStatus(name="a-0", id="8e9e05c52164694d", leader=True)],
            replicas=1,
            readyReplicas=1,
            selector="app.kubernetes.io/instance=a",
        ).model_dump(mode="json"),
    }
    # Dumped with its None values, as the operator's status merge patch is: the API server
    # drops a null where the schema is not nullable.
    assert body["status"]["members"][0]["version"] is None
    assert admit(SCHEMA, body) == []


def test_api_imports_nothing_else_from_the_operator() -> None:
    # The api package is the bottom layer: components, reconcile and handlers build on it.
    package = Path(v1alpha1.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("etcd_operator"):
                    assert name.startswith("etcd_operator.api"), f"{path.name} imports {name}"


# podTemplate values, and what the API server answers (a substring of its one error; None when it
# admits the cluster). The models must agree: refuse exactly these, for the same reason (the same
# words, except where the typed models speak pydantic's).
UNKNOWN = 'unknown field "'
EXTRA = "Extra inputs are not permitted"
ENUM = ("Unsupported value", "Input should be")
REQUIRED = ("Required value", "Field required")
ZONE_SPREAD = {
    "maxSkew": 1,
    "topologyKey": "topology.kubernetes.io/zone",
    "whenUnsatisfiable": "DoNotSchedule",
    "labelSelector": {"matchLabels": {"etcd.pyetcd.io/cluster": "a"}},
}
POD_TEMPLATES: list[tuple[str, dict[str, Any], str | tuple[str, str] | None]] = [
    ("resources", {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}, None),
    ("resources-integer", {"resources": {"limits": {"cpu": 2}}}, None),
    ("resources-words", {"resources": {"requests": {"cpu": "lots"}}}, "should match"),
    ("resources-unit", {"resources": {"limits": {"memory": "1GB"}}}, "should match"),
    ("resources-typo", {"resources": {"request": {"cpu": "1"}}}, UNKNOWN),
    ("resources-claims", {"resources": {"claims": [{"name": "gpu"}]}}, UNKNOWN),
    ("toleration", {"tolerations": [{"key": "a", "value": "b", "effect": "NoSchedule"}]}, None),
    ("toleration-all", {"tolerations": [{"operator": "Exists"}]}, None),
    (
        "toleration-noexecute",
        {"tolerations": [{"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]},
        None,
    ),
    ("toleration-operator", {"tolerations": [{"key": "a", "operator": "In"}]}, ENUM),
    ("toleration-effect", {"tolerations": [{"key": "a", "effect": "Evict"}]}, ENUM),
    ("toleration-typo", {"tolerations": [{"key": "a", "efect": "NoSchedule"}]}, (UNKNOWN, EXTRA)),
    ("toleration-no-key", {"tolerations": [{"value": "b"}]}, "without a key must have operator"),
    (
        "toleration-exists-value",
        {"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]},
        "with operator Exists has no value",
    ),
    (
        "toleration-seconds",
        {"tolerations": [{"key": "a", "tolerationSeconds": 5}]},
        "tolerationSeconds needs effect NoExecute",
    ),
    ("toleration-key", {"tolerations": [{"key": "a b"}]}, "should match"),
    ("pull-secret", {"imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}]}, None),
    ("pull-secret-no-name", {"imagePullSecrets": [{}]}, REQUIRED),
    ("pull-secret-empty-name", {"imagePullSecrets": [{"name": ""}]}, "should match"),
    (
        "pull-secret-typo",
        {"imagePullSecrets": [{"name": "regcred", "nmae": "regcred"}]},
        (UNKNOWN, EXTRA),
    ),
    (
        "pull-secret-twice",
        {"imagePullSecrets": [{"name": "regcred"}, {"name": "regcred"}]},
        "Duplicate value",
    ),
    ("affinity-typo", {"affinity": {"podAntiAfinity": {}}}, UNKNOWN),
    (
        "affinity-operator",
        {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "a", "operator": "Is"}]}
                        ]
                    }
                }
            }
        },
        "Unsupported value",
    ),
    ("spread", {"topologySpreadConstraints": [ZONE_SPREAD]}, None),
    (
        "spread-no-when",
        {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname"}]},
        "Required value",
    ),
    (
        "spread-twice",
        {"topologySpreadConstraints": [ZONE_SPREAD, {**ZONE_SPREAD, "maxSkew": 2}]},
        "Duplicate value",
    ),
    ("security", {"securityContext": {"fsGroup": 1000, "supplementalGroups": [5]}}, None),
    ("security-root", {"securityContext": {"runAsUser": 0, "runAsNonRoot": False}}, None),
    ("security-root-by-accident", {"securityContext": {"runAsUser": 0}}, "needs runAsNonRoot"),
    ("security-windows", {"securityContext": {"windowsOptions": {}}}, UNKNOWN),
    ("security-seccomp", {"securityContext": {"seccompProfile": {"type": "Off"}}}, "Unsupported"),
    ("security-uid-text", {"securityContext": {"runAsUser": "1000"}}, "must be of type integer"),
    ("priority-class", {"priorityClassName": "High"}, "should match"),
]


@pytest.mark.parametrize(
    ("pod_template", "refusal"),
    [(template, refusal) for _, template, refusal in POD_TEMPLATES],
    ids=[ident for ident, _, _ in POD_TEMPLATES],
)
def test_pod_template_refused_alike_by_the_crd_and_the_models(
    pod_template: dict[str, Any], refusal: str | tuple[str, str] | None
) -> None:
    body = {
        "metadata": {"name": "a"},
        "spec": {"version": "3.5.17", "podTemplate": pod_template},
    }
    errors = admit(SCHEMA, body)
    if refusal is None:
        assert errors == []
        EtcdCluster.model_validate(body)
        return
    server, model = refusal if isinstance(refusal, tuple) else (refusal, refusal)
    assert len(errors) == 1, errors
    assert server in errors[0]
    with pytest.raises(ValidationError, match=re.escape(model)):
        EtcdCluster.model_validate(body)
