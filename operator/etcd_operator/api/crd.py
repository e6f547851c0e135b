"""The CustomResourceDefinitions (EtcdCluster, EtcdBackup, EtcdDefrag), from the pydantic models.

Pydantic writes JSON Schema (draft 2020-12); the API server wants a *structural* OpenAPI v3
schema. This module translates one into the other: ``$ref``s inlined, ``anyOf [X, null]`` of
optional fields turned into plain optional properties, titles and ``additionalProperties: false``
dropped (the API server prunes unknown fields instead, and forbids ``additionalProperties`` beside
``properties``), defaults kept where Kubernetes allows them (never ``null``), and the models'
``x-kubernetes-*`` extensions passed through. The Kubernetes types in ``podTemplate`` arrive
already structural (``corev1``, generated); their one union, int-or-string (quantities), is kept
in the form controller-gen writes: ``anyOf`` integer/string beside ``x-kubernetes-int-or-string``.
The CRD around it adds the CEL rules of the spec and the root, the status (and, for clusters, the
scale) subresources and the printer columns; ``KINDS`` lists what each kind brings. No kind is in
a category: ``kubectl get all`` and, worse, ``kubectl delete all --all`` must not touch
EtcdClusters, whose deletion can take their data with them, nor EtcdBackups.

Only ``tools/gencrd.py`` (which writes ``crds/``) and the tests call this; the operator itself
never needs the CRD at run time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from etcd_operator.api import etcdbackup, etcddefrag, v1alpha1

Json = dict[str, Any]

# JSON Schema keywords the structural OpenAPI schema has no use for, or forbids.
_DROPPED = frozenset({"title", "$schema", "$defs", "definitions"})

CLUSTER_PRINTER_COLUMNS: list[Json] = [
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Version", "type": "string", "jsonPath": ".status.currentVersion"},
    {"name": "Leader", "type": "string", "jsonPath": ".status.leader"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Last Backup", "type": "date", "jsonPath": ".status.backup.lastSuccessfulTime"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _has_defaults(made: BaseModel) -> bool:
    """Whether an empty object of this model gets any field from the API server's defaulting."""
    return bool(made.model_dump(mode="json", exclude_none=True))


class _KubernetesJsonSchema(GenerateJsonSchema):
    """Defaults as the API server can apply them.

    ``None`` is no default (Kubernetes has no ``null``; an absent field is "unset"). A nested
    model built by ``default_factory`` defaults to ``{}`` when it has defaults of its own, so
    that the API server fills them in (it defaults an absent object only from an explicit
    ``default``, then descends into it). Lists built by a factory get no default: an absent list
    and an empty one mean the same.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        if "default_factory" in schema:
            if schema.get("default_factory_takes_data"):
                return NoDefault
            made = schema["default_factory"]()  # type: ignore[call-arg]
            if isinstance(made, BaseModel) and _has_defaults(made):
                return {}
            return NoDefault
        default = schema.get("default", NoDefault)
        return NoDefault if default is None else default


def _is_null(node: Json) -> bool:
    return node.get("type") == "null"


def _structural(node: Any, defs: Json) -> Any:
    """Translate one pydantic JSON Schema node (recursively) into a structural OpenAPI node."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        # Keys beside the $ref (a field's description, default) override the definition's.
        target = defs[ref.removeprefix("#/$defs/")]
        node = {**target, **node}
    any_of = None if node.get("x-kubernetes-int-or-string") else node.pop("anyOf", None)
    if any_of is not None:
        # Optional[X] is anyOf [X, null]: the field is simply optional. Any other union has no
        # structural form, and the models must not use one.
        choices = [c for c in any_of if not _is_null(c)]
        if len(choices) != 1:
            raise ValueError(f"union without a structural form: {any_of}")
        outer = {k: v for k, v in node.items() if k != "default" or v is not None}
        node = {**_structural(choices[0], defs), **outer}
    out: Json = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "additionalProperties" and isinstance(value, bool):
            # false: unknown fields are pruned by the API server, and false beside properties
            # is refused. true: said by x-kubernetes-preserve-unknown-fields where meant.
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs)
        elif key == "default" and value is None:
            continue
        else:
            out[key] = copy.deepcopy(value)
    return out


