"""What the API server does with a CRD's schema, modelled closely enough to test the CRD offline.

- ``structural_problems``: the rules that make a schema *structural* (and the CRD acceptable),
  those that can be checked without the API server;
- ``admit``: a create or update as the API server handles it under ``kubectl``'s strict field
  validation (``fieldValidation=Strict``, kubectl's default since 1.27): a field the schema does
  not know fails the request as an "unknown field" before anything else; then defaulting (also of
  the stored old object), OpenAPI validation with the API server's wording (kube-openapi's
  messages), then, only if that passed, the ``x-kubernetes-validations`` CEL rules evaluated
  with cel-python, transition rules only when there is an old object;
- ``pruned_fields``: what the API server would silently drop, so that an example cannot pass only
  because a misspelt field was ignored;
- ``cel_reference_problems``: the bounds that keep each rule's estimated cost within the CEL
  budget (a string, list or map a rule reads must be bounded).

The real API server checks the same files in e2e; this module is the fast, offline half.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import celpy
import celpy.celtypes

# jsonschema comes with kubernetes-validate and ships without type hints.
import jsonschema  # type: ignore[import-untyped]
import referencing.exceptions
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

Json = dict[str, Any]

# The fields of apiextensions.k8s.io/v1 JSONSchemaProps a structural schema may use here.
ALLOWED_KEYS = frozenset(
    {
        "description",
        "type",
        "format",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "properties",
        "additionalProperties",
        "nullable",
        "example",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)
TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
# The one union a structural schema may hold: int-or-string, as controller-gen writes it.
INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})
# Fields of the root that the API server provides to CEL although the schema does not declare
# them; metadata.name has no declared bound, its cost is estimated from the request size limit.
ROOT_CEL_FIELDS = {"metadata.name": "string", "metadata.generateName": "string"}

_OLD_SELF = re.compile(r"\boldSelf\b")
_SELF_PATH = re.compile(r"\b(?:self|oldSelf)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def is_transition_rule(rule: str) -> bool:
    return _OLD_SELF.search(rule) is not None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _children(schema: Json, path: str) -> Iterator[tuple[str, Json]]:
    """The sub-schemas of a node with their paths (``[]`` for items, ``{}`` for map values)."""
    for name, sub in schema.get("properties", {}).items():
        yield _join(path, name), sub
    items = schema.get("items")
    if isinstance(items, dict):
        yield f"{path}[]", items
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield f"{path}{{}}", extra


def walk(schema: Json, path: str = "") -> Iterator[tuple[str, Json]]:
    """Every schema node, depth first, root first."""
    yield path, schema
    for sub_path, sub in _children(schema, path):
        yield from walk(sub, sub_path)


# -- structural schema -----------------------------------------------------------------------


def _is_int_or_string(node: Json) -> bool:
    return bool(node.get("x-kubernetes-int-or-string")) and node.get("anyOf") in (
        None,
        INT_OR_STRING_ANY_OF,
    )


def _check_node(node: Json, path: str, under_array: str | None) -> list[str]:
    where = path or "<root>"
    problems: list[str] = []
    for key in node:
        if key == "anyOf" and _is_int_or_string(node):
            continue
        if key not in ALLOWED_KEYS:
            problems.append(f"{where}: {key!r} is not allowed in a structural schema")
    for key in ("$ref", "anyOf", "allOf", "oneOf", "not", "title", "const"):
        if key == "anyOf" and _is_int_or_string(node):
            continue
        if key in node:
            problems.append(f"{where}: {key} must be resolved before the CRD is written")
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if preserve is not None and preserve is not True:
        problems.append(f"{where}: x-kubernetes-preserve-unknown-fields must be true or absent")
    typ = node.get("type")
    if typ is None:
        if not (preserve or node.get("x-kubernetes-int-or-string")):
            problems.append(f"{where}: no type")
    elif typ not in TYPES:
        problems.append(f"{where}: type {typ!r} (Kubernetes has no null type; use nullable)")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if isinstance(node.get("additionalProperties"), bool):
        problems.append(f"{where}: additionalProperties must be a schema")
    if ("properties" in node or "additionalProperties" in node) and typ != "object":
        problems.append(f"{where}: properties on a non-object")
    if "items" in node and (typ != "array" or not isinstance(node["items"], dict)):
        problems.append(f"{where}: items must be one schema on an array")
    if typ == "array" and "items" not in node:
        problems.append(f"{where}: an array needs items")
    if node.get("uniqueItems"):
        problems.append(f"{where}: uniqueItems is refused (quadratic)")
    for name in node.get("required", []):
        if name not in node.get("properties", {}):
            problems.append(f"{where}: required {name!r} is not a property")
    for value in node.get("enum", []):
        if typ is not None and not _is_type(value, typ):
            problems.append(f"{where}: enum value {value!r} is not a {typ}")
    if "default" in node and "$ref" not in node:
        if path.split(".", maxsplit=1)[0] == "metadata":
            problems.append(f"{where}: no defaults under metadata")
        try:
            errors = list(jsonschema.Draft4Validator(node).iter_errors(node["default"]))
        except referencing.exceptions.Unresolvable:
            # A raw pydantic schema: its $refs point into $defs, which a node does not carry.
            errors = []
            problems.append(f"{where}: default beside a $ref, which a CRD cannot hold")
        if errors:
            problems.append(f"{where}: default {node['default']!r} is invalid: {errors[0].message}")
    list_type = node.get("x-kubernetes-list-type")
    if list_type is not None:
        if typ != "array" or list_type not in ("atomic", "set", "map"):
            problems.append(f"{where}: bad x-kubernetes-list-type {list_type!r}")
        if list_type == "map":
            items = node.get("items", {})
            keys = node.get("x-kubernetes-list-map-keys") or []
            if items.get("type") != "object" or not keys:
                problems.append(f"{where}: a map list needs object items and map keys")
            for key in keys:
                prop = items.get("properties", {}).get(key)
                if prop is None or prop.get("type") not in SCALAR_TYPES:
                    problems.append(f"{where}: map key {key!r} must be a scalar property")
                elif key not in items.get("required", []) and "default" not in prop:
                    problems.append(f"{where}: map key {key!r} must be required or defaulted")
    for index, validation in enumerate(node.get("x-kubernetes-validations", [])):
        problems.extend(_check_validation(node, f"{where} rule {index}", validation, under_array))
    return problems


def _check_validation(
    node: Json, where: str, validation: Json, under_array: str | None
) -> list[str]:
    problems: list[str] = []
    rule = validation.get("rule")
    if not isinstance(rule, str) or not isinstance(validation.get("message"), str):
        return [f"{where}: a rule needs rule and message strings"]
    if set(validation) - {"rule", "message", "messageExpression", "fieldPath", "reason"}:
        problems.append(f"{where}: unknown keys {sorted(validation)}")
    try:
        celpy.Environment().compile(rule)
    except CELParseError as exc:
        problems.append(f"{where}: does not compile: {exc}")
    if is_transition_rule(rule) and under_array is not None:
        # An item of an atomic list or set has no old value to compare with.
        problems.append(f"{where}: transition rule under the list {under_array}")
    field_path = validation.get("fieldPath")
    if field_path is not None and resolve(node, field_path.removeprefix(".")) is None:
        problems.append(f"{where}: fieldPath {field_path} is not in the schema")
    return problems


def structural_problems(schema: Json) -> list[str]:
    """The structural-schema and CRD-validation rules this schema breaks (empty when none)."""
    problems: list[str] = []
    if schema.get("type") != "object":
        problems.append("<root>: the root must be an object")
    metadata = schema.get("properties", {}).get("metadata")
    if metadata is not None and set(metadata) - {"type", "properties"}:
        problems.append("metadata: only name and generateName may be restricted")
    if metadata is not None and set(metadata.get("properties", {})) - {"name", "generateName"}:
        problems.append("metadata: only name and generateName may be restricted")

    def visit(node: Json, path: str, under_array: str | None) -> None:
        problems.extend(_check_node(node, path, under_array))
        for sub_path, sub in _children(node, path):
            # Transition rules may sit under a map list (items correlate by key), not under an
            # atomic list or a set.
            below = under_array
            if sub_path.endswith("[]") and node.get("x-kubernetes-list-type") != "map":
                below = path
            visit(sub, sub_path, below)

    visit(schema, "", None)
    return problems


def resolve(schema: Json, dotted: str) -> Json | None:
    """The sub-schema at a dotted path of properties, or None."""
    node: Json | None = schema
    for name in dotted.split("."):
        if node is None:
            return None
        node = node.get("properties", {}).get(name)
    return node


def cel_reference_problems(schema: Json) -> list[str]:
    """Unbounded data read by CEL rules, which would let a rule's estimated cost exceed the API
    server's budget: a string without maxLength, a list without maxItems, a map without
    maxProperties, or a rule evaluated once per item of an unbounded list or map."""
    problems: list[str] = []

    def visit(node: Json, path: str, repeated: str | None) -> None:
        for validation in node.get("x-kubernetes-validations", []):
            rule = validation["rule"]
            if repeated is not None:
                problems.append(f"{path or '<root>'}: rule runs per item of unbounded {repeated}")
            for match in _SELF_PATH.finditer(rule):
                dotted = match.group(1).removeprefix(".")
                if rule[match.end() :].startswith("("):
                    # self.name.size(): the last step is a method call, not a field.
                    dotted = dotted.rpartition(".")[0]
                if not dotted:
                    continue
                if not path and dotted in ROOT_CEL_FIELDS:
                    continue
                target = resolve(node, dotted)
                if target is None:
                    problems.append(f"{path or '<root>'}: rule reads {dotted}, not in the schema")
                    continue
                if rule[: match.start()].endswith("has(") and rule[match.end() :].startswith(")"):
                    continue  # has(self.x) tests presence: it costs the same whatever x holds
                bound = {"string": "maxLength", "array": "maxItems", "object": "maxProperties"}
                typ = target.get("type")
                needs = bound.get(typ or "")
                if typ == "object" and "properties" in target:
                    needs = None  # a fixed set of fields, not a map
                if needs is not None and needs not in target:
                    problems.append(f"{path or '<root>'}: rule reads {dotted} without {needs}")
        for sub_path, sub in _children(node, path):
            below = repeated
            if sub_path.endswith("[]") and "maxItems" not in node:
                below = sub_path
            if sub_path.endswith("{}") and "maxProperties" not in node:
                below = sub_path
            visit(sub, sub_path, below)

    visit(schema, "", None)
    return problems


# -- pruning and defaulting ------------------------------------------------------------------


def pruned_fields(schema: Json, obj: Any, path: str = "") -> list[str]:
    """Fields of ``obj`` the API server would prune (drop) because the schema does not know them."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            sub_path = _join(path, key)
            if not path and key == "metadata":
                continue  # the API server validates metadata itself, it is never pruned
            if props is not None and key in props:
                found += pruned_fields(props[key], value, sub_path)
            elif isinstance(extra, dict):
                found += pruned_fields(extra, value, sub_path)
            else:
                found.append(sub_path)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(obj):
            found += pruned_fields(schema["items"], item, f"{path}[{index}]")
    return found


