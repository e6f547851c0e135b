"""The status of an EtcdCluster, computed from what was observed: pure, no I/O.

Conditions follow Kubernetes conventions: ``Available`` (a leader and a healthy quorum of voting
members), ``Progressing`` (the operator is moving the cluster towards its spec), ``Degraded``
(something is wrong that the spec does not explain). A member pod that the scheduler cannot place
(no node fits it) makes the cluster Degraded with reason ``MemberUnschedulable`` whatever else
is seen, etcd unreachable included: it is the cause to act on (add or label nodes, relax the
placement), and it would stay hidden behind "waiting for the learner" or "unreachable".
A condition keeps its ``lastTransitionTime`` while its status stays the same, even if its
reason or message change.
Fields that only etcd can tell (``clusterID``, ``currentVersion``) keep their last known value
while etcd is unreachable; the leader is cleared, because a stale leader is misleading.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from etcd_operator.api.v1alpha1 import (
    Condition,
    ConditionType,
    EtcdCluster,
    EtcdClusterStatus,
    MemberStatus,
    Phase,
)
from etcd_operator.components import naming
from etcd_operator.reconcile.observed import EtcdMember, EtcdView, Observed

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

# The Degraded reason while a member pod cannot be scheduled.
MEMBER_UNSCHEDULABLE = "MemberUnschedulable"
# Of each scheduler message, what goes into the condition and the event (an Event's message
# holds 1024 characters; a condition's 32768, whatever the number of members).
SCHEDULER_MESSAGE_LIMIT = 960


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time serialises."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def selector(cluster: str) -> str:
    """The pod label selector as a string, for the scale subresource (``kubectl scale``/HPA)."""
    return ",".join(f"{k}={v}" for k, v in sorted(naming.selector_labels(cluster).items()))


def desired_member_names(desired: EtcdCluster) -> list[str]:
    return [naming.member_name(desired.name, i) for i in range(desired.spec.replicas)]


def member_name(member: EtcdMember) -> str:
    """The member's name; for one added but never started (no name yet), the pod name taken
    from its peer URL (``http://<pod>.<peer service>...``), else its ID."""
    if member.name:
        return member.name
    for url in member.peer_urls:
        host = urlsplit(url).hostname
        if host:
            return host.split(".", 1)[0]
    return member.id_hex


def formed(desired: EtcdCluster, etcd: EtcdView | None) -> bool:
    """Every desired member is listed in etcd and healthy: the cluster has formed."""
    if etcd is None:
        return False
    by_name = {member_name(m): m for m in etcd.members}
    return all(
        (m := by_name.get(name)) is not None and m.healthy for name in desired_member_names(desired)
    )


def unschedulable_pods(observed: Observed) -> list[str]:
    """One line per member pod the scheduler cannot place, naming it, with the scheduler's
    message; these lines make the Degraded message and the Warning events."""
    return [
        f"pod {p.name} cannot be scheduled: {p.unschedulable[:SCHEDULER_MESSAGE_LIMIT]}"
        for p in sorted(observed.pods, key=lambda p: p.name)
        if p.unschedulable is not None
    ]


def _version_key(version: str) -> tuple[int, ...]:
    core = version.lstrip("v").split("-", 1)[0].split("+", 1)[0]
    try:
        return tuple(int(p) for p in core.split("."))
    except ValueError:
        return ()


def cluster_version(etcd: EtcdView) -> str | None:
    """The lowest server version among healthy members: what the cluster can run as a whole."""
    versions = [m.version for m in etcd.members if m.healthy and m.version]
    return min(versions, key=_version_key) if versions else None


def same_version(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lstrip("v") == b.lstrip("v")


def condition(
    previous: Sequence[Condition],
    type_: ConditionType,
    status: str,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> Condition:
    """A condition that keeps its previous lastTransitionTime unless its status changed."""
    since = timestamp(now)
    for old in previous:
        if old.type == type_ and old.status == status:
            since = old.lastTransitionTime
    return Condition(
        type=type_,
        status=status,  # type: ignore[arg-type]  # one of TRUE/FALSE/UNKNOWN
        reason=reason,
        message=message,
        lastTransitionTime=since,
        observedGeneration=generation,
    )


def _members(desired: EtcdCluster, observed: Observed) -> list[MemberStatus]:
    if observed.etcd is None:
        # Only the kubelet's view is left: readiness is the member's own /health probe.
        return [
            MemberStatus(name=p.name, healthy=p.ready)
            for p in sorted(observed.pods, key=lambda p: p.name)
        ]
    return [
        MemberStatus(
            name=member_name(m),
            id=m.id_hex,
            peerURL=m.peer_urls[0] if m.peer_urls else None,
            clientURL=m.client_urls[0] if m.client_urls else None,
            leader=m.leader,
            learner=m.learner,
            healthy=m.healthy,
            version=m.version,
            dbSize=m.db_size,
            revision=m.revision,
        )
        for m in sorted(observed.etcd.members, key=member_name)
    ]


def compute_status(
    desired: EtcdCluster,
    observed: Observed,
    now: datetime,
    *,
    has_formed: bool,
    applying_spec: bool,
    timeout_seconds: float,
    scaling: tuple[str, str] | None = None,
    blocked: str | None = None,
) -> EtcdClusterStatus:
    """The status for this pass.

    ``has_formed``: the cluster formed at some point (now, or the bootstrap ConfigMap says
    ``existing``). ``applying_spec``: this pass applies a changed StatefulSet. ``scaling``: the
    (reason, message) of the membership step in progress (``ScalingOut``/``ScalingIn``), if any.
    ``blocked``: why a needed membership change cannot be made (the engine cannot do it yet).
    """
    previous = desired.status or EtcdClusterStatus()
    generation_raw = desired.metadata.get("generation")
    generation = int(generation_raw) if generation_raw is not None else None
    etcd = observed.etcd
    wanted = desired_member_names(desired)

    def cond(type_: ConditionType, status: str, reason: str, message: str) -> Condition:
        return condition(
            previous.conditions, type_, status, reason, message, now=now, generation=generation
        )

    leader: str | None = None
    current_version = previous.currentVersion
    cluster_id = previous.clusterID
    if etcd is None:
        if has_formed:
            why = f"no member answered within {timeout_seconds:g}s"
            available = cond(ConditionType.AVAILABLE, UNKNOWN, "EtcdUnreachable", why)
            degraded = cond(ConditionType.DEGRADED, UNKNOWN, "EtcdUnreachable", why)
        else:
            why = f"waiting for {len(wanted)} members to form the cluster"
            available = cond(ConditionType.AVAILABLE, FALSE, "Bootstrapping", why)
            degraded = cond(ConditionType.DEGRADED, FALSE, "Bootstrapping", why)
    else:
        cluster_id = f"{etcd.cluster_id:x}"
        current_version = cluster_version(etcd) or current_version
        by_name = {member_name(m): m for m in etcd.members}
        if etcd.leader is not None:
            leader = member_name(etcd.leader)
        voters = etcd.voters
        healthy_voters = [m for m in voters if m.healthy]
        quorum = len(voters) // 2 + 1
        if leader is None:
            available = cond(
                ConditionType.AVAILABLE, FALSE, "NoLeader", "no member reports a leader"
            )
        elif len(healthy_voters) < quorum:
            available = cond(
                ConditionType.AVAILABLE,
                FALSE,
                "QuorumLost",
                f"{len(healthy_voters)} of {len(voters)} voting members healthy, {quorum} needed",
            )
        else:
            available = cond(
                ConditionType.AVAILABLE,
                TRUE,
                "QuorumHealthy",
                f"{len(healthy_voters)} of {len(voters)} voting members healthy, leader {leader}",
            )
        # Desired members beyond the current count are still to be added (scaling, not
        # missing); a gap below it is a member that is gone.
        missing = [n for n in wanted[: len(etcd.members)] if n not in by_name]
        # A learner is a member being added: not yet ready is expected, and the Progressing
        # condition tells about it.
        unhealthy = [
            f"{name} ({m.error})" if m.error else name
            for name, m in sorted(by_name.items())
            if not m.healthy and not m.learner
        ]
        learners = sorted(name for name, m in by_name.items() if m.learner)
        if not has_formed:
            degraded = cond(
                ConditionType.DEGRADED,
                FALSE,
                "Bootstrapping",
                f"waiting for {len(wanted)} members to form the cluster",
            )
        elif blocked is not None:
            degraded = cond(ConditionType.DEGRADED, TRUE, "MembershipNotSupported", blocked)
        elif missing:
            degraded = cond(
                ConditionType.DEGRADED,
                TRUE,
                "MemberMissing",
                "not in etcd's member list: " + ", ".join(missing),
            )
        elif unhealthy:
            degraded = cond(
                ConditionType.DEGRADED,
                TRUE,
                "MemberUnhealthy",
                "unhealthy: " + ", ".join(unhealthy),
            )
        elif etcd.alarms:
            degraded = cond(
                ConditionType.DEGRADED,
                TRUE,
                "AlarmActive",
                "active alarms: " + ", ".join(etcd.alarms),
            )
        else:
            healthy_message = f"{len(by_name)} members healthy"
            if learners:
                healthy_message = (
                    f"{len(voters)} voting members healthy; learner: {', '.join(learners)}"
                )
            degraded = cond(ConditionType.DEGRADED, FALSE, "AllMembersHealthy", healthy_message)
    unplaced = unschedulable_pods(observed)
    if unplaced:
        degraded = cond(ConditionType.DEGRADED, TRUE, MEMBER_UNSCHEDULABLE, "; ".join(unplaced))

    rolling = observed.statefulset is not None and observed.statefulset.rolling
    if not has_formed:
        progressing = cond(
            ConditionType.PROGRESSING, TRUE, "Creating", f"creating {len(wanted)} members"
        )
    elif blocked is not None:
        progressing = cond(ConditionType.PROGRESSING, FALSE, "MembershipNotSupported", blocked)
    elif scaling is not None:
        progressing = cond(ConditionType.PROGRESSING, TRUE, scaling[0], scaling[1])
    elif applying_spec:
        progressing = cond(
            ConditionType.PROGRESSING,
            TRUE,
            "SpecChanged",
            "applying the changed spec to the members",
        )
    elif rolling:
        sts = observed.statefulset
        assert sts is not None
        progressing = cond(
            ConditionType.PROGRESSING,
            TRUE,
            "RollingUpdate",
            f"{sts.updated_replicas} of {sts.replicas} members run the current template",
        )
    else:
        progressing = cond(
            ConditionType.PROGRESSING, FALSE, "Reconciled", "the members match the spec"
        )

    if not has_formed:
        phase = Phase.CREATING
    elif degraded.status != FALSE or available.status != TRUE:
        phase = Phase.DEGRADED
    elif progressing.status == TRUE and not same_version(desired.spec.version, current_version):
        phase = Phase.UPGRADING
    elif scaling is not None:
        phase = Phase.SCALING
    else:
        phase = Phase.RUNNING

    return EtcdClusterStatus(
        phase=phase,
        conditions=[available, progressing, degraded],
        members=_members(desired, observed),
        replicas=len(etcd.members) if etcd is not None else len(observed.pods),
        readyReplicas=sum(1 for p in observed.pods if p.ready),
        currentVersion=current_version,
        leader=leader,
        clusterID=cluster_id,
        selector=selector(desired.name),
        observedGeneration=generation,
    )


def status_patch(status: EtcdClusterStatus) -> dict[str, object]:
    """The status as a merge patch body, ``observedGeneration`` last.

    Consumers read ``observedGeneration`` to learn that the rest of the status describes the
    current spec, so it is written after everything else (etcd-druid's rule); ``None`` values
    stay in the patch so that a merge patch clears what is no longer known (e.g. the leader).
    """
    body: dict[str, object] = status.model_dump(mode="json")
    generation = body.pop("observedGeneration")
    body["observedGeneration"] = generation
    return body
