"""The health-gated rollout, as tables and as a converging world: the order (followers first,
the leader last after a leadership transfer), one member at a time, the gates (health, catch-up,
other operations), the stuck deadline, a restart of the operator at any point, and the status it
keeps."""

from __future__ import annotations

import dataclasses
import json

from etcd_operator.api.v1alpha1 import EtcdCluster, EtcdClusterStatus, RolloutStatus
from etcd_operator.api.versions import skew
from etcd_operator.reconcile.actions import Apply, DeletePod
from etcd_operator.reconcile.children import VERSION_SKEW
from etcd_operator.reconcile.observed import EtcdMember, Observed, PodState
from etcd_operator.reconcile.plan import Action, AddMember, MoveLeader, PatchStatus, plan
from etcd_operator.reconcile.rollout import CATCH_UP_ENTRIES, ROLLOUT_STUCK, decide

from tests.unit.operator.reconcile.builders import (
    NAME,
    SETTINGS,
    at,
    condition,
    events,
    execute,
    formed,
    member,
    reasons,
    status_of,
    view,
)

OLD, NEW = "demo-r1", "demo-r2"
INDEX = 5000


def plan_at(desired: EtcdCluster, observed: Observed, seconds: int) -> list[Action]:
    """A pass whose look at the world was taken at ``seconds``."""
    return plan(desired, dataclasses.replace(observed, now=at(seconds)), SETTINGS, at(seconds))


def deletes(actions: list[Action]) -> list[str]:
    return [a.name for a in actions if isinstance(a, DeletePod)]


def moves(actions: list[Action]) -> list[MoveLeader]:
    return [a for a in actions if isinstance(a, MoveLeader)]


def changed(replicas: int = 3, leader: int = 0, **spec: object) -> tuple[EtcdCluster, Observed]:
    """A formed cluster whose template just changed: the controller named revision ``NEW``,
    every pod still runs ``OLD``, every member is healthy and caught up."""
    desired, observed = formed(replicas, leader, **spec)
    assert observed.statefulset is not None
    members = tuple(
        dataclasses.replace(m, raft_index=INDEX, raft_applied_index=INDEX)
        for m in observed.etcd.members  # type: ignore[union-attr]
    )
    return desired, dataclasses.replace(
        observed,
        now=at(100),
        pods=tuple(dataclasses.replace(p, revision=OLD) for p in observed.pods),
        statefulset=dataclasses.replace(
            observed.statefulset, update_revision=NEW, updated_replicas=0
        ),
        etcd=view(*members),
    )


def restarted(observed: Observed, name: str, *, ready: bool = True) -> Observed:
    """The controller made the deleted pod anew from ``NEW``; ``ready``: it started, rejoined
    and caught up (else it is still starting: not Ready, etcd finds it unhealthy)."""
    pod = PodState(name, ready=ready, phase="Running", node="node-x", revision=NEW)
    pods = tuple(sorted((*observed.pods, pod), key=lambda p: p.name))
    assert observed.etcd is not None
    members = tuple(
        dataclasses.replace(
            m,
            healthy=ready,
            error=None if ready else "connection refused",
            raft_applied_index=INDEX if ready else None,
        )
        if m.name == name
        else m
        for m in observed.etcd.members
    )
    assert observed.statefulset is not None
    sts = dataclasses.replace(
        observed.statefulset, updated_replicas=sum(p.revision == NEW for p in pods)
    )
    return dataclasses.replace(observed, pods=pods, etcd=view(*members), statefulset=sts)


