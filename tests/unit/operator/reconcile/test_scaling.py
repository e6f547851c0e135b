"""Replica changes as tables and as converging worlds: one member at a time, etcd's membership
first, every step derived from what is observed (so any intermediate state converges)."""

from __future__ import annotations

import dataclasses

import pytest
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components.bootstrap import KEY_INITIAL_CLUSTER, KEY_INITIAL_CLUSTER_STATE
from etcd_operator.reconcile.membership import ordinal, pvc_name, pvc_ordinal
from etcd_operator.reconcile.observed import EtcdMember, EtcdView, Observed, PodState
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
    plan_steps,
    report,
)

from tests.unit.operator.reconcile.builders import (
    NAME,
    SETTINGS,
    at,
    condition,
    converge,
    events,
    execute,
    formed,
    member,
    pods,
    reasons,
    rolled_out,
    settle,
    status_of,
    view,
)

MEMBERSHIP = (AddMember, PromoteMember, MoveLeader, RemoveMember, DeletePVC)


def resize(desired: EtcdCluster, replicas: int, generation: int = 2) -> EtcdCluster:
    spec = desired.spec.model_copy(update={"replicas": replicas})
    return desired.model_copy(
        update={"spec": spec, "metadata": {**desired.metadata, "generation": generation}}
    )


def steps(history: list[list[Action]]) -> list[Action]:
    return [a for actions in history for a in actions if isinstance(a, MEMBERSHIP)]


def manifest(actions: list[Action], kind: str) -> dict[str, object] | None:
    found = [a.manifest for a in actions if isinstance(a, Apply) and a.manifest["kind"] == kind]
    return found[0] if found else None


def sts_replicas(actions: list[Action]) -> int | None:
    sts = manifest(actions, "StatefulSet")
    if sts is None:
        return None
    spec = sts["spec"]
    assert isinstance(spec, dict)
    return int(spec["replicas"])


def assert_settled(desired: EtcdCluster, observed: Observed, replicas: int) -> None:
    assert observed.etcd is not None
    assert [m.name for m in observed.etcd.members] == [f"{NAME}-{i}" for i in range(replicas)]
    assert not observed.etcd.learners
    assert observed.statefulset is not None and observed.statefulset.replicas == replicas
    assert observed.pvcs == tuple(pvc_name(NAME, i) for i in range(replicas))
    last = plan(desired, observed, SETTINGS, at(1000))
    assert [a for a in last if not isinstance(a, Event | PatchStatus)] == []
    assert status_of(last)["phase"] == "Running"
    progressing = condition(last, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "Reconciled")


# -- names -----------------------------------------------------------------------------------


def test_ordinals_of_member_and_claim_names() -> None:
    assert ordinal("demo", "demo-12") == 12
    assert ordinal("demo", "demo-01") is None
    assert ordinal("demo", "other-1") is None
    assert ordinal("demo", "demo-x-1") is None
    assert pvc_name("demo", 3) == "data-demo-3"
    assert pvc_ordinal("demo", "data-demo-3") == 3
    assert pvc_ordinal("demo", "logs-demo-3") is None


# -- scale out -------------------------------------------------------------------------------


def test_scale_out_adds_a_learner_first_then_grows_the_statefulset_to_what_etcd_lists() -> None:
    desired, observed = formed(3)
    desired = resize(desired, 5)

    actions = plan(desired, observed, SETTINGS, at(100))

    peer = "http://demo-3.demo-peer.ns.svc.cluster.local:2380"
    assert actions[0] == AddMember("demo-3", peer)
    assert actions[1] == Event(
        "Normal", "MemberAdded", f"added demo-3 to etcd as a learner ({peer})"
    )
    configmap = manifest(actions, "ConfigMap")
    assert configmap is not None
    data = configmap["data"]
    assert isinstance(data, dict)
    assert data[KEY_INITIAL_CLUSTER_STATE] == "existing"
    assert data[KEY_INITIAL_CLUSTER].split(",")[-1] == f"demo-3={peer}"
    assert len(data[KEY_INITIAL_CLUSTER].split(",")) == 4
    assert sts_replicas(actions) == 4  # members etcd will list, not spec.replicas (5)
    kinds = [a.manifest["kind"] for a in actions if isinstance(a, Apply)]
    assert kinds.index("ConfigMap") < kinds.index("StatefulSet")
    progressing = condition(actions, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "ScalingOut")
    assert progressing["message"] == "adding member demo-3 (3 members, 5 desired)"
    assert status_of(actions)["phase"] == "Scaling"
    assert condition(actions, "Degraded")["status"] == "False"


