"""The bootstrap ConfigMap and the rule that the state never returns to ``new``."""

from __future__ import annotations

import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.components.bootstrap import BootstrapState, bootstrap_configmap, next_state

from tests.unit.operator.components.clusters import make_cluster

PEERS = [
    "demo-0=http://demo-0.demo-peer.prod.svc.cluster.local:2380",
    "demo-1=http://demo-1.demo-peer.prod.svc.cluster.local:2380",
    "demo-2=http://demo-2.demo-peer.prod.svc.cluster.local:2380",
    "demo-3=http://demo-3.demo-peer.prod.svc.cluster.local:2380",
    "demo-4=http://demo-4.demo-peer.prod.svc.cluster.local:2380",
]


@pytest.mark.parametrize("replicas", [1, 3, 5])
@pytest.mark.parametrize("state", list(BootstrapState))
def test_configmap(replicas: int, state: BootstrapState) -> None:
    cm = bootstrap_configmap(make_cluster({"replicas": replicas}), OperatorSettings(), state)
    assert cm["metadata"]["name"] == "demo-bootstrap"
    assert cm["metadata"]["namespace"] == "prod"
    assert cm["data"] == {
        "initial-cluster": ",".join(PEERS[:replicas]),
        "initial-cluster-state": state.value,
    }


def test_replicas_override_lists_the_member_being_added() -> None:
    cm = bootstrap_configmap(
        make_cluster({"replicas": 5}), OperatorSettings(), BootstrapState.EXISTING, replicas=4
    )
    assert cm["data"]["initial-cluster"] == ",".join(PEERS[:4])


def test_cluster_domain() -> None:
    cm = bootstrap_configmap(
        make_cluster({"replicas": 1}),
        OperatorSettings(cluster_domain="corp.internal"),
        BootstrapState.NEW,
    )
    assert cm["data"]["initial-cluster"] == (
        "demo-0=http://demo-0.demo-peer.prod.svc.corp.internal:2380"
    )


@pytest.mark.parametrize(
    ("observed", "formed", "expected"),
    [
        (None, False, BootstrapState.NEW),  # a cluster being created
        ("new", False, BootstrapState.NEW),  # still forming
        (None, True, BootstrapState.EXISTING),  # ConfigMap lost after formation
        ("new", True, BootstrapState.EXISTING),  # formation seen: flip
        ("existing", True, BootstrapState.EXISTING),
        ("existing", False, BootstrapState.EXISTING),  # status lost: never back to new
    ],
)
def test_next_state_is_monotonic(
    observed: str | None, formed: bool, expected: BootstrapState
) -> None:
    assert next_state(observed, formed=formed) == expected


def test_the_survivor_of_a_recovery_is_named_only_during_it() -> None:
    cluster = make_cluster()
    plain = bootstrap_configmap(cluster, OperatorSettings(), BootstrapState.EXISTING)
    assert "force-new-cluster" not in plain["data"]
    forced = bootstrap_configmap(
        cluster, OperatorSettings(), BootstrapState.EXISTING, force_new_cluster="demo-2:t1"
    )
    assert forced["data"]["force-new-cluster"] == "demo-2:t1"
