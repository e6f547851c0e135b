"""Replacing members whose data is lost, as tables and as converging worlds: the evidence, the
order of the steps, every crash point between them, and the guardrails."""

from __future__ import annotations

import dataclasses

import pytest
from etcd_operator.api.v1alpha1 import EtcdCluster, EtcdClusterStatus, MemberReplacement
from etcd_operator.reconcile.actions import DeletePod
from etcd_operator.reconcile.observed import Observed, PodState
from etcd_operator.reconcile.plan import (
    Action,
    AddMember,
    DeletePVC,
    MoveLeader,
    PromoteMember,
    RemoveMember,
    plan,
)
from etcd_operator.reconcile.replacement import lost_data_evidence

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
    settle,
    status_of,
    view,
)

CHANGES = (AddMember, PromoteMember, MoveLeader, RemoveMember, DeletePVC, DeletePod)
PEER_1 = f"http://{NAME}-1.{NAME}-peer.ns.svc.cluster.local:2380"
PYETCD_REFUSAL = (
    "2026-12-06 12:56:50,484 ERROR pyetcd.server.storage: member 101 (name 'demo-1', ...) is "
    "listed as started by cluster cafe, but its data dir /var/lib/etcd holds no WAL: its data "
    "was lost.\npyetcd: member 101 has already been bootstrapped"
)
ETCD_PANIC = (
    "raft2026/12/06 12:54:05 INFO: 101 became follower at term 2\n"
    "panic: tocommit(38) is out of range [lastIndex(0)]. Was the raft log corrupted, truncated, "
    "or lost?\n\ngoroutine 125 [running]:\nlog.(*Logger).Panicf(0xc000114280?)"
)


def lost(observed: Observed, index: int, message: str = PYETCD_REFUSAL) -> Observed:
    """Member ``index`` crash-loops on lost data: etcd finds it unhealthy, its pod's last exit
    says why."""
    assert observed.etcd is not None
    members = tuple(
        member(i, healthy=False, leader=False) if i == index else m
        for i, m in enumerate(observed.etcd.members)
    )
    pod_list = tuple(
        dataclasses.replace(p, ready=False, exit_message=message)
        if p.name == f"{NAME}-{index}"
        else p
        for p in observed.pods
    )
    return dataclasses.replace(observed, etcd=view(*members), pods=pod_list)


def changes(actions: list[Action]) -> list[Action]:
    return [a for a in actions if isinstance(a, CHANGES)]


def all_changes(history: list[list[Action]]) -> list[Action]:
    return [a for actions in history for a in changes(actions)]


def assert_replaced(desired: EtcdCluster, observed: Observed, replicas: int = 3) -> None:
    assert observed.etcd is not None
    assert sorted(m.name for m in observed.etcd.members) == [f"{NAME}-{i}" for i in range(replicas)]
    assert not observed.etcd.learners
    assert all(m.healthy for m in observed.etcd.members)
    last = plan(desired, observed, SETTINGS, at(1000))
    assert changes(last) == []
    assert status_of(last)["phase"] == "Running"


REBUILD_1 = [
    DeletePVC("data-demo-1", "ns"),
    DeletePod("demo-1", "ns"),
    AddMember("demo-1", PEER_1),
]


# -- the evidence ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "found"),
    [
        (PYETCD_REFUSAL, "pyetcd: member 101 has already been bootstrapped"),
        (
            ETCD_PANIC,
            "panic: tocommit(38) is out of range [lastIndex(0)]. Was the raft log corrupted, "
            "truncated, or lost?",
        ),
        (
            "etcdmain: member 8e9e05c52164694d has already been bootstrapped",
            "etcdmain: member 8e9e05c52164694d has already been bootstrapped",
        ),
        ("pyetcd: cannot listen on http://0.0.0.0:2379: address in use", None),
        ("exit code 137", None),
    ],
)
def test_lost_data_is_what_the_member_says_when_it_stops(message: str, found: str | None) -> None:
    pod = PodState("demo-1", ready=False, exit_message=message)
    assert lost_data_evidence(pod) == found


def test_a_pod_being_deleted_or_without_an_error_is_no_evidence() -> None:
    assert lost_data_evidence(None) is None
    assert lost_data_evidence(PodState("demo-1", ready=True)) is None
    gone = PodState("demo-1", ready=False, exit_message=PYETCD_REFUSAL, terminating=True)
    assert lost_data_evidence(gone) is None


# -- the replacement -------------------------------------------------------------------------