def test_scale_out_converges_one_member_at_a_time() -> None:
    desired, observed = formed(3)
    desired, observed, history = converge(resize(desired, 5), observed, start=100)

    assert steps(history) == [
        AddMember("demo-3", "http://demo-3.demo-peer.ns.svc.cluster.local:2380"),
        PromoteMember(0x103, "demo-3"),
        AddMember("demo-4", "http://demo-4.demo-peer.ns.svc.cluster.local:2380"),
        PromoteMember(0x104, "demo-4"),
    ]
    all_reasons = [r for actions in history for r in reasons(actions)]
    assert all_reasons.count("MemberAdded") == 2
    assert all_reasons.count("MemberPromoted") == 2
    assert_settled(desired, observed, 5)


def test_learner_is_promoted_only_once_started_and_a_refusal_is_retried() -> None:
    desired, observed = formed(3)
    desired = resize(desired, 4)
    desired, observed = execute(desired, observed, plan(desired, observed, SETTINGS, at(100)))
    assert observed.etcd is not None and len(observed.etcd.learners) == 1

    # The pod is not up yet: nothing to promote.
    waiting = plan(desired, observed, SETTINGS, at(101))
    assert [a for a in waiting if isinstance(a, MEMBERSHIP)] == []
    assert condition(waiting, "Progressing")["message"] == (
        "waiting for learner demo-3 to start and catch up"
    )
    assert condition(waiting, "Degraded")["status"] == "False"

    # Started: promote. etcd refuses while it lags; the next pass asks again.
    observed = settle(observed)
    first = plan(desired, observed, SETTINGS, at(102))
    assert [a for a in first if isinstance(a, MEMBERSHIP)] == [PromoteMember(0x103, "demo-3")]
    desired, observed = execute(desired, observed, first, in_sync=False)
    assert observed.etcd is not None and len(observed.etcd.learners) == 1
    again = plan(desired, observed, SETTINGS, at(103))
    assert [a for a in again if isinstance(a, MEMBERSHIP)] == [PromoteMember(0x103, "demo-3")]
    desired, observed = execute(desired, observed, again)
    assert "MemberPromoted" in reasons(plan(desired, observed, SETTINGS, at(104)))


def test_a_report_on_the_world_after_the_steps_shows_their_outcome() -> None:
    """What the handlers do after a pass that acted: ``report`` on a fresh look shows the
    promoted learner as a voter and the scaling done; ``plan`` reports on the world it planned
    from, one step behind."""
    desired, observed = formed(3)
    desired = resize(desired, 4)
    desired, observed = execute(desired, observed, plan(desired, observed, SETTINGS, at(100)))
    desired, observed = execute(desired, observed, plan(desired, observed, SETTINGS, at(101)))
    observed = settle(observed)  # demo-3 has started and caught up
    planned = plan_steps(desired, observed, SETTINGS)
    assert planned is not None and planned.acted
    assert list(planned.actions) == [PromoteMember(0x103, "demo-3")]
    _, after = execute(desired, observed, list(planned.actions))

    before = report(desired, observed, SETTINGS, at(102), planned)
    fresh = report(desired, after, SETTINGS, at(102), planned)

    assert plan(desired, observed, SETTINGS, at(102)) == [*planned.actions, *before]
    assert [m["learner"] for m in status_of(before)["members"]] == [False, False, False, True]
    assert condition(before, "Progressing")["status"] == "True"
    assert [m["learner"] for m in status_of(fresh)["members"]] == [False] * 4
    progressing = condition(fresh, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "Reconciled")
    assert condition(fresh, "Available")["message"] == (
        "4 of 4 voting members healthy, leader demo-0"
    )
    assert status_of(fresh)["phase"] == "Running"
    assert "MemberPromoted" in reasons(fresh)
    assert "MemberPromoted" not in reasons(before)


@pytest.mark.parametrize(
    ("etcd", "why"),
    [
        pytest.param(
            view(member(0, leader=True), member(1), member(2, healthy=False)),
            "waiting for every member to be healthy (demo-2 not)",
            id="unhealthy-member",
        ),
        pytest.param(view(member(0), member(1), member(2)), "waiting for a leader", id="no-leader"),
    ],
)
def test_scale_out_waits_for_a_healthy_cluster(etcd: EtcdView, why: str) -> None:
    desired, observed = formed(3)
    observed = dataclasses.replace(observed, etcd=etcd)

    actions = plan(resize(desired, 5), observed, SETTINGS, at(100))

    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == []
    assert sts_replicas(actions) is None
    assert condition(actions, "Progressing")["message"] == (
        f"adding member demo-3 (3 members, 5 desired): {why}"
    )


