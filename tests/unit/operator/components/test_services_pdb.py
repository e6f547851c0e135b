"""The Services and the PodDisruptionBudget, and that every selector picks exactly the members."""

from __future__ import annotations

from typing import Any

import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components import naming
from etcd_operator.components.bootstrap import BootstrapState
from etcd_operator.components.children import children
from etcd_operator.components.pdb import min_available, pdb
from etcd_operator.components.services import client_service, peer_service
from etcd_operator.components.statefulset import statefulset

from tests.unit.operator.components.clusters import (
    POD_TEMPLATE_EXTRAS,
    by_kind,
    make_cluster,
    matches,
)

SETTINGS = OperatorSettings()


def test_peer_service_is_headless_and_publishes_unready_members() -> None:
    spec = peer_service(make_cluster(), SETTINGS)["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    assert spec["ports"] == [
        {"name": "client", "port": 2379, "targetPort": "client", "protocol": "TCP"},
        {"name": "peer", "port": 2380, "targetPort": "peer", "protocol": "TCP"},
    ]


def test_client_service_serves_ready_members_on_the_client_port() -> None:
    spec = client_service(make_cluster(), SETTINGS)["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["publishNotReadyAddresses"] is False
    assert spec["ports"] == [
        {"name": "client", "port": 2379, "targetPort": "client", "protocol": "TCP"}
    ]


def test_service_target_ports_name_container_ports() -> None:
    cluster = make_cluster()
    container = statefulset(cluster, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    for service in (peer_service(cluster, SETTINGS), client_service(cluster, SETTINGS)):
        for port in service["spec"]["ports"]:
            assert by_name[port["targetPort"]] == port["port"]


def test_the_peer_service_is_the_statefulsets_service() -> None:
    cluster = make_cluster()
    sts = statefulset(cluster, SETTINGS)
    assert sts["spec"]["serviceName"] == peer_service(cluster, SETTINGS)["metadata"]["name"]
    # The members' URLs resolve through it.
    assert ".demo-peer.prod.svc." in naming.peer_url("demo", "prod", 0)


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [(1, 0), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4), (8, 5), (9, 5)],
)
def test_pdb_keeps_quorum(replicas: int, expected: int) -> None:
    assert min_available(replicas) == expected
    spec = pdb(make_cluster({"replicas": replicas}), SETTINGS)["spec"]
    assert spec["minAvailable"] == expected
    assert "maxUnavailable" not in spec
    # Disruptions allowed while every member is healthy: never enough to lose quorum.
    allowed = replicas - expected
    if replicas > 1:
        assert replicas - allowed > replicas // 2
    else:
        assert allowed == 1  # a single member never blocks a node drain


def test_pdb_for_the_membership_while_scaling() -> None:
    # Scaling 5 -> 3 removes one member at a time: the budget follows the larger membership.
    spec = pdb(make_cluster({"replicas": 3}), SETTINGS, replicas=5)["spec"]
    assert spec["minAvailable"] == 3


def test_pdb_evicts_unhealthy_members_only_within_the_budget() -> None:
    spec = pdb(make_cluster(), SETTINGS)["spec"]
    assert spec["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"


@pytest.mark.parametrize("spec", [{}, {"podTemplate": POD_TEMPLATE_EXTRAS}])
def test_selectors_select_exactly_the_members(spec: dict[str, Any]) -> None:
    cluster = make_cluster(spec)
    manifests = children(cluster, SETTINGS, BootstrapState.NEW)
    sts = by_kind(manifests, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    member_selector = sts["spec"]["selector"]["matchLabels"]
    assert matches(member_selector, pod_labels)

    selectors = {
        "peer": by_kind(manifests, "Service", "demo-peer")["spec"]["selector"],
        "client": by_kind(manifests, "Service", "demo-client")["spec"]["selector"],
        "pdb": by_kind(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "anti-affinity": sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ][-1]["labelSelector"]["matchLabels"],
    }
    for what, selector in selectors.items():
        assert selector == member_selector, what

    # Another cluster's members (even one whose name extends this one's) are never selected.
    other = statefulset(make_cluster(spec, name="demo-2"), SETTINGS)
    assert not matches(member_selector, other["spec"]["template"]["metadata"]["labels"])


def test_user_labels_cannot_move_pods_out_of_their_selectors() -> None:
    labels = {
        "team": "storage",
        naming.LABEL_INSTANCE: "other",
        naming.LABEL_CLUSTER: "other",
        naming.LABEL_NAME: "not-etcd",
    }
    sts = statefulset(make_cluster({"podTemplate": {"labels": labels}}), SETTINGS)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["team"] == "storage"
    assert matches(naming.selector_labels("demo"), pod_labels)