def prune(schema: Json, obj: Any, *, root: bool = True) -> Any:
    """``obj`` without the fields the API server drops (those ``pruned_fields`` lists)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return copy.deepcopy(obj)
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        out = {}
        for key, value in obj.items():
            if root and key == "metadata":
                out[key] = copy.deepcopy(value)  # the API server's own, never pruned
            elif props is not None and key in props:
                out[key] = prune(props[key], value, root=False)
            elif isinstance(extra, dict):
                out[key] = prune(extra, value, root=False)
        return out
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [prune(schema["items"], item, root=False) for item in obj]
    return copy.deepcopy(obj)


def apply_defaults(schema: Json, obj: Any) -> Any:
    """``obj`` as the API server stores it before validating (and sees a stored object): a
    ``null`` where the schema is not nullable is dropped, or replaced by the default when there
    is one; then absent fields get their default, and defaulting descends into every present
    field, defaulted ones included."""
    obj = copy.deepcopy(obj)

    def fill(node: Json, value: Any) -> None:
        if isinstance(value, dict):
            for name, sub in node.get("properties", {}).items():
                if name in value and value[name] is None and not sub.get("nullable"):
                    del value[name]
                if name not in value and "default" in sub:
                    value[name] = copy.deepcopy(sub["default"])
                if name in value:
                    fill(sub, value[name])
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                for key in [k for k, v in value.items() if v is None]:
                    if not extra.get("nullable"):
                        del value[key]
                for item in value.values():
                    fill(extra, item)
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            for item in value:
                fill(node["items"], item)

    fill(schema, obj)
    return obj


# -- validation ------------------------------------------------------------------------------


def _is_type(value: Any, typ: str) -> bool:
    if typ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if typ == "boolean":
        return isinstance(value, bool)
    if typ == "string":
        return isinstance(value, str)
    if typ == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def _json_type(value: Any) -> str:
    for typ in ("boolean", "integer", "number", "string", "array"):
        if _is_type(value, typ):
            return typ
    return "object" if isinstance(value, dict) else "null"


def _show(value: Any) -> str:
    """A value as Go's %v/%q show it in the API server's messages."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _message(error: jsonschema.ValidationError) -> str:
    """An OpenAPI error in the API server's words (kube-openapi)."""
    path = ".".join(
        f"[{part}]" if isinstance(part, int) else str(part) for part in error.absolute_path
    ).replace(".[", "[")
    value, spec = error.instance, error.validator_value
    if error.validator == "required":
        missing = re.match(r"'(.*)' is a required property", error.message)
        name = missing.group(1) if missing else "?"
        return f"{_join(path, name)}: Required value"
    if error.validator == "type":
        return (
            f'{path}: Invalid value: "{_json_type(value)}": {path} in body must be of type '
            f'{spec}: "{_json_type(value)}"'
        )
    if error.validator == "enum":
        supported = ", ".join(_show(v) for v in spec)
        return f"{path}: Unsupported value: {_show(value)}: supported values: {supported}"
    if error.validator == "minimum":
        detail = f"should be greater than or equal to {_number(spec)}"
    elif error.validator == "maximum":
        detail = f"should be less than or equal to {_number(spec)}"
    elif error.validator == "pattern":
        detail = f"should match '{spec}'"
    elif error.validator == "maxLength":
        return f"{path}: Too long: may not be more than {spec} bytes"
    elif error.validator == "maxItems":
        return f"{path}: Too many: {len(value)}: must have at most {spec} items"
    else:
        detail = error.message
    return f"{path}: Invalid value: {_show(value)}: {path} in body {detail}"


