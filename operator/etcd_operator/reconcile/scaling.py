"""Replica changes of a formed cluster, one member at a time, with etcd's membership as the truth.

Pure: ``decide(desired, observed, blocked=...)`` looks at the etcd member list, the StatefulSet's
replicas, the member pods and the existing volume claims, and returns the next step. Nothing is
remembered between passes, so a pass that crashed between two steps resumes from what it sees.

The rules, in the order ``decide`` applies them (ordinals are the pods' ``<cluster>-<n>``):

* The StatefulSet (and the bootstrap ConfigMap's ``initial-cluster``, and the PDB) always follow
  the members etcd lists, never ``spec.replicas`` directly: a member in etcd without a pod means
  "raise replicas" (its pod starts with ``existing`` and the full peer list), a pod beyond the
  members means "lower replicas" (it was removed from etcd).
* A learner is promoted once it has started and is healthy; etcd itself refuses while it lags
  (the executor takes that refusal as "not yet"). No other member is added meanwhile.
* Scale out (spec > members, no learner, every member healthy, a leader, no left-over volume or
  pod at the next ordinal): ``AddMember`` of the next ordinal as a learner, and in the same pass
  replicas = members + 1. The executor stops at the first failure, so the StatefulSet only grows
  once etcd lists the new member.
* Scale in (spec < members): the highest ordinal goes first. A learner is removed at once; a
  voter only if the remaining voters are a healthy quorum; the leader hands over leadership to a
  healthy voter first (``MoveLeader``). Then replicas = members - 1 in the same pass.
* A removed member's volume claim ``data-<cluster>-<n>`` is deleted once its pod is gone and the
  StatefulSet no longer covers ordinal ``n``, so a later scale-out never starts on the data dir
  of a removed member; a scale-out waits for it.
* An irregular membership (a gap in the ordinals, a member with a foreign name) is left alone:
  no step and no replica change. Replacing members is a different operation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components import naming
from etcd_operator.reconcile.actions import (
    AddMember,
    DeletePVC,
    Event,
    MembershipAction,
    MoveLeader,
    PromoteMember,
    RemoveMember,
)
from etcd_operator.reconcile.observed import EtcdMember, Observed
from etcd_operator.reconcile.status import member_name

SCALING_OUT = "ScalingOut"
SCALING_IN = "ScalingIn"


@dataclass(frozen=True)
class ScalePlan:
    """The next scaling step.

    ``replicas``: the member count to render the StatefulSet, the bootstrap ConfigMap and the PDB
    with. ``steps``: etcd membership changes, in order, run before any Kubernetes write.
    ``events``: one per membership change, posted after the steps succeeded. ``deletes``: volume
    claims of removed members, deleted after the children are applied, and their
    ``delete_events``. ``reason``/``message``:
    the Progressing condition while scaling (``reason`` is ``None`` when there is nothing to do).
    ``blocked``: a membership change is needed but the engine cannot make it (Degraded).
    """

    replicas: int
    steps: tuple[MembershipAction, ...] = ()
    events: tuple[Event, ...] = ()
    deletes: tuple[DeletePVC, ...] = ()
    delete_events: tuple[Event, ...] = ()
    reason: str | None = None
    message: str = ""
    blocked: str | None = None


def ordinal(cluster: str, name: str) -> int | None:
    """The ordinal of ``<cluster>-<n>``, else ``None``."""
    match = re.fullmatch(re.escape(cluster) + r"-(0|[1-9][0-9]*)", name)
    return int(match.group(1)) if match else None


def pvc_name(cluster: str, index: int) -> str:
    """The StatefulSet's claim of ordinal ``index``: ``<template>-<pod>``."""
    return f"{naming.VOLUME_NAME}-{naming.member_name(cluster, index)}"


def pvc_ordinal(cluster: str, name: str) -> int | None:
    prefix = f"{naming.VOLUME_NAME}-"
    return ordinal(cluster, name[len(prefix) :]) if name.startswith(prefix) else None


def learner_ready(member: EtcdMember) -> bool:
    """Started and healthy: worth asking etcd to promote (etcd has the last word)."""
    return member.learner and member.started and member.healthy


def unsupported_message(desired: EtcdCluster, members: int) -> str:
    return (
        f"the {desired.spec.engine.value} engine cannot change etcd membership yet "
        f'(etcd answers "not capable"): {members} member(s), spec asks for '
        f"{desired.spec.replicas}"
    )


def _names(members: list[EtcdMember]) -> str:
    return ", ".join(member_name(m) for m in members)


