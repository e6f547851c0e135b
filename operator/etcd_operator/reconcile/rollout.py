"""The rollout step: restart the members onto a changed pod template, one at a time. Pure.

The StatefulSet's update strategy is ``OnDelete``: a changed template (version, image, flags,
resources) reaches a member only when this step deletes its pod, and the controller makes it
anew from the new template on the same volume. Each pass restarts at most one member, and only
when all of these hold:

- the controller has seen the template (``observedGeneration``) and named its revision;
- no other operation owns the membership: no quorum-loss recovery, replacement or scaling
  under way, no learner;
- every member pod exists, is not being deleted and is Ready, and etcd lists exactly the
  desired voters, every one healthy, with a leader (one exception: when the only member that
  does not serve runs the template of an unfinished rollout this one replaced, it is restarted
  first: it is down already, likely because of that template, and the new one may fix it);
- every member pod has been Ready for ``spec.rollout.minReadySeconds``, and every member is
  caught up: its raft applied index is within ``CATCH_UP_ENTRIES`` of the leader's commit
  index (the member restarted last has replayed its log and received what it missed, and
  nobody is lagging behind whom a restart would leave without a quorum).

Then the outdated followers go first, highest ordinal first; the leader goes last, after
``MoveLeader`` has handed leadership to the follower with the highest applied index. A lone
member is restarted in place (there is nobody to keep the quorum; an event says so).

State lives in the world: which pods run the update revision (their ``controller-revision-hash``
label) says how far the rollout got, so a pass after an operator restart at any point carries on
from what it observes. ``status.rollout`` only keeps the clock (when the rollout started, when a
member was last restarted): a rollout that restarts nobody for ``spec.rollout
.progressDeadlineSeconds`` is stuck (Progressing False, ``RolloutStuck``, one Warning) and still
restarts nobody until the members are healthy again, when it carries on by itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import parse_rfc3339, rfc3339
from etcd_operator.api.v1alpha1 import EtcdCluster, RolloutStatus
from etcd_operator.components import naming
from etcd_operator.reconcile import replacement, scaling
from etcd_operator.reconcile.actions import Action, DeletePod, Event, MoveLeader
from etcd_operator.reconcile.membership import heir, member_name, ordinal
from etcd_operator.reconcile.observed import EtcdMember, EtcdView, Observed, PodState
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress

# Decided.notes key: this pass's view of the rollout (a ``RolloutStatus``); Decided.acted key:
# the record of a member this pass restarted.
ROLLOUT = "rollout"
ROLLING_UPDATE = "RollingUpdate"
ROLLOUT_STUCK = "RolloutStuck"
# How far (raft entries) a member's applied index may trail the leader's commit index and still
# count as caught up. The statuses are read concurrently, so under writes a healthy follower
# trails by the entries committed in between; a member replaying its log or waiting for a
# snapshot trails by far more.
CATCH_UP_ENTRIES = 1000


@dataclass(frozen=True)
class Verdict:
    """What the rollout does in this pass: restart ``member`` (after moving the leadership to
    ``heir``; ``repair``: the member is down already), or wait (``waiting`` says for what)."""

    outdated: tuple[str, ...]
    member: str | None = None
    heir: EtcdMember | None = None
    leader: EtcdMember | None = None
    waiting: str | None = None
    repair: bool = False


def _ordinals(desired: EtcdCluster, replicas: int) -> list[str]:
    return [naming.member_name(desired.name, i) for i in range(replicas)]


def outdated_members(
    desired: EtcdCluster, pods: tuple[PodState, ...], replicas: int, revision: str
) -> tuple[str, ...]:
    """The member pods (ordinals below ``replicas``) made from another revision, highest
    ordinal first; pods being deleted are not counted (they are on their way)."""
    names = set(_ordinals(desired, replicas))
    found = [
        p.name
        for p in pods
        if p.name in names and not p.terminating and p.revision not in (None, revision)
    ]
    return tuple(sorted(found, key=lambda n: -(ordinal(desired.name, n) or 0)))


def caught_up(member: EtcdMember, leader: EtcdMember) -> bool:
    if member.raft_applied_index is None or leader.raft_index is None:
        return False
    return member.raft_applied_index + CATCH_UP_ENTRIES >= leader.raft_index


def _settling(desired: EtcdCluster, observed: Observed, replicas: int) -> str | None:
    """A member pod Ready for less than ``spec.rollout.minReadySeconds``, if any."""
    needed, now = desired.spec.rollout.minReadySeconds, observed.now
    if not needed or now is None:
        return None
    for name in _ordinals(desired, replicas):
        pod = observed.pod(name)
        since = pod.ready_since if pod is not None else None
        if since is not None and (now - since).total_seconds() < needed:
            return f"member {name} has been Ready for less than {needed}s (minReadySeconds)"
    return None


def _down(desired: EtcdCluster, observed: Observed, etcd: EtcdView, replicas: int) -> list[str]:
    """The members that do not serve now: pod not Ready, or etcd reports them unhealthy."""
    by_name = {member_name(m): m for m in etcd.members}
    down = []
    for name in _ordinals(desired, replicas):
        pod, member = observed.pod(name), by_name.get(name)
        if pod is None or not pod.ready or member is None or not member.healthy:
            down.append(name)
    return down


def _describe_down(name: str, observed: Observed, etcd: EtcdView) -> str:
    member = etcd.by_name(name)
    pod = observed.pod(name)
    if member is not None and not member.healthy:
        return f"member {name} is unhealthy" + (f": {member.error}" if member.error else "")
    if pod is not None and not pod.ready:
        return f"member {name} is not Ready"
    return f"member {name} is not listed by etcd"


def _why_not_ready(
    desired: EtcdCluster, observed: Observed, etcd: EtcdView, down: list[str], replicas: int
) -> str | None:
    """Why no member may be restarted now (``None``: every member is healthy and caught up)."""
    if down:
        return "; ".join(_describe_down(name, observed, etcd) for name in down)
    if etcd.learners:
        return f"learner {member_name(etcd.learners[0])} is catching up"
    names = sorted(member_name(m) for m in etcd.voters)
    if names != sorted(_ordinals(desired, replicas)):
        return f"etcd lists the members {', '.join(names)}, not the {replicas} desired"
    leader = etcd.leader
    if leader is None:
        return "the cluster has no leader"
    for member in sorted(etcd.voters, key=member_name):
        if not caught_up(member, leader):
            return (
                f"member {member_name(member)} is catching up (applied index "
                f"{member.raft_applied_index}, leader's commit index {leader.raft_index})"
            )
    return None


def decide(
    desired: EtcdCluster,
    observed: Observed,
    replicas: int,
    revision: str,
    superseded: str | None = None,
) -> Verdict | None:
    """The next step of the rollout to ``revision`` (``None``: every member runs it);
    ``superseded``: the revision of the unfinished rollout it replaced."""
    outdated = outdated_members(desired, observed.pods, replicas, revision)
    etcd = observed.etcd
    if not outdated:
        return None
    for name in _ordinals(desired, replicas):
        pod = observed.pod(name)
        if pod is None or pod.terminating:
            return Verdict(outdated, waiting=f"member {name} is restarting")
    if etcd is None:
        return Verdict(outdated, waiting="no member answers")
    down = _down(desired, observed, etcd, replicas)
    casualty = observed.pod(down[0]) if len(down) == 1 and replicas > 1 else None
    if casualty is not None and superseded is not None and casualty.revision == superseded:
        # The one member that does not serve runs the template of the rollout this one
        # replaced (it crashed on that change, or cannot be placed with it): restarting it
        # onto the new template takes nobody else down, and is likely the fix. Any other
        # member down pauses the rollout.
        return Verdict(outdated, member=casualty.name, repair=True)
    if (why := _why_not_ready(desired, observed, etcd, down, replicas)) is not None:
        return Verdict(outdated, waiting=why)
    if (why := _settling(desired, observed, replicas)) is not None:
        return Verdict(outdated, waiting=why)
    leader = etcd.leader
    assert leader is not None  # _why_not_ready checked it
    followers = [n for n in outdated if n != member_name(leader)]
    if followers:
        return Verdict(outdated, member=followers[0], leader=leader)
    return Verdict(outdated, member=member_name(leader), heir=heir(etcd, leader), leader=leader)


def record(
    previous: RolloutStatus | None,
    revision: str,
    *,
    updated: int,
    members: int,
    outdated: bool,
    done: bool,
    now: datetime,
) -> RolloutStatus | None:
    """``status.rollout`` for this pass: the previous record while it is the same revision, a
    new one when members are found ``outdated`` under another revision, completed once
    ``done`` (every member runs the revision and serves)."""
    if previous is not None and previous.revision == revision:
        current = previous.model_copy(update={"updatedMembers": updated, "members": members})
        if done and current.completedAt is None:
            current = current.model_copy(update={"completedAt": rfc3339(now)})
        elif outdated and current.completedAt is not None:
            # Outdated again under the same revision (a template rolled back and forth).
            current = current.model_copy(update={"completedAt": None, "startedAt": rfc3339(now)})
        return current
    if not outdated:
        return previous
    unfinished = previous is not None and previous.completedAt is None
    return RolloutStatus(
        revision=revision,
        startedAt=rfc3339(now),
        updatedMembers=updated,
        members=members,
        supersededRevision=previous.revision if previous is not None and unfinished else None,
    )


def _progress(
    desired: EtcdCluster, observed: Observed, replicas: int, revision: str
) -> tuple[int, bool]:
    """How many member pods run ``revision``, and whether every one does and serves."""
    updated, serving = 0, True
    for name in _ordinals(desired, replicas):
        pod = observed.pod(name)
        current = pod is not None and not pod.terminating and pod.revision == revision
        updated += current
        member = observed.etcd.by_name(name) if observed.etcd is not None else None
        if not current or pod is None or not pod.ready or member is None or not member.healthy:
            serving = False
    return updated, serving


def _stuck(current: RolloutStatus, deadline: int, now: datetime) -> bool:
    since = parse_rfc3339(current.lastRestartedAt or current.startedAt)
    return since is not None and (now - since).total_seconds() > deadline


def _blocked_by_others(desired: EtcdCluster, decided: Decided, replicas: int) -> str | None:
    """Another operation owns the membership in this pass."""
    if decided.recovering:
        return "a quorum-loss recovery is under way"
    if replacement.pending(decided) is not None:
        return "a member replacement is under way"
    if scaling.under_way(decided) or replicas != desired.spec.replicas:
        return "the cluster is scaling"
    return None


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    sts = observed.statefulset
    if (
        not decided.has_formed
        or decided.hibernating
        or sts is None
        or sts.update_revision is None
        or sts.observed_generation < sts.generation
    ):
        return StepResult(decided=decided)
    now = observed.now
    if now is None:  # no clock, no rollout: the runtime always sets one
        return StepResult(decided=decided)
    replicas = sts.replicas
    revision = sts.update_revision
    previous = desired.status.rollout if desired.status is not None else None
    superseded = previous.supersededRevision if previous is not None else None
    if previous is not None and previous.revision != revision and previous.completedAt is None:
        superseded = previous.revision
    verdict = decide(desired, observed, replicas, revision, superseded)
    updated, serving = _progress(desired, observed, replicas, revision)
    current = record(
        previous,
        revision,
        updated=updated,
        members=replicas,
        outdated=verdict is not None,
        done=verdict is None and serving,
        now=now,
    )
    if current is None:
        return StepResult(decided=decided)
    decided = dataclasses.replace(decided, notes=(*decided.notes, (ROLLOUT, current)))
    if verdict is None:
        return StepResult(decided=decided)
    waiting = _blocked_by_others(desired, decided, replicas) or verdict.waiting
    progress = f"{updated} of {replicas} members run the new template"
    if waiting is not None:
        deadline = desired.spec.rollout.progressDeadlineSeconds
        if _stuck(current, deadline, now):
            report = Progress(
                ROLLOUT_STUCK,
                f"{progress}; no member restarted for more than {deadline}s, waiting: {waiting}",
                active=False,
            )
        else:
            report = Progress(ROLLING_UPDATE, f"{progress}; waiting: {waiting}")
        return StepResult(decided=with_progress(decided, report))
    assert verdict.member is not None
    actions: list[Action] = []
    if verdict.heir is not None and verdict.leader is not None:
        actions.append(MoveLeader(verdict.leader.id, verdict.heir.id, member_name(verdict.heir)))
    actions.append(DeletePod(verdict.member, desired.namespace))
    actions.append(_event(verdict, current, replicas))
    restarted = current.model_copy(
        update={"lastRestarted": verdict.member, "lastRestartedAt": rfc3339(now)}
    )
    decided = dataclasses.replace(decided, acted=(*decided.acted, (ROLLOUT, restarted)))
    decided = with_progress(
        decided, Progress(ROLLING_UPDATE, f"{progress}; restarting {verdict.member}")
    )
    return StepResult(actions=tuple(actions), decided=decided)


def _event(verdict: Verdict, current: RolloutStatus, replicas: int) -> Event:
    position = f"{current.updatedMembers + 1} of {replicas}"
    if verdict.repair:
        how = "it is down already, on the previous template"
    elif verdict.heir is not None:
        how = f"the leader, last, after moving leadership to {member_name(verdict.heir)}"
    elif verdict.leader is not None and verdict.member == member_name(verdict.leader):
        how = "the only member: the cluster is unavailable until it is back"
    else:
        how = "a follower"
    return Event(
        "Normal",
        "RestartingMember",
        f"restarting member {verdict.member} ({position}) onto revision {current.revision}: {how}",
    )


def rollout_status(decided: Decided) -> RolloutStatus | None:
    """The ``status.rollout`` this pass writes: the record of a member it restarted, else its
    view (``None``: no rollout ever, keep what the status has)."""
    acted = decided.acted_on(ROLLOUT)
    if isinstance(acted, RolloutStatus):
        seen = decided.last_note(ROLLOUT)
        if isinstance(seen, RolloutStatus) and seen.revision == acted.revision:
            # The look after the restart counts the members again; the restart is the pass's.
            return seen.model_copy(
                update={
                    "lastRestarted": acted.lastRestarted,
                    "lastRestartedAt": acted.lastRestartedAt,
                }
            )
        return acted
    seen = decided.last_note(ROLLOUT)
    return seen if isinstance(seen, RolloutStatus) else None