def test_scale_out_deletes_a_left_over_claim_before_adding_into_its_ordinal() -> None:
    desired, observed = formed(3)
    observed = dataclasses.replace(observed, pvcs=(*observed.pvcs, "data-demo-3"))

    actions = plan(resize(desired, 4), observed, SETTINGS, at(100))

    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == [DeletePVC("data-demo-3", "ns")]
    assert condition(actions, "Progressing")["message"] == (
        "adding member demo-3 (3 members, 4 desired): waiting for the old volume claim "
        "data-demo-3 to be deleted"
    )
    desired, observed, history = converge(resize(desired, 4), observed, start=100)
    assert steps(history)[:2] == [
        DeletePVC("data-demo-3", "ns"),
        AddMember("demo-3", "http://demo-3.demo-peer.ns.svc.cluster.local:2380"),
    ]
    assert_settled(desired, observed, 4)


# -- scale in --------------------------------------------------------------------------------


def test_scale_in_removes_the_highest_ordinal_then_its_claim() -> None:
    desired, observed = formed(5)
    desired = resize(desired, 4)

    actions = plan(desired, observed, SETTINGS, at(100))

    assert actions[:2] == [
        RemoveMember(0x104, "demo-4"),
        Event("Normal", "MemberRemoved", "removed member demo-4 from etcd"),
    ]
    assert sts_replicas(actions) == 4
    # The pod still runs and the StatefulSet still covers ordinal 4: the claim stays for now.
    assert DeletePVC("data-demo-4", "ns") not in actions
    progressing = condition(actions, "Progressing")
    assert (progressing["reason"], progressing["message"]) == (
        "ScalingIn",
        "removing member demo-4 (5 members, 4 desired)",
    )

    desired, observed = execute(desired, observed, actions)
    observed = settle(observed)
    tail = plan(desired, observed, SETTINGS, at(101))
    assert [a for a in tail if isinstance(a, MEMBERSHIP)] == [DeletePVC("data-demo-4", "ns")]
    assert Event(
        "Normal", "VolumeDeleted", "deleted volume claim data-demo-4 of removed member demo-4"
    ) in events(tail)
    assert condition(tail, "Progressing")["reason"] == "ScalingIn"


def test_scale_in_converges_and_moves_leadership_off_a_member_before_removing_it() -> None:
    desired, observed = formed(5, leader=4)
    desired, observed, history = converge(resize(desired, 3), observed, start=100)

    assert steps(history) == [
        MoveLeader(0x104, 0x100, "demo-0"),
        RemoveMember(0x104, "demo-4"),
        # One pass: the next removal, then the claim of the member removed before.
        RemoveMember(0x103, "demo-3"),
        DeletePVC("data-demo-4", "ns"),
        DeletePVC("data-demo-3", "ns"),
    ]
    first = history[0]
    assert reasons(first)[:2] == ["LeaderMoved", "MemberRemoved"]
    assert (
        events(first)[0].message == "moved leadership from demo-4 to demo-0 before removing demo-4"
    )
    assert_settled(desired, observed, 3)
    assert observed.etcd is not None and observed.etcd.leader == member(0, leader=True)


def test_scale_in_to_one_member() -> None:
    desired, observed = formed(3, leader=1)
    desired, observed, history = converge(resize(desired, 1), observed, start=100)
    assert steps(history) == [
        RemoveMember(0x102, "demo-2"),
        MoveLeader(0x101, 0x100, "demo-0"),
        RemoveMember(0x101, "demo-1"),
        DeletePVC("data-demo-2", "ns"),
        DeletePVC("data-demo-1", "ns"),
    ]
    assert_settled(desired, observed, 1)


def test_scale_in_never_leaves_an_unhealthy_quorum() -> None:
    desired, observed = formed(3)
    observed = dataclasses.replace(
        observed, etcd=view(member(0, healthy=False), member(1, leader=True), member(2))
    )

    actions = plan(resize(desired, 2), observed, SETTINGS, at(100))

    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == []
    assert sts_replicas(actions) is None
    assert condition(actions, "Progressing")["message"] == (
        "removing member demo-2 (3 members, 2 desired): waiting, the remaining voting members "
        "would be 1 healthy of 2, 2 needed"
    )


