"""What the observation makes of nodes and volumes: since when a node is not Ready, and which
node a volume is pinned to (pure translations of API objects)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from etcd_operator.runtime.observe import not_ready_since, pinned_node


def node(status: str, since: str = "2026-12-06T10:00:00Z") -> dict[str, object]:
    return {
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": status, "lastTransitionTime": since},
            ]
        }
    }


def test_a_node_not_ready_since_its_ready_conditions_transition() -> None:
    assert not_ready_since(node("True")) is None
    assert not_ready_since(None) is None
    assert not_ready_since({"status": {}}) is None
    when = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    assert not_ready_since(node("Unknown")) == when
    assert not_ready_since(node("False")) == when


def affinity(key: str, *values: str) -> dict[str, object]:
    expr = {"key": key, "operator": "In", "values": list(values)}
    return {
        "spec": {
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [expr]}]}}
        }
    }


@pytest.mark.parametrize(
    ("volume", "pinned"),
    [
        (affinity("kubernetes.io/hostname", "node-a"), "node-a"),  # local, local-path, hostPath
        (affinity("topology.topolvm.io/node", "node-b"), "node-b"),  # a node-local CSI driver
        (affinity("topology.kubernetes.io/zone", "eu-1a"), None),  # a network volume
        (affinity("kubernetes.io/hostname", "node-a", "node-b"), None),  # not one node
        ({"spec": {}}, None),
        (None, None),
    ],
)
def test_the_node_a_volume_is_pinned_to(
    volume: dict[str, object] | None, pinned: str | None
) -> None:
    assert pinned_node(volume) == pinned
