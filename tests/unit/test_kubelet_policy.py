"""The process kubelet's NetworkPolicy evaluator and the tc filters it derives (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.kubelet.enforcer import rbac
from e2e.kubelet.policy import Allow, Pod, World, admits, allowed, selects, tc_batch

MEMBER_LABELS = {"app": "etcd", "cluster": "demo"}
MEMBER = Pod("prod", "demo-0", MEMBER_LABELS, "10.244.1.2", {"client": 2379, "peer": 2380})
MEMBER_1 = Pod("prod", "demo-1", MEMBER_LABELS, "10.244.2.2", {"client": 2379, "peer": 2380})
NEIGHBOUR = Pod("prod", "app", {"app": "web"}, "10.244.1.3")
STRANGER = Pod("other", "app", {"app": "web"}, "10.244.3.2")
OPERATOR = Pod("ops", "operator-abc", {"name": "etcd-operator"}, "10.244.4.2")
NODE = "10.244.0.1"


def policy(namespace: str = "prod", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": "demo"},
        "spec": {"podSelector": {"matchLabels": {"cluster": "demo"}}, **spec},
    }


# What the operator writes for a cluster with the defaults (see components/networkpolicy.py).
OPERATOR_POLICY = policy(
    policyTypes=["Ingress"],
    ingress=[
        {"from": [{"podSelector": {"matchLabels": MEMBER_LABELS}}], "ports": [{"port": 2380}]},
        {
            "from": [
                {"podSelector": {"matchLabels": MEMBER_LABELS}},
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
                    "podSelector": {"matchLabels": {"name": "etcd-operator"}},
                },
                {"podSelector": {}},
            ],
            "ports": [{"protocol": "TCP", "port": 2379}],
        },
    ],
)


def world(*policies: dict[str, Any]) -> World:
    return World(
        policies=policies,
        pods=(MEMBER, MEMBER_1, NEIGHBOUR, STRANGER, OPERATOR),
        namespaces={"prod": {"team": "db"}, "other": {"team": "web"}, "ops": {}},
        node_ips=frozenset({NODE}),
    )


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {"a": "b"}, True),
        ({"matchLabels": {"a": "b"}}, {"a": "b", "c": "d"}, True),
        ({"matchLabels": {"a": "b"}}, {"a": "c"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "b"]}]},
            {"a": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["b"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["b"]}]},
            {"a": "b"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        (None, {"a": "b"}, False),
    ],
)
def test_label_selectors(selector: Any, labels: dict[str, str], expected: bool) -> None:
    assert selects(selector, labels) is expected


def test_a_pod_no_policy_selects_admits_everything() -> None:
    assert admits(world(), STRANGER.ip or "", MEMBER, 2380)
    assert allowed(world(), MEMBER) is None
    # A policy selecting other pods, or one for egress only, does not isolate the member.
    others = policy(podSelector={"matchLabels": {"app": "web"}}, ingress=[])
    egress = policy(policyTypes=["Egress"])
    assert admits(world(others, egress), STRANGER.ip or "", MEMBER, 2379)


def test_the_operators_policy() -> None:
    w = world(OPERATOR_POLICY)
    assert admits(w, MEMBER_1.ip or "", MEMBER, 2380)  # peers between members
    assert not admits(w, NEIGHBOUR.ip or "", MEMBER, 2380)  # nobody else on the peer port
    assert admits(w, NEIGHBOUR.ip or "", MEMBER, 2379)  # the namespace's pods are clients
    assert admits(w, OPERATOR.ip or "", MEMBER, 2379)  # the operator, from its namespace
    assert not admits(w, STRANGER.ip or "", MEMBER, 2379)  # another namespace is not
    assert not admits(w, "192.0.2.7", MEMBER, 2379)  # nor an address that is no pod
    assert not admits(w, MEMBER_1.ip or "", MEMBER, 2381)  # the metrics port: nobody
    assert admits(w, NODE, MEMBER, 2381)  # but the node (probes)
    # A pod of another namespace with the operator's labels is not the operator.
    impostor = Pod("other", "x", {"name": "etcd-operator"}, "10.244.3.9")
    w2 = World(w.policies, (*w.pods, impostor), w.namespaces, w.node_ips)
    assert not admits(w2, "10.244.3.9", MEMBER, 2379)


def test_rules_are_a_union_across_policies_and_empty_ones_admit_nothing() -> None:
    deny_all = policy(ingress=[])
    assert not admits(world(deny_all), NEIGHBOUR.ip or "", MEMBER, 2379)
    from_other = policy(
        ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}]}]
    )
    w = world(deny_all, from_other)
    assert admits(w, STRANGER.ip or "", MEMBER, 1234)  # no ports: every port
    assert not admits(w, NEIGHBOUR.ip or "", MEMBER, 2379)
    everyone = policy(ingress=[{"ports": [{"port": 2379}]}])  # no from: every source
    assert admits(world(everyone), "192.0.2.7", MEMBER, 2379)


def test_named_ports_ranges_and_ip_blocks() -> None:
    named = policy(ingress=[{"ports": [{"port": "client"}, {"port": "nope"}]}])
    assert admits(world(named), STRANGER.ip or "", MEMBER, 2379)
    assert not admits(world(named), STRANGER.ip or "", MEMBER, 2380)
    ranged = policy(ingress=[{"ports": [{"port": 2379, "endPort": 2380}]}])
    assert admits(world(ranged), STRANGER.ip or "", MEMBER, 2380)
    assert not admits(world(ranged), STRANGER.ip or "", MEMBER, 2381)
    block = policy(
        ingress=[{"from": [{"ipBlock": {"cidr": "10.244.3.0/24", "except": ["10.244.3.2/32"]}}]}]
    )
    assert admits(world(block), "10.244.3.9", MEMBER, 2379)
    assert not admits(world(block), STRANGER.ip or "", MEMBER, 2379)


def test_allowed_sources_for_the_filter() -> None:
    allows = allowed(world(OPERATOR_POLICY), MEMBER)
    assert allows is not None
    assert Allow(f"{NODE}/32") in allows  # the node: any port
    assert Allow("10.244.2.2/32", 2380) in allows
    assert Allow("10.244.1.3/32", 2379) in allows
    assert Allow("10.244.4.2/32", 2379) in allows
    assert Allow("10.244.1.3/32", 2380) not in allows
    assert not [a for a in allows if a.source == "10.244.3.2/32"]
    # Every allowed source agrees with the evaluator.
    for allow in allows:
        ip = allow.source.removesuffix("/32")
        assert admits(world(OPERATOR_POLICY), ip, MEMBER, allow.port or 1)


def test_tc_batch_judges_only_new_connections() -> None:
    lines = tc_batch("p1v3", [Allow("10.244.0.1/32"), Allow("10.244.2.2/32", 2380)], "p1drop")
    assert lines == [
        "qdisc replace dev p1v3 clsact",
        "filter del dev p1v3 egress",
        "filter add dev p1v3 egress prio 2 protocol ip u32 match ip protocol 6 0xff "
        "match ip src 10.244.0.1/32 classid 1:1",
        "filter add dev p1v3 egress prio 2 protocol ip u32 match ip protocol 6 0xff "
        "match ip src 10.244.2.2/32 match ip dport 2380 0xffff classid 1:1",
        # SYN set, ACK clear: a new connection; replies to the pod's own ones carry ACK.
        "filter add dev p1v3 egress prio 3 protocol ip u32 match ip protocol 6 0xff "
        "match u8 0x02 0x12 at 33 action mirred egress redirect dev p1drop",
    ]
    assert tc_batch("p1v3", None, "p1drop") == ["qdisc del dev p1v3 clsact"]


def test_the_enforcer_may_only_read() -> None:
    (_, role), (_, binding) = rbac()
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert verbs == {"list", "watch"}
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {"pods", "namespaces", "networkpolicies"}
    assert binding["subjects"][0]["name"] == "e2e-network-policy"
