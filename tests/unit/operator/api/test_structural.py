"""The operator's own structural-schema validator (``etcd_operator.api.structural``) answers as the
API server does, on small schemas and on the generated Kubernetes ones."""

from __future__ import annotations

from typing import Any

import pytest
from etcd_operator.api import corev1
from etcd_operator.api.structural import errors

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
        "mode": {"type": "string", "enum": ["A", "B"]},
        "count": {"type": "integer", "minimum": 1},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "items": {
            "type": "array",
            "maxItems": 2,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["k"],
            "items": {"type": "object", "properties": {"k": {"type": "string"}}},
        },
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
    },
}


def test_a_valid_value_has_no_errors() -> None:
    value = {
        "name": "abc",
        "mode": "A",
        "count": 2,
        "labels": {"x": "y"},
        "free": {"any": [1, {"thing": None}]},
        "items": [{"k": "a"}, {"k": "b"}],
        "tags": ["a", "b"],
    }
    assert errors(SCHEMA, value) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, "name: Required value"),
        ({"name": "abc", "nmae": "x"}, 'unknown field "nmae"'),
        ({"name": "ABC"}, "name: Invalid value: \"ABC\": should match '^[a-z]+$'"),
        ({"name": "abcdef"}, "name: Too long: may not be more than 5 bytes"),
        ({"name": "a", "mode": "C"}, 'mode: Unsupported value: "C": supported values: "A", "B"'),
        ({"name": "a", "count": 0}, "count: Invalid value: 0: should be >= 1"),
        ({"name": "a", "count": "1"}, 'count: Invalid value: "string": must be of type integer'),
        ({"name": "a", "count": True}, 'count: Invalid value: "boolean": must be of type integer'),
        ({"name": "a", "labels": {"x": 1}}, "labels.x: Invalid value"),
        ({"name": "a", "items": [{"k": "a"}, {"k": "a"}]}, 'items[1]: Duplicate value: {"k": "a"}'),
        (
            {"name": "a", "items": [{"k": "a"}, {"k": "b"}, {"k": "c"}]},
            "items: Too many: 3: must have at most 2 items",
        ),
        ({"name": "a", "items": [{"kk": "a"}]}, 'unknown field "items[0].kk"'),
        ({"name": "a", "tags": ["x", "x"]}, 'tags[1]: Duplicate value: "x"'),
    ],
)
def test_each_refusal_names_its_field(value: dict[str, Any], expected: str) -> None:
    found = errors(SCHEMA, value)
    assert len(found) == 1, found
    assert found[0].startswith(expected)


@pytest.mark.parametrize("quantity", ["500m", "1Gi", "2", "1.5", ".5", "1e3", "+1", 2, 0])
def test_quantities_accepted(quantity: object) -> None:
    assert errors(corev1.RESOURCES, {"requests": {"cpu": quantity}}) == []


@pytest.mark.parametrize("quantity", ["lots", "1GB", "", "1.2.3", "m", "1 Gi", 1.5, True, None])
def test_quantities_refused(quantity: object) -> None:
    assert errors(corev1.RESOURCES, {"limits": {"memory": quantity}}) != []


def test_generated_schemas_refuse_misspelt_fields_deep_down() -> None:
    affinity = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelecter": {}}
            ]
        }
    }
    assert errors(corev1.AFFINITY, affinity) == [
        'unknown field "podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]'
        '.labelSelecter"'
    ]
