"""Reconcile decisions as tables: (desired, observed) -> actions, without any server."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components.bootstrap import KEY_INITIAL_CLUSTER_STATE, BootstrapState
from etcd_operator.reconcile.observed import (
    FINGERPRINT_ANNOTATION,
    ChildKey,
    EtcdView,
    Observed,
    PodState,
)
from etcd_operator.reconcile.plan import (
    EVEN_MEMBERS,
    Apply,
    Event,
    PatchStatus,
    RemoveMember,
    desired_children,
    fingerprint,
    plan,
)
from etcd_operator.reconcile.status import status_patch

from tests.unit.operator.reconcile.builders import (
    CLUSTER_ID,
    SETTINGS,
    T0,
    applied_keys,
    at,
    cluster,
    condition,
    events,
    execute,
    flips,
    healthy_view,
    member,
    pods,
    reasons,
    rolled_out,
    status_of,
    view,
)

ALL_CHILDREN = [
    ChildKey("ConfigMap", "demo-bootstrap"),
    ChildKey("Service", "demo-peer"),
    ChildKey("Service", "demo-client"),
    ChildKey("PodDisruptionBudget", "demo"),
    ChildKey("StatefulSet", "demo"),
]


def running(replicas: int = 3) -> tuple[EtcdCluster, Observed]:
    """A formed, healthy cluster whose status and children are what the last pass wrote."""
    desired = cluster(replicas=replicas)
    observed = Observed(
        pods=pods(replicas), statefulset=rolled_out(replicas), etcd=healthy_view(replicas)
    )
    for step in range(3):
        actions = plan(desired, observed, SETTINGS, at(step))
        desired, observed = execute(desired, observed, actions)
    return desired, observed


# -- create ----------------------------------------------------------------------------------


def test_create_applies_every_child_in_order_with_state_new() -> None:
    actions = plan(cluster(), Observed(), SETTINGS, T0)

    assert applied_keys(actions) == ALL_CHILDREN
    configmap = actions[0]
    assert isinstance(configmap, Apply)
    assert configmap.manifest["data"][KEY_INITIAL_CLUSTER_STATE] == "new"
    assert flips(actions) == []
    assert reasons(actions) == ["Creating"]
    assert events(actions)[0] == Event("Normal", "Creating", "creating 3 members running 3.5.17")
    status = status_of(actions)
    assert status["phase"] == "Creating"
    assert condition(actions, "Progressing")["status"] == "True"
    assert condition(actions, "Progressing")["reason"] == "Creating"
    assert condition(actions, "Available")["status"] == "False"
    assert condition(actions, "Degraded")["status"] == "False"
    assert status["replicas"] == 0
    assert status["readyReplicas"] == 0
    assert status["selector"] == (
        "app.kubernetes.io/instance=demo,app.kubernetes.io/name=etcd,etcd.pyetcd.io/cluster=demo"
    )
    assert list(status)[-1] == "observedGeneration"
    assert status["observedGeneration"] == 1


def test_every_manifest_carries_its_fingerprint_and_owner() -> None:
    for manifest in desired_children(cluster(), SETTINGS, BootstrapState.NEW):
        annotations = manifest["metadata"]["annotations"]
        assert annotations[FINGERPRINT_ANNOTATION] == fingerprint(manifest)
        assert manifest["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_fingerprint_ignores_its_own_annotation_and_key_order() -> None:
    (configmap, *_) = desired_children(cluster(), SETTINGS, BootstrapState.NEW)
    reordered = dict(reversed(list(configmap.items())))
    assert fingerprint(reordered) == fingerprint(configmap)
    changed = {**configmap, "data": {**configmap["data"], KEY_INITIAL_CLUSTER_STATE: "existing"}}
    assert fingerprint(changed) != fingerprint(configmap)


# -- formation and the bootstrap state ---------------------------------------------------------


def test_flips_to_existing_once_every_member_is_listed_and_healthy() -> None:
    desired, observed = execute(cluster(), Observed(), plan(cluster(), Observed(), SETTINGS, T0))
    assert observed.bootstrap_state == "new"
    observed = dataclasses.replace(observed, pods=pods(), etcd=healthy_view())

    actions = plan(desired, observed, SETTINGS, at(10))

    assert applied_keys(actions) == []
    (flip,) = flips(actions)
    assert flip.state == BootstrapState.EXISTING
    assert flip.manifest["data"][KEY_INITIAL_CLUSTER_STATE] == "existing"
    assert "ClusterFormed" in reasons(actions)
    assert "Available" in reasons(actions)
    assert reasons(actions).count("MemberHealthy") == 3
    assert status_of(actions)["phase"] == "Running"


@pytest.mark.parametrize(
    "etcd",
    [
        pytest.param(None, id="etcd-unreachable"),
        pytest.param(view(member(0, leader=True), member(1)), id="member-not-listed"),
        pytest.param(
            view(member(0, leader=True), member(1), member(2, healthy=False)), id="member-unhealthy"
        ),
    ],
)
def test_never_flips_before_formation(etcd: EtcdView | None) -> None:
    desired, observed = execute(cluster(), Observed(), plan(cluster(), Observed(), SETTINGS, T0))
    observed = dataclasses.replace(observed, etcd=etcd)

    actions = plan(desired, observed, SETTINGS, at(10))

    assert flips(actions) == []
    assert applied_keys(actions) == []
    assert status_of(actions)["phase"] == "Creating"
    assert "ClusterFormed" not in reasons(actions)


def test_never_flips_back_to_new() -> None:
    desired, observed = running()
    # Status lost (e.g. the resource was restored from a backup) and a member is gone from etcd:
    # "formed" reads False now, but the live ConfigMap says existing, and that sticks.
    desired = desired.model_copy(update={"status": None})
    observed = dataclasses.replace(observed, etcd=view(member(0, leader=True), member(1)))

    actions = plan(desired, observed, SETTINGS, at(100))

    assert flips(actions) == []
    # The children follow the two members etcd lists (pod demo-2 is beyond them); the
    # ConfigMap keeps "existing".
    for apply in [a for a in actions if isinstance(a, Apply)]:
        if apply.manifest["kind"] == "ConfigMap":
            assert apply.manifest["data"][KEY_INITIAL_CLUSTER_STATE] == "existing"
        if apply.manifest["kind"] == "StatefulSet":
            assert apply.manifest["spec"]["replicas"] == 2


def test_missing_configmap_after_formation_is_recreated_as_existing() -> None:
    desired, observed = running()
    children = {k: v for k, v in observed.children.items() if k.kind != "ConfigMap"}
    observed = dataclasses.replace(observed, children=children, bootstrap_state=None)

    actions = plan(desired, observed, SETTINGS, at(100))

    (apply,) = [a for a in actions if isinstance(a, Apply)]
    assert apply.manifest["kind"] == "ConfigMap"
    assert apply.manifest["data"][KEY_INITIAL_CLUSTER_STATE] == "existing"


# -- resume and spec changes -------------------------------------------------------------------


def test_resume_after_restart_applies_nothing() -> None:
    desired, observed = running()

    actions = plan(desired, observed, SETTINGS, at(100))

    assert len(actions) == 1
    assert isinstance(actions[0], PatchStatus)
    assert status_of(actions)["phase"] == "Running"
    assert desired.status is not None
    assert status_of(actions) == status_patch(desired.status)


@pytest.mark.parametrize(
    ("change", "phase"),
    [
        pytest.param({"version": "3.5.18"}, "Upgrading", id="version"),
        pytest.param(
            {"etcd": {"heartbeatIntervalMs": 200, "electionTimeoutMs": 2000}},
            "Running",
            id="etcd-options",
        ),
    ],
)
def test_spec_change_applies_the_statefulset(change: dict[str, object], phase: str) -> None:
    desired, observed = running()
    spec = desired.spec.model_dump() | change
    changed = desired.model_copy(
        update={
            "spec": type(desired.spec).model_validate(spec),
            "metadata": {**desired.metadata, "generation": 2},
        }
    )

    actions = plan(changed, observed, SETTINGS, at(100))

    assert applied_keys(actions) == [ChildKey("StatefulSet", "demo")]
    assert reasons(actions) == ["Updated"]
    progressing = condition(actions, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "SpecChanged")
    assert status_of(actions)["phase"] == phase
    assert status_of(actions)["observedGeneration"] == 2


def test_child_edited_by_hand_is_applied_again() -> None:
    desired, observed = running()
    children = dict(observed.children)
    key = ChildKey("Service", "demo-client")
    edited = copy.deepcopy(dict(children[key]))
    del edited["metadata"]["annotations"]  # annotation removed
    children[key] = edited
    observed = dataclasses.replace(observed, children=children)

    assert applied_keys(plan(desired, observed, SETTINGS, at(100))) == [
        ChildKey("Service", "demo-client")
    ]


def test_rolling_update_in_progress_is_progressing() -> None:
    desired, observed = running()
    assert observed.statefulset is not None
    rolling = dataclasses.replace(
        observed.statefulset,
        updated_replicas=1,
        update_revision="r2",
    )
    actions = plan(desired, dataclasses.replace(observed, statefulset=rolling), SETTINGS, at(100))

    progressing = condition(actions, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "RollingUpdate")
    assert progressing["message"] == "1 of 3 members run the current template"


# -- degraded, unreachable, deletion ---------------------------------------------------------


def test_member_missing_from_etcd_is_degraded() -> None:
    # A gap in the ordinals (demo-1 removed by hand): not a scaling state; the replacement step
    # adds it back (test_replacement), and the report says what it saw.
    desired, observed = running()
    observed = dataclasses.replace(observed, etcd=view(member(0, leader=True), member(2)))

    actions = plan(desired, observed, SETTINGS, at(100))

    degraded = condition(actions, "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == "MemberMissing"
    assert degraded["message"] == "not in etcd's member list: demo-1"
    assert condition(actions, "Available")["status"] == "True"  # 2 of 2 voters, quorum holds
    assert status_of(actions)["phase"] == "Degraded"
    assert Event("Warning", "Degraded", "MemberMissing: not in etcd's member list: demo-1") in (
        events(actions)
    )
    assert applied_keys(actions) == []
    assert [
        type(a).__name__ for a in actions if not isinstance(a, Apply | Event | PatchStatus)
    ] == [
        "DeletePVC",
        "DeletePod",
        "AddMember",
    ]


def test_unhealthy_member_and_lost_quorum() -> None:
    desired, observed = running()
    etcd = view(member(0, leader=True), member(1, healthy=False), member(2, healthy=False))

    actions = plan(desired, dataclasses.replace(observed, etcd=etcd), SETTINGS, at(100))

    available = condition(actions, "Available")
    assert (available["status"], available["reason"]) == ("False", "QuorumLost")
    assert available["message"] == "1 of 3 voting members healthy, 2 needed"
    degraded = condition(actions, "Degraded")
    assert degraded["reason"] == "MemberUnhealthy"
    assert "demo-1 (context deadline exceeded)" in degraded["message"]
    assert [e for e in events(actions) if e.reason == "MemberUnhealthy"] == [
        Event("Warning", "MemberUnhealthy", "member demo-1 is unhealthy"),
        Event("Warning", "MemberUnhealthy", "member demo-2 is unhealthy"),
    ]
    assert "Unavailable" in reasons(actions)


def test_etcd_unreachable_reports_from_pods_and_keeps_what_etcd_told_before() -> None:
    desired, observed = running()
    observed = dataclasses.replace(
        observed,
        etcd=None,
        pods=(*pods(2), PodState("demo-2", ready=False, phase="Running", node="node-2")),
    )

    actions = plan(desired, observed, SETTINGS, at(100))

    assert applied_keys(actions) == []
    assert flips(actions) == []
    status = status_of(actions)
    assert status["phase"] == "Degraded"
    for type_ in ("Available", "Degraded"):
        cond = condition(actions, type_)
        assert (cond["status"], cond["reason"]) == ("Unknown", "EtcdUnreachable")
    assert [(m["name"], m["healthy"], m["id"]) for m in status["members"]] == [
        ("demo-0", True, None),
        ("demo-1", True, None),
        ("demo-2", False, None),
    ]
    assert status["readyReplicas"] == 2
    assert status["replicas"] == 3
    assert status["leader"] is None
    assert status["clusterID"] == f"{CLUSTER_ID:x}"
    assert status["currentVersion"] == "3.5.17"
    assert "EtcdUnreachable" in reasons(actions)
    assert "MemberUnhealthy" not in reasons(actions)  # pod readiness does not make member events


NO_SSD_NODE = "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."


def unplaced(name: str, why: str = NO_SSD_NODE) -> PodState:
    return PodState(name, ready=False, phase="Pending", unschedulable=why)


def test_members_that_cannot_be_scheduled_while_creating_are_degraded() -> None:
    # No node carries the SSD label: every member stays Pending, and the status says why.
    desired = cluster()
    observed = Observed(pods=tuple(unplaced(f"demo-{i}") for i in range(3)))

    actions = plan(desired, observed, SETTINGS, T0)

    lines = [f"pod demo-{i} cannot be scheduled: {NO_SSD_NODE}" for i in range(3)]
    degraded = condition(actions, "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "MemberUnschedulable",
        "; ".join(lines),
    )
    assert status_of(actions)["phase"] == "Creating"  # still creating: the phase says where
    assert [e for e in events(actions) if e.type == "Warning"] == [
        Event("Warning", "MemberUnschedulable", line) for line in lines
    ]
    assert "Degraded" not in reasons(actions)  # the per-pod events say it


def test_an_unschedulable_member_outranks_an_unreachable_etcd() -> None:
    # A formed cluster whose pods were evicted and cannot come back: etcd does not answer, and
    # the reason to act on is the scheduler's.
    desired, observed = running()
    observed = dataclasses.replace(
        observed, etcd=None, pods=tuple(unplaced(f"demo-{i}") for i in range(3))
    )

    actions = plan(desired, observed, SETTINGS, at(100))

    assert condition(actions, "Available")["reason"] == "EtcdUnreachable"
    degraded = condition(actions, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "MemberUnschedulable")
    assert reasons(actions).count("MemberUnschedulable") == 3
    assert status_of(actions)["phase"] == "Degraded"


def test_ready_replicas_counts_ready_pods_not_healthy_voters() -> None:
    """readyReplicas is the pods' readiness (the StatefulSet convention the CRD documents): a
    Ready learner's pod counts, and a voter etcd finds unhealthy counts while its pod is Ready;
    a pod that is not Ready does not count, whatever etcd says."""
    desired, observed = running(4)
    learner = dataclasses.replace(member(3), learner=True)
    etcd = view(member(0, leader=True), member(1, healthy=False), member(2), learner)
    observed = dataclasses.replace(
        observed,
        etcd=etcd,
        pods=(*pods(3), PodState("demo-3", ready=True, phase="Running", node="node-3")),
    )
    status = status_of(plan(desired, observed, SETTINGS, at(100)))
    voters_healthy = [m for m in status["members"] if m["healthy"] and not m["learner"]]
    assert len(voters_healthy) == 2
    assert status["readyReplicas"] == 4

    observed = dataclasses.replace(
        observed, pods=(*pods(3), PodState("demo-3", ready=False, phase="Running", node="n"))
    )
    assert status_of(plan(desired, observed, SETTINGS, at(101)))["readyReplicas"] == 3


def test_deletion_plans_nothing() -> None:
    desired, observed = running()
    deleting = desired.model_copy(
        update={"metadata": {**desired.metadata, "deletionTimestamp": "2025-01-02T03:04:05Z"}}
    )
    assert plan(deleting, observed, SETTINGS, at(100)) == []
    assert plan(deleting, Observed(), SETTINGS, at(100)) == []


# -- events and status details ---------------------------------------------------------------


def test_even_members_warned_once_per_generation() -> None:
    first = plan(cluster(replicas=4), Observed(), SETTINGS, T0)
    assert Event("Warning", "EvenMembers", f"4 members: {EVEN_MEMBERS}") in events(first)
    desired, observed = execute(cluster(replicas=4), Observed(), first)
    assert "EvenMembers" not in reasons(plan(desired, observed, SETTINGS, at(1)))
    assert "EvenMembers" not in reasons(plan(cluster(replicas=3), Observed(), SETTINGS, T0))


def test_leader_change_is_an_event_and_the_status_names_the_leader() -> None:
    desired, observed = running()
    observed = dataclasses.replace(observed, etcd=healthy_view(leader=2))

    actions = plan(desired, observed, SETTINGS, at(100))

    assert events(actions) == [Event("Normal", "LeaderChanged", "leader is demo-2 (was demo-0)")]
    status = status_of(actions)
    assert status["leader"] == "demo-2"
    assert [m["leader"] for m in status["members"]] == [False, False, True]
    assert status["members"][0]["id"] == "100"
    assert status["members"][0]["clientURL"] == "http://demo-0.demo-peer.ns.svc.cluster.local:2379"


def test_condition_keeps_transition_time_unless_its_status_changes() -> None:
    desired, observed = running()
    since = condition(plan(desired, observed, SETTINGS, at(100)), "Available")
    assert since["lastTransitionTime"] == "2025-01-02T03:04:05Z"  # True since the first pass
    # A changed message keeps the time; a changed status moves it.
    observed_2 = dataclasses.replace(observed, etcd=healthy_view(leader=1))
    assert (
        condition(plan(desired, observed_2, SETTINGS, at(200)), "Available")["lastTransitionTime"]
        == "2025-01-02T03:04:05Z"
    )
    lost = dataclasses.replace(observed, etcd=view(member(0), member(1), member(2)))
    no_leader = condition(plan(desired, lost, SETTINGS, at(300)), "Available")
    assert (no_leader["status"], no_leader["reason"]) == ("False", "NoLeader")
    assert no_leader["lastTransitionTime"] == "2025-01-02T03:09:05Z"


def test_a_lost_quorum_names_the_members_gone_and_the_survivors() -> None:
    desired, observed = running()
    survivor = dataclasses.replace(member(0, healthy=False), raft_index=812)
    etcd = view(survivor, member(1, healthy=False), member(2, healthy=False))

    lost = condition(
        plan(desired, dataclasses.replace(observed, etcd=etcd), SETTINGS, at(100)), "Available"
    )

    assert (lost["status"], lost["reason"]) == ("False", "QuorumLost")
    assert lost["message"].startswith(
        "1 of 3 voting members answer, 2 needed: gone demo-1, demo-2; "
        "surviving demo-0 (raft index 812); once the gone members are known to be lost for "
        "good, annotate the cluster with etcd.pyetcd.io/recover-quorum=<any token>"
    )


def test_current_version_is_the_lowest_healthy_member_version() -> None:
    desired, observed = running()
    etcd = view(
        member(0, leader=True, version="3.5.18"),
        member(1, version="3.5.17"),
        member(2, healthy=False, version="3.4.0"),
    )
    status = status_of(plan(desired, dataclasses.replace(observed, etcd=etcd), SETTINGS, at(1)))
    assert status["currentVersion"] == "3.5.17"


def test_unstarted_learner_is_named_after_its_pod() -> None:
    desired, observed = running()
    learner = dataclasses.replace(
        member(3, healthy=False), name="", client_urls=(), learner=True, version=None
    )
    etcd = view(*healthy_view().members, learner)

    actions = plan(desired, dataclasses.replace(observed, etcd=etcd), SETTINGS, at(100))

    status = status_of(actions)
    assert [m["name"] for m in status["members"]] == ["demo-0", "demo-1", "demo-2", "demo-3"]
    assert status["members"][3]["learner"] is True
    assert condition(actions, "Available")["status"] == "True"  # learners do not vote
    progressing = condition(actions, "Progressing")
    # Three members are desired: the learner is the highest ordinal and is removed.
    assert (progressing["status"], progressing["reason"]) == ("True", "ScalingIn")
    assert progressing["message"] == "removing member demo-3 (4 members, 3 desired)"
    assert actions[0] == RemoveMember(0x103, "demo-3")
    assert condition(actions, "Degraded")["status"] == "False"  # a learner is not degraded
    assert status["phase"] == "Scaling"


# -- idempotence -----------------------------------------------------------------------------

WORLDS = {
    "nothing-exists": Observed(),
    "members-starting": Observed(pods=pods(ready=False)),
    "formed": Observed(pods=pods(), statefulset=rolled_out(), etcd=healthy_view()),
    "member-missing": Observed(pods=pods(), etcd=view(member(0, leader=True), member(1))),
    "etcd-unreachable": Observed(pods=pods(ready=False)),
}


@pytest.mark.parametrize("world", WORLDS.values(), ids=WORLDS.keys())
@pytest.mark.parametrize("replicas", [1, 3, 4])
def test_plan_on_the_result_of_its_actions_applies_nothing(world: Observed, replicas: int) -> None:
    desired = cluster(replicas=replicas)
    if world.etcd is not None and len(world.etcd.members) == 3:
        world = dataclasses.replace(world, etcd=healthy_view(replicas))
    first = plan(desired, world, SETTINGS, T0)
    desired, world = execute(desired, world, first)
    second = plan(desired, world, SETTINGS, at(30))
    desired, world = execute(desired, world, second)

    third = plan(desired, world, SETTINGS, at(60))

    assert applied_keys(third) == []
    assert flips(third) == []
    assert events(third) == []
    assert status_of(third) == status_of(second)
