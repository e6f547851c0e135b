"""The NetworkPolicy of spec.networkPolicy: what each port admits, and the API that says so."""

from __future__ import annotations

from typing import Any

import pytest
from etcd_operator.api.network import NetworkPeer, NetworkPolicySpec
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components.bootstrap import BootstrapState
from etcd_operator.components.children import children
from etcd_operator.components.networkpolicy import enabled, network_policy
from pydantic import ValidationError

from tests.unit.operator.components.clusters import NAMESPACE, UID, make_cluster, matches

IN_CLUSTER = OperatorSettings(
    network_policy_default=True,
    operator_namespace="etcd-operator",
    operator_pod_labels="app.kubernetes.io/name=etcd-operator,app.kubernetes.io/instance=ops",
)
MEMBERS = {
    "podSelector": {
        "matchLabels": {
            "app.kubernetes.io/name": "etcd",
            "app.kubernetes.io/instance": "demo",
            "etcd.pyetcd.io/cluster": "demo",
        }
    }
}
OPERATOR = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "etcd-operator"}},
    "podSelector": {
        "matchLabels": {
            "app.kubernetes.io/name": "etcd-operator",
            "app.kubernetes.io/instance": "ops",
        }
    },
}


def rules_by_port(policy: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["spec"]["ingress"]:
        (port,) = rule["ports"]
        assert port["protocol"] == "TCP"
        out[port["port"]] = rule["from"]
    return out


def test_selects_the_members_for_ingress_only() -> None:
    policy = network_policy(make_cluster(), IN_CLUSTER)
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["metadata"]["name"] == "demo"
    assert policy["metadata"]["namespace"] == NAMESPACE
    assert policy["metadata"]["ownerReferences"][0]["uid"] == UID  # deleted with its cluster
    assert policy["spec"]["podSelector"] == MEMBERS["podSelector"]
    member_labels = {**MEMBERS["podSelector"]["matchLabels"], "other": "x"}
    assert matches(policy["spec"]["podSelector"]["matchLabels"], member_labels)
    # Egress stays open: members dial each other, S3 (restores) and DNS.
    assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_default_admits_peers_from_members_clients_from_the_namespace_and_the_operator() -> None:
    ports = rules_by_port(network_policy(make_cluster(), IN_CLUSTER))
    assert ports[2380] == [MEMBERS]
    # A peer with only a podSelector is the policy's own namespace: every pod there.
    assert ports[2379] == [MEMBERS, OPERATOR, {"podSelector": {}}]
    # No metrics peers: the port is in no rule, so the policy admits nobody there.
    assert 2381 not in ports


def test_clients_replace_the_namespace_default() -> None:
    cluster = make_cluster(
        {
            "networkPolicy": {
                "clients": [
                    {"namespaceSelector": {"matchLabels": {"team": "payments"}}},
                    {
                        "namespaceSelector": {},
                        "podSelector": {
                            "matchExpressions": [
                                {"key": "role", "operator": "In", "values": ["api", "worker"]}
                            ]
                        },
                    },
                ]
            }
        }
    )
    ports = rules_by_port(network_policy(cluster, IN_CLUSTER))
    assert ports[2379] == [
        MEMBERS,
        OPERATOR,
        {"namespaceSelector": {"matchLabels": {"team": "payments"}}},
        {
            "namespaceSelector": {},
            "podSelector": {
                "matchExpressions": [{"key": "role", "operator": "In", "values": ["api", "worker"]}]
            },
        },
    ]
    assert ports[2380] == [MEMBERS]  # clients never reach the peer port


def test_metrics_peers_get_the_metrics_port_only() -> None:
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    cluster = make_cluster({"networkPolicy": {"metrics": [prometheus]}})
    ports = rules_by_port(network_policy(cluster, IN_CLUSTER))
    assert ports[2381] == [prometheus]
    assert prometheus not in ports[2379]


def test_operator_outside_the_cluster_is_not_a_peer() -> None:
    """Run from a workstation, the operator has no pod to admit (its connections come from
    outside the pod network); an empty label list admits its whole namespace."""
    ports = rules_by_port(network_policy(make_cluster(), OperatorSettings()))
    assert ports[2379] == [MEMBERS, {"podSelector": {}}]
    whole_namespace = OperatorSettings(operator_namespace="ops")
    assert rules_by_port(network_policy(make_cluster(), whole_namespace))[2379][1] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
        "podSelector": {},
    }


@pytest.mark.parametrize(
    ("spec", "default", "expected"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"enabled": False}, True, False),
        ({"enabled": True}, False, True),
    ],
)
def test_enabled_falls_back_to_the_operator_default(
    spec: dict[str, Any], default: bool, expected: bool
) -> None:
    cluster = make_cluster({"networkPolicy": spec})
    settings = OperatorSettings(network_policy_default=default)
    assert enabled(cluster, settings) is expected
    kinds = [m["kind"] for m in children(cluster, settings, BootstrapState.NEW)]
    assert ("NetworkPolicy" in kinds) is expected
    if expected:
        # Before the StatefulSet: the members are guarded from their first start.
        assert kinds.index("NetworkPolicy") < kinds.index("StatefulSet")


def test_settings_from_the_environment() -> None:
    settings = OperatorSettings.from_env(
        {
            "ETCD_OPERATOR_NETWORK_POLICY_DEFAULT": "true",
            "ETCD_OPERATOR_OPERATOR_NAMESPACE": "ops",
            "ETCD_OPERATOR_OPERATOR_POD_LABELS": "a=b,c.d/e=f",
        }
    )
    assert settings.network_policy_default is True
    assert settings.operator_labels() == {"a": "b", "c.d/e": "f"}
    with pytest.raises(ValidationError):
        OperatorSettings(operator_pod_labels="no-equals-sign")


@pytest.mark.parametrize(
    ("peer", "message"),
    [
        ({}, "a peer needs namespaceSelector, podSelector or both"),
        ({"podSelector": {"matchLabels": {"-bad": "x"}}}, "matchLabels keys must be label keys"),
        ({"podSelector": {"matchLabels": {"role": "not a value"}}}, "should match pattern"),
        (
            {"podSelector": {"matchExpressions": [{"key": "role", "operator": "In"}]}},
            "operators In and NotIn need values",
        ),
        (
            {
                "podSelector": {
                    "matchExpressions": [{"key": "role", "operator": "Exists", "values": ["x"]}]
                }
            },
            "Exists and DoesNotExist take none",
        ),
        ({"podSelector": {"matchExpressions": [{"key": "r", "operator": "Is"}]}}, "literal_error"),
        ({"ipBlock": {"cidr": "10.0.0.0/8"}}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_peers_are_refused(peer: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        NetworkPeer.model_validate(peer)
    assert message in str(err.value) or message in repr(err.value.errors())


def test_a_valid_spec_parses() -> None:
    spec = NetworkPolicySpec.model_validate(
        {
            "enabled": True,
            "clients": [{"podSelector": {"matchLabels": {"example.com/role": "api"}}}],
            "metrics": [
                {"namespaceSelector": {"matchExpressions": [{"key": "m", "operator": "Exists"}]}}
            ],
        }
    )
    assert spec.clients is not None and spec.metrics is not None
    assert spec.metrics[0].manifest() == {
        "namespaceSelector": {"matchExpressions": [{"key": "m", "operator": "Exists"}]}
    }
