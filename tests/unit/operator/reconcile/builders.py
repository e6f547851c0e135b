"""Test-object builders for the reconcile tables: clusters, etcd views, and a world that applies
the planned actions the way the executor would (without any server)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster, EtcdClusterStatus
from etcd_operator.components.bootstrap import KEY_INITIAL_CLUSTER_STATE
from etcd_operator.reconcile.observed import (
    FINGERPRINT_ANNOTATION,
    ChildKey,
    EtcdMember,
    EtcdView,
    Observed,
    PodState,
    StatefulSetState,
)
from etcd_operator.reconcile.plan import (
    Action,
    Apply,
    Event,
    PatchStatus,
    SetBootstrapState,
    key_of,
)

SETTINGS = OperatorSettings()
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CLUSTER_ID = 0xCAFE
NAME = "demo"


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def cluster(
    *, replicas: int = 3, version: str = "3.5.17", generation: int = 1, **spec: Any
) -> EtcdCluster:
    return EtcdCluster.model_validate(
        {
            "metadata": {"name": NAME, "namespace": "ns", "uid": "uid-1", "generation": generation},
            "spec": {"replicas": replicas, "version": version, **spec},
        }
    )


def member(
    ordinal: int, *, healthy: bool = True, leader: bool = False, version: str = "3.5.17"
) -> EtcdMember:
    name = f"{NAME}-{ordinal}"
    host = f"{name}.{NAME}-peer.ns.svc.cluster.local"
    return EtcdMember(
        id=0x100 + ordinal,
        name=name,
        peer_urls=(f"http://{host}:2380",),
        client_urls=(f"http://{host}:2379",),
        healthy=healthy,
        leader=leader,
        version=version,
        db_size=20480,
        revision=7,
        error=None if healthy else "context deadline exceeded",
    )


def view(*members: EtcdMember, alarms: tuple[str, ...] = ()) -> EtcdView:
    return EtcdView(cluster_id=CLUSTER_ID, members=members, alarms=alarms)


def healthy_view(replicas: int = 3, leader: int = 0) -> EtcdView:
    return view(*(member(i, leader=i == leader) for i in range(replicas)))


def pods(replicas: int = 3, ready: bool = True) -> tuple[PodState, ...]:
    return tuple(
        PodState(f"{NAME}-{i}", ready=ready, phase="Running", node=f"node-{i}")
        for i in range(replicas)
    )


def rolled_out(replicas: int = 3) -> StatefulSetState:
    return StatefulSetState(
        generation=1,
        observed_generation=1,
        replicas=replicas,
        ready_replicas=replicas,
        updated_replicas=replicas,
        current_revision="r1",
        update_revision="r1",
    )


def applies(actions: list[Action]) -> list[Apply]:
    return [a for a in actions if isinstance(a, Apply)]


def applied_keys(actions: list[Action]) -> list[ChildKey]:
    return [a.key for a in applies(actions)]


def events(actions: list[Action]) -> list[Event]:
    return [a for a in actions if isinstance(a, Event)]


def reasons(actions: list[Action]) -> list[str]:
    return [e.reason for e in events(actions)]


def flips(actions: list[Action]) -> list[SetBootstrapState]:
    return [a for a in actions if isinstance(a, SetBootstrapState)]


def status_of(actions: list[Action]) -> dict[str, Any]:
    last = actions[-1]
    assert isinstance(last, PatchStatus), f"the last action is {last!r}, not PatchStatus"
    return last.status


def condition(actions: list[Action], type_: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in status_of(actions)["conditions"] if c["type"] == type_
    ]
    assert len(found) == 1, found
    return found[0]


def execute(
    desired: EtcdCluster, observed: Observed, actions: list[Action]
) -> tuple[EtcdCluster, Observed]:
    """The world after the executor ran ``actions``: children carry the applied fingerprints,
    the ConfigMap the applied state, the cluster the patched status."""
    children = dict(observed.children)
    bootstrap = observed.bootstrap_state
    status = desired.status
    for action in actions:
        if isinstance(action, Apply | SetBootstrapState):
            manifest = action.manifest
            children[key_of(manifest)] = manifest["metadata"]["annotations"][FINGERPRINT_ANNOTATION]
            if manifest["kind"] == "ConfigMap":
                bootstrap = manifest["data"][KEY_INITIAL_CLUSTER_STATE]
        elif isinstance(action, PatchStatus):
            status = EtcdClusterStatus.model_validate(action.status)
    return (
        desired.model_copy(update={"status": status}),
        dataclasses.replace(observed, children=children, bootstrap_state=bootstrap),
    )