def _model_schema(model: type[BaseModel]) -> Json:
    raw = model.model_json_schema(mode="validation", schema_generator=_KubernetesJsonSchema)
    defs = raw.get("$defs", {})
    result: Json = _structural(raw, defs)
    return result


@dataclass(frozen=True)
class KindSchema:
    """What one kind's CRD is made of."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    printer_columns: list[Json]
    spec_rules: Json = field(default_factory=dict)
    root_rules: Json = field(default_factory=dict)
    subresources: Json = field(default_factory=lambda: {"status": {}})

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{v1alpha1.GROUP}"


CLUSTER = KindSchema(
    kind=v1alpha1.KIND,
    plural=v1alpha1.PLURAL,
    singular=v1alpha1.SINGULAR,
    short_names=tuple(v1alpha1.SHORT_NAMES),
    spec=v1alpha1.EtcdClusterSpec,
    status=v1alpha1.EtcdClusterStatus,
    description=(v1alpha1.EtcdCluster.__doc__ or "").strip(),
    printer_columns=CLUSTER_PRINTER_COLUMNS,
    spec_rules=v1alpha1.SPEC_RULES,
    root_rules=v1alpha1.ROOT_RULES,
    subresources={
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    },
)


def operation_kind(
    module: ModuleType, model: type[BaseModel], spec: type[BaseModel], status: type[BaseModel]
) -> KindSchema:
    """The schema of an operation kind (``api.operation``): its module's constants, its object
    model's description, its spec and status."""
    return KindSchema(
        kind=module.KIND,
        plural=module.PLURAL,
        singular=module.SINGULAR,
        short_names=tuple(module.SHORT_NAMES),
        spec=spec,
        status=status,
        description=(model.__doc__ or "").strip(),
        printer_columns=module.PRINTER_COLUMNS,
        spec_rules=module.SPEC_RULES,
    )


BACKUP = operation_kind(
    etcdbackup, etcdbackup.EtcdBackup, etcdbackup.EtcdBackupSpec, etcdbackup.EtcdBackupStatus
)
DEFRAG = operation_kind(
    etcddefrag, etcddefrag.EtcdDefrag, etcddefrag.EtcdDefragSpec, etcddefrag.EtcdDefragStatus
)

KINDS = (CLUSTER, BACKUP, DEFRAG)


def spec_schema(kind: KindSchema = CLUSTER) -> Json:
    """The structural schema of ``spec``, with the spec-wide CEL rules."""
    schema = _model_schema(kind.spec)
    schema.update(copy.deepcopy(kind.spec_rules))
    return schema


def status_schema(kind: KindSchema = CLUSTER) -> Json:
    return _model_schema(kind.status)


def openapi_schema(kind: KindSchema = CLUSTER) -> Json:
    """The whole object's schema: apiVersion, kind and metadata as every CRD has them."""
    return {
        "description": kind.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "The versioned schema of this representation of an object.",
                "type": "string",
            },
            "kind": {
                "description": "The REST resource this object represents.",
                "type": "string",
            },
            # The API server validates metadata itself; a CRD may only restrict name and
            # generateName here, which the root rule below does in CEL instead.
            "metadata": {"type": "object"},
            "spec": spec_schema(kind),
            "status": status_schema(kind),
        },
        **copy.deepcopy(kind.root_rules),
    }


def custom_resource_definition(kind: KindSchema = CLUSTER) -> Json:
    """The CustomResourceDefinition (apiextensions.k8s.io/v1) of ``kind``."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name},
        "spec": {
            "group": v1alpha1.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
            },
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(kind)},
                    "subresources": copy.deepcopy(kind.subresources),
                    "additionalPrinterColumns": copy.deepcopy(kind.printer_columns),
                }
            ],
        },
    }
