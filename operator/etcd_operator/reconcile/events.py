"""The events of a pass: what its steps did, and the transitions from the previous status to the
one it writes. Pure.

Events come from transitions, never from states, so a condition that stays the same posts
nothing however many passes see it; the previous status is the memory (a Warning per pod the
scheduler cannot place is posted once, because the previous Degraded message lists the pods
already reported).
"""

from __future__ import annotations

from etcd_operator.api.v1alpha1 import (
    Condition,
    ConditionType,
    EtcdCluster,
    EtcdClusterStatus,
)
from etcd_operator.reconcile.actions import Event
from etcd_operator.reconcile.auth import AUTH_NOT_READY, AUTH_PENDING
from etcd_operator.reconcile.conditions import FALSE, TRUE, UNKNOWN
from etcd_operator.reconcile.conditions.degraded import MEMBER_UNSCHEDULABLE, unschedulable_pods
from etcd_operator.reconcile.hibernation import HIBERNATED
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided
from etcd_operator.reconcile.rollout import ROLLOUT_STUCK
from etcd_operator.reconcile.status import failure_message
from etcd_operator.reconcile.tls import CERTIFICATES_PENDING, TLS_NOT_READY

EVEN_MEMBERS = "an even number of members tolerates no more failures than one fewer"


def _conditions(status: EtcdClusterStatus | None) -> dict[str, Condition]:
    return {c.type: c for c in status.conditions} if status is not None else {}


def transitions(
    desired: EtcdCluster,
    observed: Observed,
    old: EtcdClusterStatus | None,
    new: EtcdClusterStatus,
    decided: Decided,
) -> list[Event]:
    """The events of a pass that writes ``new`` over ``old``."""
    events: list[Event] = []
    spec = desired.spec
    if decided.creating and not decided.hibernating:
        events.append(
            Event("Normal", "Creating", f"creating {spec.replicas} members running {spec.version}")
        )
    generation = desired.metadata.get("generation")
    if (
        spec.replicas > 0
        and spec.replicas % 2 == 0
        and (old is None or old.observedGeneration != generation)
    ):
        events.append(Event("Warning", "EvenMembers", f"{spec.replicas} members: {EVEN_MEMBERS}"))
    events.extend(
        Event("Normal", "Updated", f"applied the changed {key.kind} {key.name}")
        for key in decided.updated
    )
    events.extend(
        Event(
            "Warning",
            "DriftCorrected",
            f"{key.kind} {key.name} was changed outside the operator ({', '.join(paths)}); "
            "applied the desired state again",
        )
        for key, paths in decided.drifted
    )
    if decided.flipped:
        events.append(
            Event(
                "Normal",
                "ClusterFormed",
                f"all {spec.replicas} members joined; new members now join the existing cluster",
            )
        )

    if observed.etcd is not None:
        # Member health transitions only from etcd's own view: pod readiness alone would flap
        # events whenever the operator loses its connection to etcd.
        before = {m.name: m for m in old.members} if old is not None else {}
        for member in new.members:
            prior = before.get(member.name)
            if member.healthy and (prior is None or not prior.healthy):
                events.append(Event("Normal", "MemberHealthy", f"member {member.name} is healthy"))
            elif not member.healthy and prior is not None and prior.healthy:
                events.append(
                    Event("Warning", "MemberUnhealthy", f"member {member.name} is unhealthy")
                )
        for member in new.members:
            prior = before.get(member.name)
            if prior is not None and prior.learner and not member.learner:
                events.append(
                    Event(
                        "Normal",
                        "MemberPromoted",
                        f"learner {member.name} was promoted to a voting member",
                    )
                )
        if new.leader is not None and new.leader != (old.leader if old else None):
            was = old.leader if old is not None and old.leader else "none"
            events.append(Event("Normal", "LeaderChanged", f"leader is {new.leader} (was {was})"))

    events.extend(_tls_events(old, new))
    events.extend(_auth_events(old, new))
    events.extend(_rollout_events(old, new))
    events.extend(_defrag_events(old, new))
    before_c, after_c = _conditions(old), _conditions(new)
    available, was_available = (
        after_c[ConditionType.AVAILABLE],
        before_c.get(ConditionType.AVAILABLE),
    )
    if available.status == TRUE and (was_available is None or was_available.status != TRUE):
        events.append(Event("Normal", "Available", available.message))
    elif available.status != TRUE and was_available is not None and was_available.status == TRUE:
        if available.reason == HIBERNATED:
            events.append(Event("Normal", HIBERNATED, available.message))
        else:
            events.append(
                Event("Warning", "Unavailable", f"{available.reason}: {available.message}")
            )
    degraded, was_degraded = after_c[ConditionType.DEGRADED], before_c.get(ConditionType.DEGRADED)
    prior_status = was_degraded.status if was_degraded is not None else FALSE
    unplaced = degraded.reason == MEMBER_UNSCHEDULABLE
    if unplaced:
        # One Warning per pod and scheduler message, when first seen: the previous Degraded
        # message holds what was reported already (the condition is the memory).
        reported = (
            was_degraded.message
            if was_degraded is not None and was_degraded.reason == MEMBER_UNSCHEDULABLE
            else ""
        )
        events.extend(
            Event("Warning", MEMBER_UNSCHEDULABLE, line)
            for line in unschedulable_pods(observed)
            if line not in reported
        )
    if degraded.status != prior_status:
        if degraded.status == TRUE:
            if not unplaced:  # else the MemberUnschedulable events above say it, pod by pod
                events.append(
                    Event("Warning", "Degraded", f"{degraded.reason}: {degraded.message}")
                )
        elif degraded.status == UNKNOWN:
            events.append(Event("Warning", degraded.reason, degraded.message))
        elif was_degraded is not None:
            events.append(Event("Normal", "Recovered", degraded.message))
    return events