def decide(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, *, blocked: bool
) -> ScalePlan:
    """The next step for a cluster that has formed (bootstrap state ``existing``)."""
    cluster, wanted = desired.name, desired.spec.replicas
    sts = observed.statefulset
    etcd = observed.etcd
    keep = sts.replicas if sts is not None else wanted
    if etcd is None:
        # Nothing to decide on: keep whatever runs.
        return ScalePlan(replicas=keep)
    by_ordinal: dict[int, EtcdMember] = {}
    for m in etcd.members:
        index = ordinal(cluster, member_name(m))
        if index is None or index in by_ordinal:
            return ScalePlan(replicas=keep)
        by_ordinal[index] = m
    count = len(by_ordinal)
    if set(by_ordinal) != set(range(count)) or count == 0:
        return ScalePlan(replicas=keep)

    pods = {i for p in observed.pods if (i := ordinal(cluster, p.name)) is not None}
    claims = {i: n for n in observed.pvcs if (i := pvc_ordinal(cluster, n)) is not None}
    # A claim beyond the members whose pod is gone and which the StatefulSet no longer covers.
    stale = sorted(
        i for i in claims if i >= count and i not in pods and (sts is None or sts.replicas <= i)
    )
    deletes = tuple(DeletePVC(claims[i], desired.namespace) for i in stale)
    delete_events = tuple(
        Event(
            "Normal",
            "VolumeDeleted",
            f"deleted volume claim {claims[i]} of removed member {naming.member_name(cluster, i)}",
        )
        for i in stale
    )

    def plan_(
        replicas: int,
        reason: str | None,
        message: str,
        steps: tuple[MembershipAction, ...] = (),
        events: tuple[Event, ...] = (),
    ) -> ScalePlan:
        if steps and blocked:
            return ScalePlan(
                replicas=count,
                deletes=deletes,
                delete_events=delete_events,
                reason=reason,
                message=message,
                blocked=unsupported_message(desired, count),
            )
        return ScalePlan(
            replicas=replicas,
            steps=steps,
            events=events,
            deletes=deletes,
            delete_events=delete_events,
            reason=reason,
            message=message,
        )

    learners = [by_ordinal[i] for i in sorted(by_ordinal) if by_ordinal[i].learner]
    voters = [by_ordinal[i] for i in sorted(by_ordinal) if not by_ordinal[i].learner]
    leader = etcd.leader
    top = by_ordinal[count - 1]
    top_name = member_name(top)

    # -- scale in: the highest ordinal first --------------------------------------------------
    if wanted < count and count > 1:
        progress = f"removing member {top_name} ({count} members, {wanted} desired)"
        if top.learner:
            return plan_(
                count - 1,
                SCALING_IN,
                progress,
                (RemoveMember(top.id, top_name),),
                (Event("Normal", "MemberRemoved", f"removed learner {top_name} from etcd"),),
            )
        remaining = [v for v in voters if v.id != top.id]
        healthy = [v for v in remaining if v.healthy]
        need = len(remaining) // 2 + 1
        if leader is None:
            return plan_(count, SCALING_IN, f"{progress}: waiting for a leader")
        if len(healthy) < need:
            return plan_(
                count,
                SCALING_IN,
                f"{progress}: waiting, the remaining voting members would be "
                f"{len(healthy)} healthy of {len(remaining)}, {need} needed",
            )
        steps: tuple[MembershipAction, ...] = ()
        events: tuple[Event, ...] = ()
        if top.leader:
            heir = healthy[0]
            steps += (MoveLeader(top.id, heir.id, member_name(heir)),)
            events += (
                Event(
                    "Normal",
                    "LeaderMoved",
                    f"moved leadership from {top_name} to {member_name(heir)} "
                    f"before removing {top_name}",
                ),
            )
        steps += (RemoveMember(top.id, top_name),)
        events += (Event("Normal", "MemberRemoved", f"removed member {top_name} from etcd"),)
        return plan_(count - 1, SCALING_IN, progress, steps, events)

    # -- a pending learner: promote it once it is ready -----------------------------------------
    if learners:
        learner = learners[0]
        name = member_name(learner)
        if learner_ready(learner):
            return plan_(
                count,
                SCALING_OUT,
                f"promoting learner {name} once it has caught up with the leader",
                (PromoteMember(learner.id, name),),
            )
        return plan_(count, SCALING_OUT, f"waiting for learner {name} to start and catch up")

    # -- the Kubernetes tail of an earlier step ------------------------------------------------
    if sts is not None and sts.replicas < count:
        return plan_(
            count, SCALING_OUT, f"starting member {naming.member_name(cluster, count - 1)}"
        )
    beyond = sorted(i for i in pods if i >= count)
    if (sts is not None and sts.replicas > count) or beyond:
        name = naming.member_name(cluster, beyond[-1] if beyond else count)
        return plan_(count, SCALING_IN, f"stopping removed member {name}")

    # -- scale out ----------------------------------------------------------------------------
    if wanted > count:
        name = naming.member_name(cluster, count)
        progress = f"adding member {name} ({count} members, {wanted} desired)"
        if count in claims:
            return plan_(
                count,
                SCALING_OUT,
                f"{progress}: waiting for the old volume claim {claims[count]} to be deleted",
            )
        unhealthy = [m for m in by_ordinal.values() if not m.healthy]
        if unhealthy:
            return plan_(
                count,
                SCALING_OUT,
                f"{progress}: waiting for every member to be healthy ({_names(unhealthy)} not)",
            )
        if leader is None:
            return plan_(count, SCALING_OUT, f"{progress}: waiting for a leader")
        peer = naming.peer_url(cluster, desired.namespace, count, settings.cluster_domain)
        return plan_(
            count + 1,
            SCALING_OUT,
            progress,
            (AddMember(name, peer),),
            (Event("Normal", "MemberAdded", f"added {name} to etcd as a learner ({peer})"),),
        )

    if stale:
        name = naming.member_name(cluster, stale[0])
        return plan_(count, SCALING_IN, f"deleting the volume claim of removed member {name}")
    return plan_(count, None, "")