def run_rollout(
    desired: EtcdCluster, observed: Observed, *, passes: int = 20
) -> tuple[EtcdCluster, Observed, list[str], list[list[Action]]]:
    """Plan and execute passes; between them, a deleted pod comes back on ``NEW`` not yet
    ready, then ready at the next pass. Asserts after every pass that at most one member is
    down. Returns the members restarted, in order."""
    order: list[str] = []
    history: list[list[Action]] = []
    coming: str | None = None
    for step in range(passes):
        actions = plan_at(desired, observed, 100 + step)
        history.append(actions)
        desired, observed = execute(desired, observed, actions)
        if coming is not None:
            observed = restarted(
                dataclasses.replace(
                    observed, pods=tuple(p for p in observed.pods if p.name != coming)
                ),
                coming,
            )
            coming = None
        gone = deletes(actions)
        assert len(gone) <= 1, actions
        if gone:
            order.append(gone[0])
            observed = restarted(observed, gone[0], ready=False)
            coming = gone[0]
        down = [p.name for p in observed.pods if not p.ready]
        assert len(down) <= 1, f"two members down after pass {step}: {down}"
        if not gone and coming is None and all(p.revision == NEW for p in observed.pods):
            final = plan_at(desired, observed, 200)
            history.append(final)
            desired, observed = execute(desired, observed, final)
            return desired, observed, order, history
    raise AssertionError(f"the rollout did not finish in {passes} passes: {history[-1]}")


def test_followers_first_then_the_leader_after_moving_leadership() -> None:
    desired, observed = changed(leader=0)
    desired, observed, order, history = run_rollout(desired, observed)
    assert order == [f"{NAME}-2", f"{NAME}-1", f"{NAME}-0"]
    transfers = [m for actions in history for m in moves(actions)]
    assert len(transfers) == 1
    assert transfers[0].from_id == member(0).id
    # The leadership moved in the same pass as, and before, the old leader's deletion.
    last = next(a for a in history if f"{NAME}-0" in deletes(a))
    assert last.index(transfers[0]) < last.index(next(a for a in last if isinstance(a, DeletePod)))
    status = desired.status
    assert status is not None and status.rollout is not None
    assert status.rollout.revision == NEW
    assert status.rollout.updatedMembers == 3
    assert status.rollout.completedAt is not None
    assert status.rollout.lastRestarted == f"{NAME}-0"
    assert "RolloutComplete" in reasons(history[-1])
    assert condition(history[-1], "Progressing")["reason"] == "Reconciled"


def test_the_leader_elsewhere_still_goes_last() -> None:
    desired, observed = changed(leader=2)
    _, _, order, history = run_rollout(desired, observed)
    assert order == [f"{NAME}-1", f"{NAME}-0", f"{NAME}-2"]
    transfers = [m for actions in history for m in moves(actions)]
    assert [t.from_id for t in transfers] == [member(2).id]


def test_each_restart_posts_an_event_and_the_status_says_how_far() -> None:
    desired, observed = changed()
    actions = plan_at(desired, observed, 100)
    assert deletes(actions) == [f"{NAME}-2"]
    [restart] = [e for e in events(actions) if e.reason == "RestartingMember"]
    assert "1 of 3" in restart.message and "follower" in restart.message
    progressing = condition(actions, "Progressing")
    assert progressing["status"] == "True" and progressing["reason"] == "RollingUpdate"
    rollout = status_of(actions)["rollout"]
    assert rollout["lastRestarted"] == f"{NAME}-2"
    assert rollout["startedAt"] == rollout["lastRestartedAt"]


