"""The reachability API: ``EtcdCluster.spec.networkPolicy``, who may connect to the members.

With the policy in force the operator owns a NetworkPolicy ``<cluster>`` that selects the
cluster's member pods and admits, on the ports they listen on:

- the peer port only from the cluster's own members;
- the client port from the members, from the operator's own pods (so that it never locks itself
  out), and from ``clients``: when that list is empty, from every pod of the cluster's namespace
  (a NetworkPolicy peer with only a ``podSelector`` means the policy's own namespace);
- the metrics port only from ``metrics`` (nobody when empty).

A peer is a Kubernetes NetworkPolicyPeer without ``ipBlock``: a ``namespaceSelector``, a
``podSelector`` (in the cluster's namespace unless a ``namespaceSelector`` is beside it), or both
(pods matching the one in namespaces matching the other). Both selectors are metav1.LabelSelector
and checked as Kubernetes checks one, so a selector the API server would refuse in the
NetworkPolicy is refused on the EtcdCluster already.

``enabled`` unset takes the operator's setting (``networkPolicyDefault``, on in the Helm chart).
Every CEL rule here has its pydantic mirror.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A label key: an optional DNS subdomain prefix and "/", then a name of at most 63 characters
# (apimachinery's IsQualifiedName); and a label value (IsValidLabelValue).
# "[.]" rather than a backslash escape: the pattern is also quoted in a CEL string (the key
# rule), where a backslash before "." is a syntax error.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
LABEL_KEY_MAX_LENGTH = 317  # a 253-character prefix, "/", a 63-character name
MAX_LABELS = 64  # bounds the CEL cost estimate of the key rule
MAX_PEERS = 32

LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", use_enum_values=True)


def _rules(*items: tuple[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in items]}


MATCH_LABELS_RULE = (
    f"self.all(k, k.size() <= {LABEL_KEY_MAX_LENGTH} && k.matches('{LABEL_KEY_PATTERN}'))",
    "matchLabels keys must be label keys (an optional DNS subdomain prefix and '/', then at "
    "most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)",
)
REQUIREMENT_RULES = (
    (
        "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0"
        " : !has(self.values) || size(self.values) == 0",
        "operators In and NotIn need values; Exists and DoesNotExist take none",
    ),
)
PEER_RULES = (
    (
        "has(self.namespaceSelector) || has(self.podSelector)",
        "a peer needs namespaceSelector, podSelector or both",
    ),
)


# The selector types carry no descriptions: each appears four times in the CRD (clients and
# metrics, namespaces and pods), and they are Kubernetes' own, documented there.


class LabelSelectorRequirement(_Model):
    # One requirement of a label selector (metav1.LabelSelectorRequirement).

    model_config = ConfigDict(json_schema_extra=_rules(*REQUIREMENT_RULES))

    key: str = Field(
        pattern=LABEL_KEY_PATTERN,
        max_length=LABEL_KEY_MAX_LENGTH,
    )
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        json_schema_extra={"maxLength": 12},  # for the CEL cost estimate; the enum is not
    )
    values: list[LabelValue] = Field(
        default_factory=list,
        max_length=MAX_LABELS,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )

    @model_validator(mode="after")
    def _as_the_crd_checks_it(self) -> LabelSelectorRequirement:
        if (self.operator in ("In", "NotIn")) != bool(self.values):
            raise ValueError(REQUIREMENT_RULES[0][1])
        return self


class LabelSelector(_Model):
    # A label selector (metav1.LabelSelector); empty selects everything.

    matchLabels: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        json_schema_extra=_rules(MATCH_LABELS_RULE),
    )
    matchExpressions: list[LabelSelectorRequirement] = Field(
        default_factory=list,
        max_length=MAX_LABELS,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )

    @field_validator("matchLabels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if len(key) > LABEL_KEY_MAX_LENGTH or not re.match(LABEL_KEY_PATTERN, key):
                raise ValueError(MATCH_LABELS_RULE[1] + f": {key!r}")
        return labels

    def manifest(self) -> dict[str, Any]:
        """The selector as Kubernetes writes it (empty parts left out; ``{}``: everything)."""
        out: dict[str, Any] = {}
        if self.matchLabels:
            out["matchLabels"] = dict(self.matchLabels)
        if self.matchExpressions:
            out["matchExpressions"] = [
                r.model_dump(mode="json", exclude_defaults=True) for r in self.matchExpressions
            ]
        return out


class NetworkPeer(_Model):
    """Who may connect: pods matching podSelector in namespaces matching namespaceSelector."""

    # A NetworkPolicyPeer without ipBlock: no namespaceSelector means the cluster's own
    # namespace, no podSelector every pod of the selected namespaces.

    model_config = ConfigDict(json_schema_extra=_rules(*PEER_RULES))

    namespaceSelector: LabelSelector | None = Field(
        default=None,
        description="Namespaces, by their labels (kubernetes.io/metadata.name is the name); "
        "{} selects every namespace.",
    )
    podSelector: LabelSelector | None = Field(
        default=None, description="Pods, by their labels; {} selects every pod."
    )

    @model_validator(mode="after")
    def _as_the_crd_checks_it(self) -> NetworkPeer:
        if self.namespaceSelector is None and self.podSelector is None:
            raise ValueError(PEER_RULES[0][1])
        return self

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.namespaceSelector is not None:
            out["namespaceSelector"] = self.namespaceSelector.manifest()
        if self.podSelector is not None:
            out["podSelector"] = self.podSelector.manifest()
        return out


class NetworkPolicySpec(_Model):
    """Who may reach the members (see docs/security.md); needs a network plugin that enforces
    NetworkPolicy."""

    enabled: bool | None = Field(
        default=None,
        description="Whether the operator keeps a NetworkPolicy <cluster> that admits only the "
        "traffic below; unset: the operator's default (networkPolicy.enabled in its Helm "
        "chart). Turned off, the operator deletes the policy.",
    )
    clients: list[NetworkPeer] | None = Field(
        default=None,
        description="Who may connect to the client port (2379), besides the members and the "
        "operator. Empty: every pod in the cluster's namespace. Listing peers replaces that "
        "default: add {podSelector: {}} to keep the cluster's namespace.",
        max_length=MAX_PEERS,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    metrics: list[NetworkPeer] | None = Field(
        default=None,
        description="Who may connect to the metrics port (2381, /metrics and /health), e.g. "
        "Prometheus's namespace. Empty: nobody.",
        max_length=MAX_PEERS,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
