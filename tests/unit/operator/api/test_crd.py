"""The generated EtcdCluster CRD: fresh, acceptable to Kubernetes 1.33, structural, within the
CEL cost budget, and carrying the names, subresources and columns the operator relies on."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
from etcd_operator.api import corev1, v1alpha1
from etcd_operator.api import crd as crd_module
from pydantic import BaseModel

from tests.unit.operator.api import examples
from tests.unit.operator.api.kube_schema import (
    cel_reference_problems,
    is_transition_rule,
    structural_problems,
    walk,
)
from tools import kubeschemas
from tools.gencrd import OUTPUTS, render, stale_files

KUBERNETES_VERSION = "1.33.0"


def test_generated_crd_is_fresh() -> None:
    assert stale_files() == [], "run `python tools/gencrd.py` and commit the result"


def test_chart_carries_the_same_crds() -> None:
    for path, plural in OUTPUTS.items():
        assert path.read_text(encoding="utf-8") == render(plural), path


def test_crd_is_a_valid_kubernetes_object() -> None:
    # Strict: an unknown key anywhere (a stray "const" or "$ref" in the schema) is an error.
    assert kubernetes_validate.validate(examples.crd(), KUBERNETES_VERSION, strict=True)


def test_schema_is_structural() -> None:
    assert structural_problems(examples.openapi_schema()) == []


def test_structural_checker_sees_pydantic_leftovers() -> None:
    # The raw pydantic schema is what crd.py must translate: the checker has to object to it.
    raw = v1alpha1.EtcdClusterSpec.model_json_schema()
    problems = "\n".join(structural_problems(raw))
    for leftover in ("$ref", "anyOf", "title", "additionalProperties must be a schema"):
        assert leftover in problems


def test_every_optional_field_is_a_plain_optional_property() -> None:
    for path, node in walk(examples.openapi_schema()):
        # The one union left is int-or-string (quantities), in controller-gen's form.
        assert "anyOf" not in node or node["x-kubernetes-int-or-string"] is True, path
        assert node.get("type") != "null", path
        assert node.get("default", "absent") is not None, path
        assert "nullable" not in node, path  # no field of this API needs an explicit null


def test_rules_stay_within_the_cel_cost_budget() -> None:
    assert cel_reference_problems(examples.openapi_schema()) == []


def test_cost_checker_sees_an_unbounded_string() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self.name.size() > 1", "message": "m"}],
    }
    assert cel_reference_problems(schema) == ["<root>: rule reads name without maxLength"]


def test_transition_rules_are_on_the_spec_only() -> None:
    transition = [
        (path, rule["rule"])
        for path, node in walk(examples.openapi_schema())
        for rule in node.get("x-kubernetes-validations", [])
        if is_transition_rule(rule["rule"])
    ]
    assert {path for path, _ in transition} == {"spec"}
    # storageClassName, bootstrap, version, engine, tls, and auth (removal, rootSecretName)
    assert len(transition) == 7


def test_model_rules_are_in_the_crd() -> None:
    schema = examples.openapi_schema()
    spec = schema["properties"]["spec"]
    assert spec["x-kubernetes-validations"] == v1alpha1.SPEC_RULES["x-kubernetes-validations"]
    assert schema["x-kubernetes-validations"] == v1alpha1.ROOT_RULES["x-kubernetes-validations"]
    compaction = spec["properties"]["etcd"]["properties"]["autoCompaction"]
    assert (
        compaction["x-kubernetes-validations"]
        == v1alpha1.AUTO_COMPACTION_RULES["x-kubernetes-validations"]
    )


def test_names_scope_and_version() -> None:
    spec = examples.crd()["spec"]
    assert examples.crd()["metadata"]["name"] == "etcdclusters.etcd.pyetcd.io"
    assert spec["group"] == "etcd.pyetcd.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["plural"] == "etcdclusters"
    assert spec["names"]["kind"] == "EtcdCluster"
    assert spec["names"]["shortNames"] == v1alpha1.SHORT_NAMES
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


def test_status_and_scale_subresources() -> None:
    [version] = examples.crd()["spec"]["versions"]
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["replicas"]["type"] == "integer"
    assert status["selector"]["type"] == "string"


def test_printer_columns() -> None:
    [version] = examples.crd()["spec"]["versions"]
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Replicas", "integer", ".spec.replicas"),
        ("Ready", "integer", ".status.readyReplicas"),
        ("Version", "string", ".status.currentVersion"),
        ("Leader", "string", ".status.leader"),
        ("Phase", "string", ".status.phase"),
        ("Last Backup", "date", ".status.backup.lastSuccessfulTime"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


def test_conditions_merge_by_type() -> None:
    status = examples.openapi_schema()["properties"]["status"]["properties"]
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


@pytest.mark.parametrize(
    ("path", "bounds"),
    [
        ("spec.replicas", {"minimum": 0, "maximum": 9, "default": 3}),
        ("spec.engine", {"enum": ["pyetcd", "etcd"], "default": "pyetcd"}),
        ("spec.etcd.quotaBackendBytes", {"minimum": 0, "maximum": 8 * 1024**3}),
        ("spec.storage.placement.mode", {"enum": ["Required", "Preferred", "Off"]}),
        ("spec.storage.storageClassName", {"maxLength": 253}),
    ],
)
def test_field_constraints(path: str, bounds: dict[str, object]) -> None:
    node = examples.openapi_schema()
    for name in path.split("."):
        node = node["properties"][name]
    assert {key: node.get(key) for key in bounds} == bounds


def test_nested_defaults_reach_the_server() -> None:
    # The API server only descends into an absent object when it has a default: {} on the
    # objects whose fields have defaults makes "spec: {version: ...}" a fully defaulted spec.
    spec = examples.openapi_schema()["properties"]["spec"]["properties"]
    assert spec["storage"]["default"] == {}
    assert spec["storage"]["properties"]["placement"]["default"] == {}
    assert spec["etcd"]["default"] == {}
    assert spec["etcd"]["properties"]["autoCompaction"]["default"] == {}
    assert "default" not in spec["podTemplate"]  # nothing to fill in there


def test_crd_module_matches_the_file() -> None:
    assert crd_module.custom_resource_definition() == examples.crd()


def test_not_in_the_all_category() -> None:
    # `kubectl delete all --all` must not delete EtcdClusters (and, with Delete retention, data).
    assert "categories" not in examples.crd()["spec"]["names"]


def test_crd_stays_small() -> None:
    # The API server stores the CRD as JSON, within etcd's 1.5 MiB request limit; client-side
    # `kubectl apply` also copies it into a 256 KiB annotation. Descriptions of the Kubernetes
    # types are cut to one sentence to stay far below both.
    # The backup store's schema appears three times (spec.backup, spec.bootstrap.backup,
    # status.restoredFrom): a quarter of the annotation's limit leaves room to grow. The
    # NetworkPolicy's peers (spec.networkPolicy) add four Kubernetes label selectors, some 1.4 KB
    # each even without descriptions, checked as Kubernetes checks them. The bound is 30 % of
    # the annotation (status.keyspace.writes took the last of the room below 76,000, and
    # status.backup.continuous, with short descriptions, what was left; bootstrap.backup.
    # pointInTime was paid for by shortening five long descriptions): the next field trims
    # descriptions first.
    stored = json.dumps(examples.crd(), separators=(",", ":"))
    assert len(stored) < 78_600, len(stored)


def test_generated_kubernetes_schemas_are_fresh() -> None:
    assert not kubeschemas.stale(), "run `python tools/gencrd.py`"
    assert corev1.KUBERNETES_VERSION == kubeschemas.KUBERNETES_VERSION


@pytest.mark.parametrize(
    ("field", "generated"),
    [
        ("resources", corev1.RESOURCES),
        ("affinity", corev1.AFFINITY),
        ("topologySpreadConstraints", corev1.TOPOLOGY_SPREAD_CONSTRAINTS),
        ("securityContext", v1alpha1.POD_SECURITY_CONTEXT_SCHEMA),
    ],
)
def test_pod_template_fields_carry_the_generated_schemas(
    field: str, generated: dict[str, object]
) -> None:
    node = dict(examples.openapi_schema()["properties"]["spec"]["properties"]["podTemplate"])
    schema = dict(node["properties"][field])
    assert schema.pop("description")  # the EtcdCluster's own words
    assert schema == generated


def _kube(definition: str) -> dict[str, Any]:
    found: dict[str, Any] = kubeschemas.definitions()[definition]
    return found


def _same_fields(schema: dict[str, Any], kube: dict[str, Any], owner: str) -> list[str]:
    """Paths where the generated schema's fields differ from Kubernetes' (less the exclusions)."""
    defs = kubeschemas.definitions()
    if "$ref" in kube:
        owner = kube["$ref"].rsplit("/", 1)[-1]
        if owner == kubeschemas.QUANTITY:
            return [] if schema.get("x-kubernetes-int-or-string") else [owner]
        kube = defs[owner]
    problems: list[str] = []
    if "properties" in kube:
        want = {p for p in kube["properties"] if (owner, p) not in kubeschemas.EXCLUDED}
        if set(schema.get("properties", {})) != want:
            problems.append(f"{owner}: {sorted(schema.get('properties', {}))} != {sorted(want)}")
        for name in want & set(schema.get("properties", {})):
            problems += _same_fields(schema["properties"][name], kube["properties"][name], owner)
    for key in ("items", "additionalProperties"):
        if isinstance(kube.get(key), dict):
            problems += _same_fields(schema.get(key, {}), kube[key], owner)
    return problems


@pytest.mark.parametrize(
    ("generated", "owner", "field"),
    [
        (corev1.RESOURCES, kubeschemas.CORE + "Container", "resources"),
        (corev1.AFFINITY, kubeschemas.CORE + "PodSpec", "affinity"),
        (
            corev1.TOPOLOGY_SPREAD_CONSTRAINTS,
            kubeschemas.CORE + "PodSpec",
            "topologySpreadConstraints",
        ),
        (corev1.POD_SECURITY_CONTEXT, kubeschemas.CORE + "PodSpec", "securityContext"),
    ],
)
def test_generated_schemas_have_every_kubernetes_field_but_the_excluded(
    generated: dict[str, Any], owner: str, field: str
) -> None:
    kube = _kube(owner)["properties"][field]
    assert _same_fields(generated, kube, owner) == []
    for marker in ("x-kubernetes-list-type", "x-kubernetes-list-map-keys"):
        assert generated.get(marker) == kube.get(marker)


def test_exclusions_are_refused_not_ignored() -> None:
    pod_security = corev1.POD_SECURITY_CONTEXT["properties"]
    assert "windowsOptions" not in pod_security
    assert "claims" not in corev1.RESOURCES["properties"]
    assert {"appArmorProfile", "seccompProfile", "fsGroup"} <= set(pod_security)


@pytest.mark.parametrize(
    ("model", "definition"),
    [(v1alpha1.Toleration, "Toleration"), (v1alpha1.ImagePullSecret, "LocalObjectReference")],
)
def test_typed_models_have_the_kubernetes_fields(model: type[BaseModel], definition: str) -> None:
    assert set(model.model_fields) == set(_kube(kubeschemas.CORE + definition)["properties"])


def test_pod_template_lists_merge_as_in_a_pod_spec() -> None:
    template = examples.openapi_schema()["properties"]["spec"]["properties"]["podTemplate"]
    pod_spec = _kube(kubeschemas.CORE + "PodSpec")["properties"]
    for field in ("tolerations", "imagePullSecrets", "topologySpreadConstraints"):
        for marker in ("x-kubernetes-list-type", "x-kubernetes-list-map-keys"):
            assert template["properties"][field].get(marker) == pod_spec[field].get(marker), field


def test_every_integer_bound_survives_the_api_servers_float_parsing() -> None:
    # The API server reads a schema's numbers as float64: 2**63 - 1 becomes 2**63, which wraps
    # to -2**63 as an int64 bound and refuses every value (pointInTime.revision once did).
    bounds: list[tuple[str, float]] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key in ("maximum", "minimum"):
                if isinstance(node.get(key), int):
                    bounds.append((f"{path}.{key}", node[key]))
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for item in node:
                walk(item, path)

    walk(examples.openapi_schema(), "")
    assert bounds
    assert [(p, v) for p, v in bounds if not -(2**63) <= float(v) < 2**63] == []