def test_an_unhealthy_member_before_the_start_holds_the_rollout_then_it_is_stuck() -> None:
    desired, observed = changed()
    assert observed.etcd is not None
    sick = tuple(
        dataclasses.replace(m, healthy=False, error="context deadline exceeded")
        if m.name == f"{NAME}-1"
        else m
        for m in observed.etcd.members
    )
    # Member 1 runs the new revision already (a pod restarted by hand): not ours to restart.
    pods = tuple(
        dataclasses.replace(p, revision=NEW) if p.name == f"{NAME}-1" else p for p in observed.pods
    )
    observed = dataclasses.replace(observed, etcd=view(*sick), pods=pods)
    actions = plan_at(desired, observed, 100)
    assert deletes(actions) == []
    progressing = condition(actions, "Progressing")
    assert progressing["status"] == "True"
    assert f"{NAME}-1 is unhealthy" in progressing["message"]
    desired, observed = execute(desired, observed, actions)
    deadline = desired.spec.rollout.progressDeadlineSeconds
    late = plan_at(desired, observed, 100 + deadline + 1)
    assert deletes(late) == []
    progressing = condition(late, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", ROLLOUT_STUCK)
    assert ROLLOUT_STUCK in reasons(late)
    desired, observed = execute(desired, observed, late)
    again = plan_at(desired, observed, 100 + deadline + 30)
    assert ROLLOUT_STUCK not in reasons(again), "one Warning per stall"
    # Healthy again: the rollout goes on by itself.
    healed = dataclasses.replace(
        observed, etcd=view(*(dataclasses.replace(m, healthy=True, error=None) for m in sick))
    )
    resumed = plan_at(desired, healed, 100 + deadline + 60)
    assert deletes(resumed) == [f"{NAME}-2"]


def test_a_member_made_unhealthy_mid_rollout_pauses_it() -> None:
    desired, observed = changed()
    actions = plan_at(desired, observed, 100)
    desired, observed = execute(desired, observed, actions)
    observed = restarted(observed, f"{NAME}-2")  # back, healthy
    assert observed.etcd is not None
    members = tuple(
        dataclasses.replace(m, healthy=False) if m.name == f"{NAME}-0" else m
        for m in observed.etcd.members
    )
    paused = dataclasses.replace(observed, etcd=view(*members))
    for seconds in (110, 120, 900):
        actions = plan_at(desired, paused, seconds)
        assert deletes(actions) == [] and moves(actions) == []
    assert condition(actions, "Progressing")["reason"] == ROLLOUT_STUCK


def test_a_restarted_member_that_has_not_caught_up_holds_the_next_step() -> None:
    desired, observed = changed()
    actions = plan_at(desired, observed, 100)
    desired, observed = execute(desired, observed, actions)
    observed = restarted(observed, f"{NAME}-2")
    assert observed.etcd is not None
    behind = tuple(
        dataclasses.replace(m, raft_applied_index=INDEX - CATCH_UP_ENTRIES - 1)
        if m.name == f"{NAME}-2"
        else m
        for m in observed.etcd.members
    )
    lagging = dataclasses.replace(observed, etcd=view(*behind))
    actions = plan_at(desired, lagging, 110)
    assert deletes(actions) == []
    assert f"{NAME}-2 is catching up" in condition(actions, "Progressing")["message"]
    assert deletes(plan_at(desired, observed, 111)) == [f"{NAME}-1"]


def test_an_operator_restart_between_the_deletion_and_the_status_waits_for_the_member() -> None:
    """The pod was deleted but the status never recorded it: the next pass sees a member
    missing or starting and restarts nobody else."""
    desired, observed = changed()
    without = dataclasses.replace(
        observed, pods=tuple(p for p in observed.pods if p.name != f"{NAME}-2")
    )
    assert deletes(plan_at(desired, without, 100)) == []
    starting = restarted(without, f"{NAME}-2", ready=False)
    assert deletes(plan_at(desired, starting, 101)) == []
    terminating = dataclasses.replace(
        observed,
        pods=tuple(
            dataclasses.replace(p, terminating=True) if p.name == f"{NAME}-2" else p
            for p in observed.pods
        ),
    )
    assert deletes(plan_at(desired, terminating, 102)) == []


def test_an_operator_restart_after_the_leadership_moved_restarts_the_old_leader() -> None:
    desired, observed = changed(leader=0)
    pods = tuple(
        dataclasses.replace(p, revision=NEW) if p.name != f"{NAME}-0" else p for p in observed.pods
    )
    assert observed.etcd is not None
    moved = tuple(
        dataclasses.replace(m, leader=m.name == f"{NAME}-1") for m in observed.etcd.members
    )
    observed = dataclasses.replace(observed, pods=pods, etcd=view(*moved))
    actions = plan_at(desired, observed, 100)
    assert deletes(actions) == [f"{NAME}-0"]
    assert moves(actions) == [], "a follower now: no second transfer"


def test_the_member_a_replaced_rollout_left_down_is_restarted_first() -> None:
    """A rollout to MID restarted member 0, which crash-loops on MID; the user fixed the spec
    (NEW): member 0 is restarted first, onto NEW. It is down already, so this takes nobody else
    down, and waiting for it to be healthy would wait forever."""
    desired, observed = changed()
    assert observed.etcd is not None and desired.status is not None
    mid = "demo-mid"
    pods = tuple(
        dataclasses.replace(p, ready=False, revision=mid) if p.name == f"{NAME}-0" else p
        for p in observed.pods
    )
    members = tuple(
        dataclasses.replace(m, healthy=False, leader=False)
        if m.name == f"{NAME}-0"
        else dataclasses.replace(m, leader=m.name == f"{NAME}-1")
        for m in observed.etcd.members
    )
    unfinished = RolloutStatus(
        revision=mid, startedAt="2025-01-02T03:04:05Z", updatedMembers=1, members=3,
        lastRestarted=f"{NAME}-0", lastRestartedAt="2025-01-02T03:04:05Z",
    )  # fmt: skip
    desired = desired.model_copy(
        update={"status": desired.status.model_copy(update={"rollout": unfinished})}
    )
    broken = dataclasses.replace(observed, pods=pods, etcd=view(*members))
    actions = plan_at(desired, broken, 100)
    assert deletes(actions) == [f"{NAME}-0"]
    assert moves(actions) == []
    [restart] = [e for e in events(actions) if e.reason == "RestartingMember"]
    assert "down already" in restart.message
    assert status_of(actions)["rollout"]["supersededRevision"] == mid
    # The same member down on the template of a rollout that completed: the rollout pauses.
    done = unfinished.model_copy(update={"completedAt": "2025-01-02T03:05:05Z"})
    assert desired.status is not None
    settled = desired.model_copy(
        update={"status": desired.status.model_copy(update={"rollout": done})}
    )
    assert deletes(plan_at(settled, broken, 100)) == []
    # Two members down: nothing is touched.
    two = dataclasses.replace(
        broken,
        pods=tuple(dataclasses.replace(p, ready=p.name == f"{NAME}-1") for p in broken.pods),
    )
    assert deletes(plan_at(desired, two, 101)) == []


def test_a_lone_member_is_restarted_in_place() -> None:
    desired, observed = changed(replicas=1)
    actions = plan_at(desired, observed, 100)
    assert deletes(actions) == [f"{NAME}-0"]
    assert moves(actions) == []
    [restart] = [e for e in events(actions) if e.reason == "RestartingMember"]
    assert "only member" in restart.message


def test_other_operations_own_the_membership_first() -> None:
    desired, observed = changed()
    assert observed.etcd is not None
    learner = EtcdMember(
        id=0x999, name=f"{NAME}-3", peer_urls=("http://x:2380",), client_urls=("http://x:2379",),
        learner=True, healthy=True, raft_index=INDEX, raft_applied_index=INDEX,
    )  # fmt: skip
    with_learner = dataclasses.replace(observed, etcd=view(*observed.etcd.members, learner))
    actions = plan_at(desired, with_learner, 100)
    assert deletes(actions) == []
    # Scaling out: the scaling step adds a member; the rollout waits.
    bigger = desired.model_copy(update={"spec": desired.spec.model_copy(update={"replicas": 5})})
    actions = plan(bigger, observed, SETTINGS, at(100))
    assert any(isinstance(a, AddMember) for a in actions)
    assert deletes(actions) == []


def test_nothing_before_the_controller_names_the_revision() -> None:
    desired, observed = changed()
    assert observed.statefulset is not None
    unseen = dataclasses.replace(
        observed,
        statefulset=dataclasses.replace(observed.statefulset, generation=2, observed_generation=1),
    )
    assert deletes(plan_at(desired, unseen, 100)) == []


def test_no_etcd_answer_restarts_nobody() -> None:
    desired, observed = changed()
    verdict = decide(desired, dataclasses.replace(observed, etcd=None), 3, NEW)
    assert verdict is not None and verdict.member is None
    assert verdict.waiting == "no member answers"


def test_a_new_cluster_is_no_rollout() -> None:
    desired, observed = formed()
    assert observed.statefulset is not None
    fresh = dataclasses.replace(
        observed,
        pods=tuple(dataclasses.replace(p, revision=NEW) for p in observed.pods),
        statefulset=dataclasses.replace(observed.statefulset, update_revision=NEW),
    )
    actions = plan_at(desired, fresh, 100)
    assert deletes(actions) == []
    assert status_of(actions).get("rollout") is None


def test_the_rollout_record_survives_passes_that_do_not_know_it() -> None:
    desired, observed = changed()
    first = plan_at(desired, observed, 100)
    desired, observed = execute(desired, observed, first)
    started = status_of(first)["rollout"]["startedAt"]
    observed = restarted(observed, f"{NAME}-2", ready=False)
    later = plan_at(desired, observed, 130)
    rollout = status_of(later)["rollout"]
    assert rollout["startedAt"] == started
    assert rollout["lastRestarted"] == f"{NAME}-2"
    status = EtcdClusterStatus.model_validate(status_of(later))
    assert status.rollout is not None and status.rollout.updatedMembers == 1
    assert isinstance(later[-1], PatchStatus)


def test_a_second_minor_upgrade_waits_for_the_first_to_finish() -> None:
    """3.4 -> 3.5 asked, then 3.5 -> 3.6 before any member ran 3.5: the template is held (no
    member would skip a minor), Progressing says why; once the members run 3.5 it rolls."""
    desired, observed = formed(version="3.5.17")
    assert observed.etcd is not None
    old = tuple(dataclasses.replace(m, version="3.4.23") for m in observed.etcd.members)
    on_34 = dataclasses.replace(observed, etcd=view(*old), now=at(100))
    ahead = desired.model_copy(
        update={"spec": desired.spec.model_copy(update={"version": "3.6.0"})}
    )
    actions = plan(ahead, on_34, SETTINGS, at(100))
    applied = [a for a in actions if isinstance(a, Apply) and a.manifest["kind"] == "StatefulSet"]
    assert all("3.6.0" not in json.dumps(a.manifest) for a in applied)
    progressing = condition(actions, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", VERSION_SKEW)
    assert "3.4.23" in progressing["message"]
    on_35 = dataclasses.replace(observed, now=at(100))
    actions = plan(ahead, on_35, SETTINGS, at(100))
    [sts] = [a for a in actions if isinstance(a, Apply) and a.manifest["kind"] == "StatefulSet"]
    assert "3.6.0" in json.dumps(sts.manifest)


def test_version_skew_table() -> None:
    assert skew("3.5.0", ["3.4.23", "3.4.23"]) is None
    assert skew("3.5.1", ["3.4.23", "3.5.0"]) is None
    assert skew("3.6.0", ["3.5.17", "3.6.0"]) is None
    message = skew("3.6.0", ["3.4.23", "3.5.17"])
    assert message is not None and "3.4.23" in message and "3.5" in message
    assert skew("4.0.0", ["3.5.17"]) == "members still run 3.5.17: no upgrade path to 4.0.0"


def test_the_next_member_waits_until_every_pod_has_been_ready_for_min_ready_seconds() -> None:
    desired, observed = changed(rollout={"minReadySeconds": 30})
    actions = plan_at(desired, observed, 100)
    desired, observed = execute(desired, observed, actions)
    back = restarted(observed, f"{NAME}-2")
    pods = tuple(
        dataclasses.replace(p, ready_since=at(110)) if p.name == f"{NAME}-2" else p
        for p in back.pods
    )
    back = dataclasses.replace(back, pods=pods)
    early = plan_at(desired, back, 120)
    assert deletes(early) == []
    assert "minReadySeconds" in condition(early, "Progressing")["message"]
    assert deletes(plan_at(desired, back, 141)) == [f"{NAME}-1"]
