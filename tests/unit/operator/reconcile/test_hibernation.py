"""Hibernation (``replicas: 0``) as a converging world: every member stopped and nothing else
changed (membership, claims, the bootstrap ConfigMap), the status says Hibernated, no step reads
the silence as a failure, and ``replicas`` set again brings the same members back."""

from __future__ import annotations

import dataclasses
from typing import Any

from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components.bootstrap import KEY_INITIAL_CLUSTER
from etcd_operator.reconcile.actions import DeletePod
from etcd_operator.reconcile.observed import ChildKey, Observed
from etcd_operator.reconcile.plan import (
    Action,
    AddMember,
    Apply,
    DeletePVC,
    Event,
    MoveLeader,
    PatchStatus,
    PromoteMember,
    RemoveMember,
    plan,
)

from tests.unit.operator.reconcile.builders import (
    NAME,
    SETTINGS,
    at,
    cluster,
    condition,
    converge,
    execute,
    formed,
    reasons,
    status_of,
)

STORE = {"bucket": "backups"}
MEMBERSHIP = (AddMember, PromoteMember, MoveLeader, RemoveMember, DeletePVC, DeletePod)
STS = ChildKey("StatefulSet", NAME)
CONFIGMAP = ChildKey("ConfigMap", f"{NAME}-bootstrap")


def with_replicas(desired: EtcdCluster, replicas: int) -> EtcdCluster:
    return desired.model_copy(
        update={"spec": desired.spec.model_copy(update={"replicas": replicas})}
    )


def applied(actions: list[Action], kind: str) -> list[dict[str, object]]:
    return [a.manifest for a in actions if isinstance(a, Apply) and a.manifest["kind"] == kind]


def stopped(observed: Observed) -> Observed:
    """What the StatefulSet controller and the kubelet do at zero replicas: no pod, and so no
    member answers."""
    return dataclasses.replace(observed, pods=(), etcd=None)


def hibernated(**spec: Any) -> tuple[EtcdCluster, Observed, list[Action]]:
    desired, observed = formed(**spec)
    asleep = with_replicas(desired, 0)
    first = plan(asleep, dataclasses.replace(observed, now=at(50)), SETTINGS, at(50))
    desired, observed = execute(asleep, observed, first)
    return desired, stopped(observed), first


def test_replicas_zero_stops_every_member_and_changes_nothing_else() -> None:
    desired, observed, first = hibernated()
    assert [a for a in first if isinstance(a, MEMBERSHIP)] == []
    [sts] = applied(first, "StatefulSet")
    assert sts["spec"]["replicas"] == 0  # type: ignore[index]
    # The ConfigMap and the PDB keep the membership: the memory of the cluster while no member
    # answers.
    configmap = observed.children[CONFIGMAP]
    assert len(configmap["data"][KEY_INITIAL_CLUSTER].split(",")) == 3
    assert observed.rendered_members == 3
    progressing = condition(first, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "Hibernating")
    # Stopped: the status says so, nothing is wrong, and nothing is acted on.
    actions = plan(desired, dataclasses.replace(observed, now=at(60)), SETTINGS, at(60))
    assert [a for a in actions if not isinstance(a, Event | PatchStatus)] == []
    assert [a for a in actions if isinstance(a, (*MEMBERSHIP, Apply))] == []
    status = status_of(actions)
    assert status["phase"] == "Hibernated"
    available = condition(actions, "Available")
    assert (available["status"], available["reason"]) == ("False", "Hibernated")
    assert condition(actions, "Degraded")["status"] == "False"
    assert condition(actions, "Progressing")["reason"] == "Hibernated"
    # A Normal event when it went to sleep, not a Warning that it is unavailable.
    assert "Hibernated" in reasons(first)
    assert "Unavailable" not in reasons(first) + reasons(actions)
    assert observed.pvcs == tuple(f"data-{NAME}-{i}" for i in range(3))


def test_it_stays_hibernated_for_as_long_as_it_is_asked() -> None:
    """Hours later: no quorum-loss report, no recovery, no replacement, no backup."""
    desired, observed, _ = hibernated(
        backup={"store": STORE, "schedule": "@hourly"},
        recovery={"quorumLoss": "Automatic", "quorumLostAfterSeconds": 60},
    )
    for seconds in (600, 7200, 86400):
        actions = plan(
            desired, dataclasses.replace(observed, now=at(seconds)), SETTINGS, at(seconds)
        )
        assert [a for a in actions if not isinstance(a, Event | PatchStatus)] == []
        assert condition(actions, "Available")["reason"] == "Hibernated"
        desired, observed = execute(desired, observed, actions)


def test_replicas_set_again_brings_the_same_members_back() -> None:
    desired, observed, _ = hibernated()
    awake = with_replicas(desired, 3)
    actions = plan(awake, dataclasses.replace(observed, now=at(100)), SETTINGS, at(100))
    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == []
    [sts] = applied(actions, "StatefulSet")
    assert sts["spec"]["replicas"] == 3  # type: ignore[index]
    # The members start on their volumes under their member IDs: etcd answers as before.
    _, before = formed()
    desired, observed = execute(awake, observed, actions)
    observed = dataclasses.replace(observed, pods=before.pods, etcd=before.etcd)
    desired, observed, history = converge(desired, observed, start=110)
    assert [a for h in history for a in h if isinstance(a, MEMBERSHIP)] == []
    assert observed.etcd == before.etcd
    assert desired.status is not None and desired.status.phase == "Running"


def test_resuming_to_another_size_comes_back_first_then_scales() -> None:
    desired, observed, _ = hibernated()
    bigger = with_replicas(desired, 5)
    actions = plan(bigger, dataclasses.replace(observed, now=at(100)), SETTINGS, at(100))
    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == []
    [sts] = applied(actions, "StatefulSet")
    assert sts["spec"]["replicas"] == 3  # type: ignore[index]
    _, before = formed()
    desired, observed = execute(bigger, observed, actions)
    observed = dataclasses.replace(observed, pods=before.pods, etcd=before.etcd)
    desired, observed, history = converge(desired, observed, start=110)
    added = [a for h in history for a in h if isinstance(a, AddMember)]
    assert [a.name for a in added] == [f"{NAME}-3", f"{NAME}-4"]
    assert observed.etcd is not None and len(observed.etcd.voters) == 5


def test_a_cluster_created_at_zero_creates_nothing_until_replicas_is_set() -> None:
    desired = cluster(replicas=0)
    observed = Observed(now=at(0))
    actions = plan(desired, observed, SETTINGS, at(0))
    assert [a for a in actions if isinstance(a, Apply)] == []
    assert "Creating" not in reasons(actions)
    assert "EvenMembers" not in reasons(actions)
    progressing = condition(actions, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "Hibernated")
    assert "set it to create the cluster" in progressing["message"]
    assert status_of(actions)["phase"] == "Hibernated"


def test_hibernation_waits_for_a_quorum_loss_recovery_to_end() -> None:
    desired, observed = formed()
    recovering = dataclasses.replace(observed, force_new_cluster=f"{NAME}-0:t1", now=at(50))
    actions = plan(with_replicas(desired, 0), recovering, SETTINGS, at(50))
    for manifest in applied(actions, "StatefulSet"):
        assert manifest["spec"]["replicas"] != 0  # type: ignore[index]
    assert "recovery" in condition(actions, "Progressing")["message"]