def test_an_unstarted_learner_is_removed_without_a_quorum_check() -> None:
    desired, observed = formed(3)
    learner = dataclasses.replace(
        member(3, healthy=False), name="", client_urls=(), learner=True, version=None
    )
    assert observed.etcd is not None
    observed = dataclasses.replace(
        observed, etcd=view(member(0, healthy=False), member(1, leader=True), member(2), learner)
    )

    actions = plan(desired, observed, SETTINGS, at(100))

    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == [RemoveMember(0x103, "demo-3")]


# -- crashes between steps -------------------------------------------------------------------


def unstarted_learner(index: int) -> EtcdMember:
    return dataclasses.replace(
        member(index, healthy=False), name="", client_urls=(), learner=True, version=None
    )


def test_crash_between_member_add_and_the_statefulset_write() -> None:
    desired, observed = formed(3)
    desired = resize(desired, 5)
    assert observed.etcd is not None
    observed = dataclasses.replace(
        observed, etcd=view(*observed.etcd.members, unstarted_learner(3))
    )

    actions = plan(desired, observed, SETTINGS, at(100))

    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == []  # never a second add
    assert sts_replicas(actions) == 4
    desired, observed, history = converge(desired, observed, start=100)
    assert [type(a).__name__ for a in steps(history)] == [
        "PromoteMember",
        "AddMember",
        "PromoteMember",
    ]
    assert_settled(desired, observed, 5)


def test_crash_between_remove_member_and_the_statefulset_write() -> None:
    desired, observed = formed(5)
    desired = resize(desired, 4)
    assert observed.etcd is not None
    observed = dataclasses.replace(observed, etcd=view(*observed.etcd.members[:4]))

    actions = plan(desired, observed, SETTINGS, at(100))

    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == []
    assert sts_replicas(actions) == 4  # pod demo-4 is beyond the members: lower replicas
    assert condition(actions, "Progressing")["message"] == "stopping removed member demo-4"
    desired, observed, history = converge(desired, observed, start=100)
    assert steps(history) == [DeletePVC("data-demo-4", "ns")]
    assert_settled(desired, observed, 4)


def test_crash_between_the_statefulset_write_and_the_claim_deletion() -> None:
    desired, observed = formed(5)
    desired = resize(desired, 3)
    assert observed.etcd is not None
    # demo-4 was removed and its pod is gone; its claim is left.
    observed = dataclasses.replace(
        observed,
        etcd=view(*observed.etcd.members[:4]),
        statefulset=rolled_out(4),
        pods=pods(4),
    )

    actions = plan(desired, observed, SETTINGS, at(100))

    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == [
        RemoveMember(0x103, "demo-3"),
        DeletePVC("data-demo-4", "ns"),
    ]
    desired, observed, _ = converge(desired, observed, start=100)
    assert_settled(desired, observed, 3)


def test_a_claim_is_kept_while_its_pod_still_runs() -> None:
    desired, observed = formed(4)
    desired = resize(desired, 3)
    assert observed.etcd is not None
    # Removed and replicas lowered, but the pod is still terminating.
    observed = dataclasses.replace(
        observed, etcd=view(*observed.etcd.members[:3]), statefulset=rolled_out(3)
    )

    actions = plan(desired, observed, SETTINGS, at(100))

    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == []
    assert condition(actions, "Progressing")["message"] == "stopping removed member demo-3"


@pytest.mark.parametrize("target", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("start", [1, 3, 5])
def test_any_size_converges_to_any_other(start: int, target: int) -> None:
    desired, observed = formed(start, leader=start - 1)
    desired, observed, _ = converge(resize(desired, target), observed, start=100)
    assert_settled(desired, observed, target)


# -- a member the scheduler cannot place -----------------------------------------------------

NO_NODE = (
    "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
    "3 node(s) didn't match pod anti-affinity rules. preemption: 0/4 nodes are available: "
    "4 Preemption is not helpful for scheduling."
)


def scaled_beyond_the_nodes(why: str = NO_NODE) -> tuple[EtcdCluster, Observed]:
    """3 -> 5 with 3 suitable nodes: demo-3 was added as a learner and its pod stays Pending."""
    desired, observed = formed(3)
    desired = resize(desired, 5)
    desired, observed = execute(desired, observed, plan(desired, observed, SETTINGS, at(100)))
    observed = dataclasses.replace(
        settle(observed, start_learners=False),
        pods=(*pods(3), PodState("demo-3", ready=False, unschedulable=why)),
    )
    return desired, observed


def test_a_member_that_cannot_be_scheduled_is_degraded_with_the_schedulers_message() -> None:
    desired, observed = scaled_beyond_the_nodes()

    actions = plan(desired, observed, SETTINGS, at(101))

    line = f"pod demo-3 cannot be scheduled: {NO_NODE}"
    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == []  # the same step: waiting
    assert sts_replicas(actions) is None
    degraded = condition(actions, "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "MemberUnschedulable",
        line,
    )
    progressing = condition(actions, "Progressing")
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "True",
        "ScalingOut",
        "waiting for learner demo-3 to start and catch up",
    )
    assert condition(actions, "Available")["status"] == "True"  # 3 healthy voters
    assert status_of(actions)["phase"] == "Degraded"
    assert events(actions) == [Event("Warning", "MemberUnschedulable", line)]

    # Reported once: the next passes say nothing new while the scheduler's answer is the same.
    desired, observed = execute(desired, observed, actions)
    again = plan(desired, observed, SETTINGS, at(131))
    assert events(again) == []
    assert condition(again, "Degraded")["lastTransitionTime"] == degraded["lastTransitionTime"]

    # A new answer (a node was added, still not one that fits) is a new event.
    other = "0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    observed = dataclasses.replace(
        observed, pods=(*pods(3), PodState("demo-3", ready=False, unschedulable=other))
    )
    assert events(plan(desired, observed, SETTINGS, at(161))) == [
        Event("Warning", "MemberUnschedulable", f"pod demo-3 cannot be scheduled: {other}")
    ]


