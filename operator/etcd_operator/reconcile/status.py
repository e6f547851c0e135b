"""The status of an EtcdCluster, assembled from the condition checkers: pure, no I/O.

Conditions follow Kubernetes conventions (``conditions/``: Available, Progressing, Degraded, one
checker each). A condition keeps its ``lastTransitionTime`` while its status stays the same, even
if its reason or message change. Fields that only etcd can tell (``clusterID``,
``currentVersion``) keep their last known value while etcd is unreachable; the leader is cleared,
because a stale leader is misleading. ``observedGeneration`` is written last.

A pass that fails (the API server refuses a child, etcd errs) never gets to its status; the
runtime then writes ``failed_pass``: the previous status with Degraded True, reason
``ReconcileFailed`` and the error, so a failing cluster never shows old conditions as current.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import rfc3339 as timestamp
from etcd_operator.api.v1alpha1 import (
    Condition,
    ConditionType,
    EtcdCluster,
    EtcdClusterStatus,
    MemberReplacement,
    MemberStatus,
    Phase,
    QuorumRecovery,
    RestoredFrom,
)
from etcd_operator.components import naming, networkpolicy
from etcd_operator.reconcile.auth import auth_ready_verdict, auth_status
from etcd_operator.reconcile.backup_status import backup_ready_verdict, backup_status
from etcd_operator.reconcile.conditions import CHECKERS, FALSE, TRUE, Verdict
from etcd_operator.reconcile.defrag import defrag_status
from etcd_operator.reconcile.keyspace import keyspace_status
from etcd_operator.reconcile.membership import member_name
from etcd_operator.reconcile.observed import EtcdView, Observed
from etcd_operator.reconcile.pipeline import Decided
from etcd_operator.reconcile.recovery_record import RECOVERY_RECORD, RECOVERY_TOKEN
from etcd_operator.reconcile.replacement import REPLACEMENT
from etcd_operator.reconcile.restore import RESTORE
from etcd_operator.reconcile.rollout import rollout_status
from etcd_operator.reconcile.scaling import SCALING_IN, SCALING_OUT
from etcd_operator.reconcile.tls import tls_ready_verdict, tls_status

RECONCILE_FAILED = "ReconcileFailed"
# What of an error goes into the Degraded message (a condition holds 32768 characters).
ERROR_MESSAGE_LIMIT = 4096


def failure_message(error: str) -> str:
    return error[:ERROR_MESSAGE_LIMIT]


def selector(cluster: str) -> str:
    """The pod label selector as a string, for the scale subresource (``kubectl scale``/HPA)."""
    return ",".join(f"{k}={v}" for k, v in sorted(naming.selector_labels(cluster).items()))


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


def generation_of(desired: EtcdCluster) -> int | None:
    raw = desired.metadata.get("generation")
    return int(raw) if raw is not None else None


def condition(
    previous: Sequence[Condition],
    type_: ConditionType,
    verdict: Verdict,
    *,
    now: datetime,
    generation: int | None,
) -> Condition:
    """A condition that keeps its previous lastTransitionTime unless its status changed."""
    since = timestamp(now)
    for old in previous:
        if old.type == type_ and old.status == verdict.status:
            since = old.lastTransitionTime
    return Condition(
        type=type_,
        status=verdict.status,
        reason=verdict.reason,
        message=verdict.message,
        lastTransitionTime=since,
        observedGeneration=generation,
    )


def _members(observed: Observed) -> list[MemberStatus]:
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


def _phase(
    desired: EtcdCluster, decided: Decided, by_type: dict[str, Condition], version: str | None
) -> Phase:
    if decided.hibernating:
        return Phase.HIBERNATED
    if not decided.has_formed:
        return Phase.CREATING
    available, degraded = by_type[ConditionType.AVAILABLE], by_type[ConditionType.DEGRADED]
    if degraded.status != FALSE or available.status != TRUE:
        return Phase.DEGRADED
    progressing = by_type[ConditionType.PROGRESSING]
    if progressing.status == TRUE and not same_version(desired.spec.version, version):
        return Phase.UPGRADING
    if progressing.reason in (SCALING_OUT, SCALING_IN):
        return Phase.SCALING
    return Phase.RUNNING


def compute_status(
    desired: EtcdCluster,
    observed: Observed,
    decided: Decided,
    settings: OperatorSettings,
    now: datetime,
) -> EtcdClusterStatus:
    """The status for this pass, from what was observed and what the steps decided."""
    previous = desired.status or EtcdClusterStatus()
    generation = generation_of(desired)
    conditions = [
        condition(
            previous.conditions,
            type_,
            check(desired, observed, decided, settings),
            now=now,
            generation=generation,
        )
        for type_, check in CHECKERS
    ]
    ready = backup_ready_verdict(desired, observed)
    if ready is not None:
        conditions.append(
            condition(
                previous.conditions,
                ConditionType.BACKUP_READY,
                ready,
                now=now,
                generation=generation,
            )
        )
    tls_ready = tls_ready_verdict(desired, observed, decided)
    if tls_ready is not None:
        conditions.append(
            condition(
                previous.conditions,
                ConditionType.TLS_READY,
                tls_ready,
                now=now,
                generation=generation,
            )
        )
    auth_ready = auth_ready_verdict(desired, observed)
    if auth_ready is not None:
        conditions.append(
            condition(
                previous.conditions,
                ConditionType.AUTH_READY,
                auth_ready,
                now=now,
                generation=generation,
            )
        )
    etcd = observed.etcd
    version, cluster_id, leader = previous.currentVersion, previous.clusterID, None
    at_version = previous.clusterVersion
    if etcd is not None:
        cluster_id = f"{etcd.cluster_id:x}"
        version = cluster_version(etcd) or version
        at_version = etcd.cluster_version or at_version
        leader = member_name(etcd.leader) if etcd.leader is not None else None
    by_type = {c.type: c for c in conditions}
    return EtcdClusterStatus(
        phase=_phase(desired, decided, by_type, version),
        conditions=conditions,
        members=_members(observed),
        replicas=len(etcd.members) if etcd is not None else len(observed.pods),
        readyReplicas=sum(1 for p in observed.pods if p.ready),
        currentVersion=version,
        clusterVersion=at_version,
        leader=leader,
        clusterID=cluster_id,
        selector=selector(desired.name),
        backup=backup_status(desired, observed, decided),
        keyspace=keyspace_status(desired, decided),
        restoredFrom=_restored_from(previous, decided),
        membersReplaced=_members_replaced(previous, decided),
        lastReplacement=_last_replacement(previous, decided),
        quorumRecovery=_acted(decided, RECOVERY_RECORD, QuorumRecovery, previous.quorumRecovery),
        recoverQuorumToken=_acted(decided, RECOVERY_TOKEN, str, previous.recoverQuorumToken),
        rollout=rollout_status(decided) or previous.rollout,
        defrag=defrag_status(desired, observed, decided) or previous.defrag,
        tls=tls_status(desired, observed, previous.tls, decided),
        auth=auth_status(desired, observed, previous.auth),
        networkPolicy=(
            naming.network_policy_name(desired.name)
            if networkpolicy.enabled(desired, settings)
            else None
        ),
        observedGeneration=generation,
    )


T = TypeVar("T")


def _acted(decided: Decided, key: str, kind: type[T], previous: T | None) -> T | None:
    """What a step of this pass recorded under ``key``, else the previous value."""
    acted = decided.acted_on(key)
    return acted if isinstance(acted, kind) else previous


def _replaced(decided: Decided) -> MemberReplacement | None:
    acted = decided.acted_on(REPLACEMENT)
    return acted if isinstance(acted, MemberReplacement) else None


def _members_replaced(previous: EtcdClusterStatus, decided: Decided) -> int | None:
    if _replaced(decided) is None:
        return previous.membersReplaced
    return (previous.membersReplaced or 0) + 1


def _last_replacement(previous: EtcdClusterStatus, decided: Decided) -> MemberReplacement | None:
    return _replaced(decided) or previous.lastReplacement


def _restored_from(previous: EtcdClusterStatus, decided: Decided) -> RestoredFrom | None:
    acted = decided.acted_on(RESTORE)
    return acted if isinstance(acted, RestoredFrom) else previous.restoredFrom


# What the status accumulates over the cluster's life: never cleared by a patch (a pass that
# does not know them writes nothing, rather than null).
STICKY_FIELDS = (
    "restoredFrom",
    "membersReplaced",
    "lastReplacement",
    "quorumRecovery",
    "recoverQuorumToken",
    "rollout",
    "defrag",
)


def status_patch(status: EtcdClusterStatus) -> dict[str, object]:
    """The status as a merge patch body, ``observedGeneration`` last.

    Consumers read ``observedGeneration`` to learn that the rest of the status describes the
    current spec, so it is written after everything else (etcd-druid's rule); ``None`` values
    stay in the patch so that a merge patch clears what is no longer known (e.g. the leader),
    except in the fields the status accumulates (``STICKY_FIELDS``).
    """
    body: dict[str, object] = status.model_dump(mode="json")
    for field in STICKY_FIELDS:
        if body.get(field) is None:
            body.pop(field, None)
    generation = body.pop("observedGeneration")
    body["observedGeneration"] = generation
    return body


def failed_pass(
    previous: EtcdClusterStatus | None, generation: int | None, error: str, now: datetime
) -> dict[str, object]:
    """The merge patch of a pass that failed: the previous conditions with Degraded True
    (``ReconcileFailed``, the error), the phase Degraded; nothing else changes, and
    ``observedGeneration`` stays, since the spec was not carried out. Takes the status alone:
    a spec that does not parse fails a pass too."""
    previous = previous or EtcdClusterStatus()
    degraded = condition(
        previous.conditions,
        ConditionType.DEGRADED,
        Verdict(TRUE, RECONCILE_FAILED, failure_message(error)),
        now=now,
        generation=generation,
    )
    others = [c for c in previous.conditions if c.type != ConditionType.DEGRADED]
    return {
        "phase": Phase.DEGRADED.value,
        "conditions": [c.model_dump(mode="json") for c in [*others, degraded]],
    }