def schema_errors(schema: Json, obj: Any) -> list[str]:
    """OpenAPI validation errors."""
    return [
        _message(e)
        for e in sorted(
            jsonschema.Draft4Validator(schema).iter_errors(obj),
            key=lambda e: [str(part) for part in e.path],
        )
    ]


def list_type_errors(schema: Json, obj: Any, path: str = "") -> list[str]:
    """Duplicates in ``set`` and ``map`` lists (``x-kubernetes-list-type``), which the API server
    refuses: items of a map list are identified by their ``x-kubernetes-list-map-keys``."""
    found: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                found += list_type_errors(sub, value, _join(path, key))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        list_type = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: list[Any] = []
        for index, item in enumerate(obj):
            if list_type in ("set", "map"):
                identity = item
                if list_type == "map" and isinstance(item, dict):
                    identity = {k: item.get(k) for k in keys}
                if identity in seen:
                    found.append(f"{path}[{index}]: Duplicate value: {identity}")
                seen.append(identity)
            found += list_type_errors(schema["items"], item, f"{path}[{index}]")
    return found


def _cel(value: Any) -> Any:
    return json_to_cel(value)


def _split(text: Any, separator: Any) -> celpy.celtypes.ListType:
    return celpy.celtypes.ListType(
        [celpy.celtypes.StringType(part) for part in str(text).split(str(separator))]
    )