def _tls_events(old: EtcdClusterStatus | None, new: EtcdClusterStatus) -> list[Event]:
    """TLSReady turning False (or saying something new while False), and back to True."""
    now = _conditions(new).get(ConditionType.TLS_READY)
    was = _conditions(old).get(ConditionType.TLS_READY)
    if now is None or now.reason == CERTIFICATES_PENDING:
        return []  # the operator's own issuing under way: the CertificateIssued event says it
    if now.status == FALSE and (was is None or (was.status, was.message) != (FALSE, now.message)):
        return [Event("Warning", TLS_NOT_READY, f"{now.reason}: {now.message}")]
    if now.status == TRUE and was is not None and was.status == FALSE:
        return [Event("Normal", "TLSReady", now.message)]
    return []


def _auth_events(old: EtcdClusterStatus | None, new: EtcdClusterStatus) -> list[Event]:
    """AuthReady turning False (or saying something new while False), and back to True."""
    now = _conditions(new).get(ConditionType.AUTH_READY)
    was = _conditions(old).get(ConditionType.AUTH_READY)
    if now is None or now.reason == AUTH_PENDING:
        return []  # the operator's own enabling under way: the EnablingAuth event says it
    if now.status == FALSE and (was is None or (was.status, was.message) != (FALSE, now.message)):
        return [Event("Warning", AUTH_NOT_READY, f"{now.reason}: {now.message}")]
    if now.status == TRUE and (was is None or was.status != TRUE):
        return [Event("Normal", "AuthReady", now.message)]
    return []


def _rollout_events(old: EtcdClusterStatus | None, new: EtcdClusterStatus) -> list[Event]:
    """A rollout that got stuck (once per stall) and one that completed."""
    events: list[Event] = []
    was = _conditions(old).get(ConditionType.PROGRESSING)
    now = _conditions(new)[ConditionType.PROGRESSING]
    if now.reason == ROLLOUT_STUCK and (was is None or was.reason != ROLLOUT_STUCK):
        events.append(Event("Warning", ROLLOUT_STUCK, now.message))
    done = new.rollout
    before = old.rollout if old is not None else None
    if (
        done is not None
        and done.completedAt is not None
        and (before is None or before.revision != done.revision or before.completedAt is None)
    ):
        events.append(
            Event(
                "Normal",
                "RolloutComplete",
                f"all {done.members} members run revision {done.revision}",
            )
        )
    return events


def _defrag_events(old: EtcdClusterStatus | None, new: EtcdClusterStatus) -> list[Event]:
    """One per member defragmented, with what it gave back to the disk."""
    before = {m.member: m.time for m in (old.defrag.members if old and old.defrag else [])}
    return [
        Event(
            "Normal",
            "Defragmented",
            f"member {m.member} ({m.trigger}): db file {m.dbSizeBefore} -> {m.dbSizeAfter} "
            f"bytes, {m.reclaimed} reclaimed",
        )
        for m in (new.defrag.members if new.defrag else [])
        if before.get(m.member) != m.time
    ]


def failure_event(status: EtcdClusterStatus | None, error: str, reason: str) -> Event | None:
    """The Warning of a failed pass, unless the previous status already reports the same
    failure: a pass retried with backoff posts one event per distinct error, not one per try."""
    message = failure_message(error)
    for c in status.conditions if status is not None else ():
        if c.type == ConditionType.DEGRADED and c.reason == reason and c.message == message:
            return None
    return Event("Warning", reason, message)
