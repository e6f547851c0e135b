"""Validation of a value against a structural schema, as the API server does it for a CRD.

The pydantic models use this for the parts of ``podTemplate`` whose schema is generated from the
Kubernetes OpenAPI (``corev1``): the same schema is in the CRD, so a value the API server refuses
is refused here too, without a dependency on a JSON Schema library in the operator. It covers what
those schemas use: types (with ``x-kubernetes-int-or-string``), ``properties`` (an unknown field is
an error, as under ``kubectl``'s strict field validation), ``additionalProperties``, ``items``,
``required``, ``enum``, ``pattern``, length and size bounds, and the uniqueness of the items of
``set`` and ``map`` lists. CEL rules (``x-kubernetes-validations``) are not evaluated here: each
model mirrors its rules in Python.

Messages follow the API server's wording, with paths relative to the validated field.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

Json = dict[str, Any]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _is(value: Any, typ: str) -> bool:
    if isinstance(value, bool) and typ != "boolean":
        return False
    return isinstance(value, _TYPES[typ])


def _json_type(value: Any) -> str:
    for typ in ("boolean", "integer", "number", "string", "array", "object"):
        if _is(value, typ):
            return typ
    return "null"


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def errors(schema: Json, value: Any, path: str = "") -> list[str]:
    """Everything the API server would refuse in ``value`` (empty when it is valid)."""
    where = path or "<value>"
    if schema.get("x-kubernetes-int-or-string"):
        if not (_is(value, "integer") or _is(value, "string")):
            return [f"{where}: Invalid value: {_show(value)}: must be an integer or a string"]
    elif "type" in schema and not _is(value, schema["type"]):
        return [f'{where}: Invalid value: "{_json_type(value)}": must be of type {schema["type"]}']
    found: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_show(v) for v in schema["enum"])
        found.append(f"{where}: Unsupported value: {_show(value)}: supported values: {supported}")
    if isinstance(value, str):
        found += _string_errors(schema, value, where)
    elif isinstance(value, dict):
        found += _object_errors(schema, value, path)
    elif isinstance(value, list):
        found += _list_errors(schema, value, path)
    elif _is(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{where}: Invalid value: {value}: should be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{where}: Invalid value: {value}: should be <= {schema['maximum']}")
    return found


def _string_errors(schema: Json, value: str, where: str) -> list[str]:
    found: list[str] = []
    if "pattern" in schema and not _regex(schema["pattern"]).search(value):
        found.append(f"{where}: Invalid value: {_show(value)}: should match '{schema['pattern']}'")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        found.append(f"{where}: Too long: may not be more than {schema['maxLength']} bytes")
    if "minLength" in schema and len(value) < schema["minLength"]:
        found.append(f"{where}: Too short: must be at least {schema['minLength']} characters")
    return found


def _object_errors(schema: Json, value: Json, path: str) -> list[str]:
    found: list[str] = []
    props: Json | None = schema.get("properties")
    extra = schema.get("additionalProperties")
    for name in schema.get("required", []):
        if name not in value:
            found.append(f"{_join(path, name)}: Required value")
    for name, item in value.items():
        sub = _join(path, name)
        if props is not None and name in props:
            found += errors(props[name], item, sub)
        elif isinstance(extra, dict):
            found += errors(extra, item, sub)
        elif not schema.get("x-kubernetes-preserve-unknown-fields"):
            found.append(f'unknown field "{sub}"')
    return found


def _list_errors(schema: Json, value: list[Any], path: str) -> list[str]:
    found: list[str] = []
    where = path or "<value>"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        found.append(
            f"{where}: Too many: {len(value)}: must have at most {schema['maxItems']} items"
        )
    items = schema.get("items")
    for index, item in enumerate(value):
        if isinstance(items, dict):
            found += errors(items, item, f"{path}[{index}]")
    list_type = schema.get("x-kubernetes-list-type")
    if list_type in ("set", "map"):
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: set[str] = set()
        for index, item in enumerate(value):
            if list_type == "map" and isinstance(item, dict):
                identity = _show({key: item.get(key) for key in keys})
            else:
                identity = _show(item)
            if identity in seen:
                found.append(f"{path}[{index}]: Duplicate value: {identity}")
            seen.add(identity)
    return found