def _substring(text: Any, start: Any, end: Any = None) -> celpy.celtypes.StringType:
    value = str(text)
    return celpy.celtypes.StringType(
        value[int(start) :] if end is None else value[int(start) : int(end)]
    )


# The functions of the Kubernetes CEL libraries that the rules use and cel-python lacks (the
# strings extension: ``"3.5.17".split(".")``, ``"v3".substring(1)``).
KUBERNETES_FUNCTIONS: dict[str, Any] = {"split": _split, "substring": _substring}


def cel_errors(schema: Json, obj: Any, old: Any = None) -> list[str]:
    """The CEL rules that fail on ``obj`` (``old``: the stored object of an update).

    Rules run wherever the value is present; transition rules only where the old value is too
    (the API server correlates old and new through object fields and map keys).
    """
    env = celpy.Environment()
    errors: list[str] = []

    def run(node: Json, value: Any, old_value: Any, path: str) -> None:
        if value is None:
            return
        for validation in node.get("x-kubernetes-validations", []):
            rule = validation["rule"]
            transition = is_transition_rule(rule)
            if transition and old_value is None:
                continue
            activation = {"self": _cel(value)}
            if transition:
                activation["oldSelf"] = _cel(old_value)
            where = path + validation.get("fieldPath", "")
            where = where.removeprefix(".") or "<nil>"  # the API server's name for the root
            try:
                program = env.program(env.compile(rule), functions=KUBERNETES_FUNCTIONS)
                result = program.evaluate(activation)
            except CELEvalError as exc:
                errors.append(f"{where}: Invalid value: rule evaluation error: {exc}")
                continue
            if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
                shown = _json_type(value)
                errors.append(f'{where}: Invalid value: "{shown}": {validation["message"]}')
        if isinstance(value, dict):
            old_map = old_value if isinstance(old_value, dict) else {}
            for name, sub in node.get("properties", {}).items():
                run(sub, value.get(name), old_map.get(name), f"{path}.{name}")
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                for key, item in value.items():
                    run(extra, item, old_map.get(key), f"{path}[{key}]")
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            # Items of atomic lists have no old value; the CRD has no transition rules there.
            for index, item in enumerate(value):
                run(node["items"], item, None, f"{path}[{index}]")

    run(schema, obj, old, "")
    return errors


def admit(schema: Json, obj: Json, old: Json | None = None, *, strict: bool = True) -> list[str]:
    """The errors of a create (``old`` None) or an update, as the API server would report them
    (empty when it accepts the object). ``strict``: kubectl's strict field validation, where
    unknown fields fail the request while it is decoded, so nothing else is checked; without it
    they are pruned (dropped) silently before validation."""
    unknown = pruned_fields(schema, obj)
    if strict and unknown:
        return [f'strict decoding error: unknown field "{path}"' for path in unknown]
    obj = prune(schema, obj)
    new = apply_defaults(schema, obj)
    stored = None if old is None else apply_defaults(schema, old)
    errors = schema_errors(schema, new) + list_type_errors(schema, new)
    # Any OpenAPI error stops the CEL rules, as on the API server (which adds "some validation
    # rules were not checked because the object was invalid").
    if not errors:
        errors += cel_errors(schema, new, stored)
    return errors
