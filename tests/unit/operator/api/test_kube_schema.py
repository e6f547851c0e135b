"""The offline model of the API server used by the CRD tests does what the API server does, on
small schemas where the expected answer is obvious."""

from __future__ import annotations

from tests.unit.operator.api.kube_schema import (
    Json,
    admit,
    apply_defaults,
    cel_errors,
    pruned_fields,
    structural_problems,
)

SCHEMA: Json = {
    "type": "object",
    "properties": {
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "default": {},
            "properties": {
                "size": {"type": "integer", "default": 3, "minimum": 1},
                "name": {"type": "string", "maxLength": 8},
                "inner": {
                    "type": "object",
                    "default": {},
                    "properties": {"mode": {"type": "string", "default": "A", "enum": ["A", "B"]}},
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "x-kubernetes-validations": [
                {"rule": "self.size < 10", "message": "size below 10"},
                {
                    "rule": "!has(oldSelf.name) || self.name == oldSelf.name",
                    "message": "name is immutable",
                },
            ],
        },
    },
}


def test_defaults_descend_into_defaulted_objects() -> None:
    assert apply_defaults(SCHEMA, {})["spec"] == {"size": 3, "inner": {"mode": "A"}}
    assert apply_defaults(SCHEMA, {"spec": {"size": 5}})["spec"]["size"] == 5


def test_nulls_are_dropped_or_defaulted() -> None:
    spec = apply_defaults(SCHEMA, {"spec": {"size": None, "name": None}})["spec"]
    assert spec == {"size": 3, "inner": {"mode": "A"}}


def test_unknown_fields_are_reported_as_pruned_except_where_preserved() -> None:
    body = {"metadata": {"name": "x", "labels": {}}, "spec": {"sise": 3, "free": {"any": 1}}}
    assert pruned_fields(SCHEMA, body) == ["spec.sise"]


def test_schema_messages_use_the_api_servers_words() -> None:
    assert admit(SCHEMA, {"spec": {"size": 0}}) == [
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
    ]
    assert admit(SCHEMA, {"spec": {"inner": {"mode": "C"}}}) == [
        'spec.inner.mode: Unsupported value: "C": supported values: "A", "B"'
    ]
    assert admit(SCHEMA, {"spec": {"name": "much-too-long"}}) == [
        "spec.name: Too long: may not be more than 8 bytes"
    ]


def test_type_errors_stop_the_cel_rules() -> None:
    errors = admit(SCHEMA, {"spec": {"size": "many"}})
    assert errors == [
        'spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"'
    ]


def test_cel_rules_see_defaults() -> None:
    assert admit(SCHEMA, {"spec": {"size": 12}}) == ['spec: Invalid value: "object": size below 10']
    assert admit(SCHEMA, {}) == []  # size defaults to 3


def test_transition_rules_run_on_updates_only() -> None:
    new = {"spec": {"name": "b"}}
    assert admit(SCHEMA, new) == []
    assert admit(SCHEMA, new, old={"spec": {"name": "a"}}) == [
        'spec: Invalid value: "object": name is immutable'
    ]
    assert cel_errors(SCHEMA["properties"]["spec"], {"name": "b", "size": 3}, None) == []


def test_structural_checker_objections() -> None:
    bad: Json = {
        "type": "object",
        "properties": {
            "a": {"description": "no type"},
            "b": {"type": "object", "additionalProperties": False, "properties": {}},
            "c": {"type": "null"},
            "d": {
                "type": "array",
                "items": {"type": "object"},
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "m"}],
            },
            "e": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"v": {"type": "string"}},
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "m"}],
                },
            },
            "f": {"type": "string", "default": 3},
        },
    }
    problems = structural_problems(bad)
    assert problems == [
        "a: no type",
        "b: properties and additionalProperties are mutually exclusive",
        "b: additionalProperties must be a schema",
        "c: type 'null' (Kubernetes has no null type; use nullable)",
        "e[] rule 0: transition rule under the list e",
        "f: default 3 is invalid: 3 is not of type 'string'",
    ]


LISTS: Json = {
    "type": "object",
    "properties": {
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "properties": {
                "secrets": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "note": {"type": "string"}},
                    },
                },
                "cpu": {
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                    "pattern": "^[0-9]+m?$",
                    "x-kubernetes-int-or-string": True,
                },
            },
        },
    },
}


def test_strict_field_validation_refuses_unknown_fields_before_anything_else() -> None:
    body = {"spec": {"sise": 3, "size": 0}}
    assert admit(SCHEMA, body) == ['strict decoding error: unknown field "spec.sise"']
    # Without Strict the field is dropped and the rest is validated.
    assert admit(SCHEMA, body, strict=False) == [
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
    ]
    assert admit(SCHEMA, {"spec": {"sise": 3}}, strict=False) == []


def test_map_lists_refuse_duplicate_keys() -> None:
    one = {"name": "a", "note": "x"}
    assert admit(LISTS, {"spec": {"secrets": [one, {"name": "b"}]}}) == []
    assert admit(LISTS, {"spec": {"secrets": [one, {"name": "a"}]}}) == [
        "spec.secrets[1]: Duplicate value: {'name': 'a'}"
    ]


def test_int_or_string_is_structural_and_its_pattern_applies_to_strings() -> None:
    assert structural_problems(LISTS) == []
    assert admit(LISTS, {"spec": {"cpu": 2}}) == []
    assert admit(LISTS, {"spec": {"cpu": "500m"}}) == []
    [error] = admit(LISTS, {"spec": {"cpu": "lots"}})
    assert error.startswith('spec.cpu: Invalid value: "lots": spec.cpu in body should match')
    assert admit(LISTS, {"spec": {"cpu": True}}) != []


def test_any_schema_error_stops_the_cel_rules() -> None:
    # As the API server 1.34 does ("some validation rules were not checked because the object
    # was invalid"): the rule on size does not run beside the enum error.
    assert admit(SCHEMA, {"spec": {"size": 12, "inner": {"mode": "C"}}}) == [
        'spec.inner.mode: Unsupported value: "C": supported values: "A", "B"'
    ]
