"""The generated EtcdCluster CRD: fresh, acceptable to Kubernetes 1.33, structural, within the
CEL cost budget, and carrying the names, subresources and columns the operator relies on."""

from __future__ import annotations

import kubernetes_validate
import pytest
from etcd_operator.api import crd as crd_module
from etcd_operator.api import v1alpha1

from tests.unit.operator.api import examples
from tests.unit.operator.api.kube_schema import (
    cel_reference_problems,
    is_transition_rule,
    structural_problems,
    walk,
)
from tools.gencrd import OUTPUTS, render, stale_files

KUBERNETES_VERSION = "1.33.0"


def test_generated_crd_is_fresh() -> None:
    assert stale_files() == [], "run `python tools/gencrd.py` and commit the result"


def test_chart_carries_the_same_crd() -> None:
    texts = {path.read_text(encoding="utf-8") for path in OUTPUTS}
    assert texts == {render()}


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
        assert "anyOf" not in node, path
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
    assert len(transition) == 2  # storageClassName and engine


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
        ("spec.replicas", {"minimum": 1, "maximum": 9, "default": 3}),
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