@pytest.mark.parametrize("message", [PYETCD_REFUSAL, ETCD_PANIC])
def test_a_member_that_lost_its_data_is_removed_and_added_back_on_a_new_volume(
    message: str,
) -> None:
    desired, observed = formed()
    observed = lost(observed, 1, message)

    actions = plan(desired, observed, SETTINGS, at(100))

    # etcd first (the old ID goes), then the claim and pod (their data must never start
    # again), then the member comes back as a learner.
    assert changes(actions) == [RemoveMember(0x101, "demo-1"), *REBUILD_1]
    assert reasons(actions)[:2] == ["MemberDataLost", "MemberReplaced"]
    assert "lost its data" in events(actions)[0].message
    status = status_of(actions)
    assert status["membersReplaced"] == 1
    record = status["lastReplacement"]
    assert (record["member"], record["oldID"], record["approval"]) == ("demo-1", "101", None)
    assert "Was the raft log" in record["reason"] or "bootstrapped" in record["reason"]
    assert condition(actions, "Progressing")["reason"] == "ReplacingMember"


def test_the_replacement_converges_to_the_desired_voters() -> None:
    desired, observed = formed()
    observed = lost(observed, 1)

    desired, observed, history = converge(desired, observed, start=100)

    assert all_changes(history) == [
        RemoveMember(0x101, "demo-1"),
        *REBUILD_1,
        PromoteMember(0x101, "demo-1"),
    ]
    assert_replaced(desired, observed)
    assert desired.status is not None and desired.status.membersReplaced == 1


@pytest.mark.parametrize("done", [1, 2, 3], ids=["after-remove", "after-pvc", "after-pod"])
def test_a_pass_that_stopped_between_the_steps_is_finished_without_duplicates(
    done: int,
) -> None:
    desired, observed = formed()
    observed = lost(observed, 1)
    actions = changes(plan(desired, observed, SETTINGS, at(100)))
    # The executor ran the first ``done`` changes, then the operator died: no events, no status.
    desired, observed = execute(desired, observed, actions[:done])

    resumed = plan(desired, observed, SETTINGS, at(101))

    # The gap is closed by the rest: the claim and pod again (the claim may be the old one),
    # then the member; never a second removal.
    assert changes(resumed) == REBUILD_1
    desired, observed, history = converge(desired, observed, start=101)
    assert [type(a).__name__ for a in all_changes(history)].count("AddMember") == 1
    assert_replaced(desired, observed)
    assert desired.status is not None and desired.status.membersReplaced == 1


def test_a_pass_that_stopped_after_the_add_leaves_the_learner_to_be_promoted() -> None:
    desired, observed = formed()
    observed = lost(observed, 1)
    actions = changes(plan(desired, observed, SETTINGS, at(100)))
    desired, observed = execute(desired, observed, actions)
    # The StatefulSet made the pod anew: nothing of the old run is left to act on.
    observed = dataclasses.replace(observed, pods=pods(3, ready=True))

    resumed = plan(desired, observed, SETTINGS, at(101))

    assert changes(resumed) == []
    assert condition(resumed, "Progressing")["message"].startswith("waiting for learner demo-1")
    desired, observed, history = converge(desired, settle(observed), start=101)
    assert all_changes(history) == [PromoteMember(0x101, "demo-1")]
    assert_replaced(desired, observed)


# -- guardrails ------------------------------------------------------------------------------


def test_a_member_merely_down_is_left_to_restart() -> None:
    desired, observed = formed()
    observed = lost(observed, 1, "pyetcd: cannot listen on http://0.0.0.0:2380: address in use")

    actions = plan(desired, observed, SETTINGS, at(100))

    assert changes(actions) == []
    assert condition(actions, "Degraded")["reason"] == "MemberUnhealthy"


def test_never_when_the_others_are_not_a_healthy_quorum() -> None:
    desired, observed = formed()
    observed = lost(lost(observed, 1), 2)

    actions = plan(desired, observed, SETTINGS, at(100))

    assert changes(actions) == []
    degraded = condition(actions, "Degraded")
    assert degraded["reason"] == "MemberDataLost"
    assert "1 of the 2 other voting members healthy, 2 needed" in degraded["message"]


def test_five_members_replace_two_lost_ones_one_at_a_time() -> None:
    desired, observed = formed(5)
    observed = lost(lost(observed, 1), 3)

    actions = plan(desired, observed, SETTINGS, at(100))

    assert [type(a).__name__ for a in changes(actions)] == [
        "RemoveMember",
        "DeletePVC",
        "DeletePod",
        "AddMember",
    ]
    assert isinstance(changes(actions)[0], RemoveMember)
    desired, observed = execute(desired, observed, actions)
    # demo-3 still crash-loops; a learner (demo-1) is on its way: wait.
    waiting = plan(desired, observed, SETTINGS, at(101))
    assert [a for a in changes(waiting) if not isinstance(a, PromoteMember)] == []
    degraded = condition(waiting, "Degraded")
    assert degraded["reason"] == "MemberDataLost"
    assert "member demo-3" in degraded["message"]
    assert "a learner is being added" in degraded["message"]
    assert condition(waiting, "Progressing")["reason"] == "ScalingOut"