def test_scaling_back_removes_the_unschedulable_learner_and_clears_the_condition() -> None:
    desired, observed = scaled_beyond_the_nodes()
    desired, observed = execute(desired, observed, plan(desired, observed, SETTINGS, at(101)))
    desired = resize(desired, 3, generation=3)

    actions = plan(desired, observed, SETTINGS, at(102))

    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == [RemoveMember(0x103, "demo-3")]
    assert sts_replicas(actions) == 3
    desired, observed, history = converge(desired, observed, start=103)
    assert_settled(desired, observed, 3)
    degraded = condition(history[-1], "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("False", "AllMembersHealthy")
    all_reasons = [r for actions in history for r in reasons(actions)]
    assert "Recovered" in all_reasons
    assert "MemberUnschedulable" not in all_reasons


# -- an engine that cannot change membership -------------------------------------------------


def test_membership_not_supported_is_degraded_and_not_retried_within_a_generation() -> None:
    desired, observed = formed(1)
    desired = resize(desired, 3)
    refused = dataclasses.replace(observed, membership_unsupported="etcdserver: not capable")

    actions = plan(desired, refused, SETTINGS, at(100))

    assert [a for a in actions if isinstance(a, MEMBERSHIP)] == []
    assert sts_replicas(actions) is None  # still one member
    message = (
        'the pyetcd engine cannot change etcd membership yet (etcd answers "not capable"): '
        "1 member(s), spec asks for 3"
    )
    degraded = condition(actions, "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "MembershipNotSupported",
        message,
    )
    progressing = condition(actions, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "MembershipNotSupported")
    assert status_of(actions)["phase"] == "Degraded"
    assert Event("Warning", "Degraded", f"MembershipNotSupported: {message}") in events(actions)

    # The next pass (a timer) does not ask etcd again, and says nothing new.
    desired, observed = execute(desired, observed, actions)
    later = plan(desired, observed, SETTINGS, at(130))
    assert [a for a in later if isinstance(a, MEMBERSHIP)] == []
    assert condition(later, "Degraded")["reason"] == "MembershipNotSupported"
    assert events(later) == []

    # A new generation (e.g. a newer engine version) tries again.
    retry = plan(resize(desired, 3, generation=3), observed, SETTINGS, at(160))
    assert isinstance(retry[0], AddMember)

    # A member pod that cannot be scheduled takes over the Degraded condition; the refusal is
    # still remembered (Progressing says it), so etcd is still not asked again.
    evicted = dataclasses.replace(observed, pods=(PodState("demo-0", False, unschedulable="x"),))
    desired, _ = execute(desired, evicted, plan(desired, evicted, SETTINGS, at(140)))
    unchanged = plan(desired, evicted, SETTINGS, at(150))
    assert condition(unchanged, "Degraded")["reason"] == "MemberUnschedulable"
    assert [a for a in unchanged if isinstance(a, MEMBERSHIP)] == []
    assert condition(unchanged, "Progressing")["reason"] == "MembershipNotSupported"

    # Back to one member: nothing to change, nothing degraded.
    back = plan(resize(desired, 1, generation=4), observed, SETTINGS, at(190))
    assert condition(back, "Degraded")["status"] == "False"
    assert status_of(back)["phase"] == "Running"