def test_manual_policy_reports_and_waits_for_the_annotation() -> None:
    desired, observed = formed(replacement={"policy": "Manual"})
    observed = lost(observed, 1)

    actions = plan(desired, observed, SETTINGS, at(100))

    assert changes(actions) == []
    degraded = condition(actions, "Degraded")
    assert degraded["reason"] == "MemberDataLost"
    assert "etcd.pyetcd.io/replace-member=demo-1" in degraded["message"]

    approved = desired.model_copy(
        update={
            "metadata": {
                **desired.metadata,
                "annotations": {"etcd.pyetcd.io/replace-member": "demo-1"},
            }
        }
    )
    actions = plan(approved, observed, SETTINGS, at(101))
    assert changes(actions) == [RemoveMember(0x101, "demo-1"), *REBUILD_1]
    assert status_of(actions)["lastReplacement"]["approval"] == "demo-1"


def test_an_approval_is_used_once() -> None:
    desired, observed = formed(replacement={"policy": "Manual"})
    observed = lost(observed, 1)
    used = MemberReplacement(
        member="demo-1", oldID="99", reason="...", time="2025-01-01T00:00:00Z", approval="demo-1"
    )
    status = (desired.status or EtcdClusterStatus()).model_copy(update={"lastReplacement": used})
    desired = desired.model_copy(
        update={
            "status": status,
            "metadata": {
                **desired.metadata,
                "annotations": {"etcd.pyetcd.io/replace-member": "demo-1"},
            },
        }
    )

    assert changes(plan(desired, observed, SETTINGS, at(100))) == []
    again = desired.model_copy(
        update={
            "metadata": {
                **desired.metadata,
                "annotations": {"etcd.pyetcd.io/replace-member": "demo-1:2"},
            }
        }
    )
    assert changes(plan(again, observed, SETTINGS, at(101)))[0] == RemoveMember(0x101, "demo-1")


def test_a_member_removed_by_hand_below_the_top_is_added_back() -> None:
    desired, observed = formed()
    assert observed.etcd is not None
    observed = dataclasses.replace(
        observed, etcd=view(*(m for m in observed.etcd.members if m.name != "demo-1"))
    )

    actions = plan(desired, observed, SETTINGS, at(100))

    assert changes(actions) == REBUILD_1
    assert reasons(actions)[0] == "MemberReplaced"
    desired, observed, _ = converge(desired, observed, start=100)
    assert_replaced(desired, observed)


def test_no_leader_no_replacement() -> None:
    desired, observed = formed()
    observed = lost(observed, 1)
    assert observed.etcd is not None
    observed = dataclasses.replace(
        observed,
        etcd=view(*(dataclasses.replace(m, leader=False) for m in observed.etcd.members)),
    )

    actions = plan(desired, observed, SETTINGS, at(100))

    assert changes(actions) == []
    assert "waiting for a leader" in condition(actions, "Degraded")["message"]


# -- a node gone with the member's local volume ----------------------------------------------


def on_dead_node(observed: Observed, index: int, since: int, *, local: bool = True) -> Observed:
    """Member ``index``'s node stopped ``since`` seconds after T0: the member is unhealthy, its
    pod not Ready; its volume is pinned to the node (``local``) or not."""
    assert observed.etcd is not None
    members = tuple(
        member(i, healthy=False) if i == index else m for i, m in enumerate(observed.etcd.members)
    )
    pod_list = tuple(
        dataclasses.replace(
            p, ready=False, node_lost_since=at(since), volume_node=p.node if local else None
        )
        if p.name == f"{NAME}-{index}"
        else p
        for p in observed.pods
    )
    return dataclasses.replace(observed, etcd=view(*members), pods=pod_list)


def test_a_member_whose_node_is_gone_with_its_local_volume_is_replaced_after_the_grace() -> None:
    desired, observed = formed(replacement={"nodeLostAfterSeconds": 120})
    observed = on_dead_node(observed, 2, since=100)

    early = plan(desired, dataclasses.replace(observed, now=at(219)), SETTINGS, at(219))
    assert changes(early) == []
    assert condition(early, "Degraded")["reason"] == "MemberUnhealthy"

    late = plan(desired, dataclasses.replace(observed, now=at(220)), SETTINGS, at(220))
    peer = f"http://{NAME}-2.{NAME}-peer.ns.svc.cluster.local:2380"
    assert changes(late) == [
        RemoveMember(0x102, "demo-2"),
        DeletePVC("data-demo-2", "ns"),
        DeletePod("demo-2", "ns", force=True),  # no kubelet will confirm it
        AddMember("demo-2", peer),
    ]
    reason = status_of(late)["lastReplacement"]["reason"]
    assert reason == "node node-2 not Ready for 120s, and the member's volume is local to it"


def test_a_member_whose_node_is_gone_with_a_network_volume_is_not_replaced() -> None:
    desired, observed = formed()
    observed = on_dead_node(observed, 2, since=0, local=False)

    actions = plan(desired, dataclasses.replace(observed, now=at(3600)), SETTINGS, at(3600))

    assert changes(actions) == []
