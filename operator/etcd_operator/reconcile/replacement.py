"""Replacing a member whose data is gone: remove it from etcd, give it an empty volume, add it
back as a learner under a new member ID (the scaling step promotes it once it caught up). Pure.

**Evidence.** A member's data counts as lost only on what the member itself says when it stops
(its container's termination message, the end of its log, or its ``member-init`` container's):
pyetcd, etcd and member-init refuse to start on an empty data dir that the cluster lists as
started ("member <id> has already been bootstrapped"),
and etcd panics on a raft log that lost acknowledged entries ("tocommit(N) is out of range
[lastIndex(M)]. Was the raft log corrupted, truncated, or lost?"), as pyetcd does. Or its node
is gone with its data: the node has not been Ready for ``spec.replacement.nodeLostAfterSeconds``
and the member's volume is local to it (the volume's node affinity names that node); its pod is
then deleted with grace period 0, since no kubelet will confirm its end. A member that is down
for any other reason (a crash, a bad flag, a node reboot shorter than the grace period, a node
lost with a network volume) keeps its member ID and its volume and is restarted: replacing it
would throw away a good copy.

**Steps**, every one derived from what is observed, so that a pass that stopped between any two
of them is finished by the next:

1. ``member <n>`` is listed by etcd, is not healthy, and its pod shows the evidence:
   ``RemoveMember``, then (2) in the same pass.
2. etcd lists no member at ordinal ``n`` below the highest one (a gap: step 1 stopped half-way,
   or someone removed the member by hand): ``DeletePVC`` and ``DeletePod`` of ordinal ``n`` (the
   data on that claim, if any, belongs to a removed member ID and must never start again), then
   ``AddMember`` as a learner with ``n``'s peer URL. The deletions come first: a learner added
   while the old claim is still there could start on the removed member's data.
3. The learner starts on the new, empty claim the StatefulSet makes, receives a snapshot from
   the leader, and is promoted by the scaling step (which owns promotions).

A gap at the top ordinal is the scaling step's (it lowers the StatefulSet, deletes the claim and
adds the member back): it cannot be told from a scale-in that stopped half-way.

**Guardrails.** Only on a formed cluster with a leader and no learner (one member at a time);
only when the voters other than the one replaced are a healthy quorum of the voters that remain
(removing it must not cost the cluster its writes); never the leader, never a healthy member.
With ``spec.replacement.policy: Manual`` step 1 waits for the annotation
``etcd.pyetcd.io/replace-member=<member>`` (each value approves once). Step 2 is the end of a
replacement already decided and runs under either policy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import rfc3339
from etcd_operator.api.v1alpha1 import (
    REPLACE_MEMBER_ANNOTATION,
    EtcdCluster,
    MemberReplacement,
    ReplacementPolicy,
)
from etcd_operator.components import naming, tls
from etcd_operator.reconcile.actions import (
    Action,
    AddMember,
    DeletePod,
    DeletePVC,
    Event,
    RemoveMember,
)
from etcd_operator.reconcile.membership import (
    member_name,
    membership_latched,
    ordinal,
    pvc_name,
    quorum_without,
)
from etcd_operator.reconcile.observed import EtcdMember, Observed, PodState
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress

# Decided.notes key: the replacement found in this pass (a ``Replacement``).
REPLACEMENT = "replacement"
# The Progressing reason while a member is replaced; the Degraded reason while one waits.
REPLACING_MEMBER = "ReplacingMember"
MEMBER_DATA_LOST = "MemberDataLost"
MEMBER_REPLACED = "MemberReplaced"

# What members print when they stop because their data is lost (pyetcd and etcd alike).
LOST_DATA_SIGNATURES = (
    "has already been bootstrapped",
    "Was the raft log corrupted, truncated, or lost?",
)
# Of a termination message, what goes into events and the status.
EVIDENCE_LIMIT = 300


def lost_data_evidence(pod: PodState | None) -> str | None:
    """The line of ``pod``'s last exit that says its member's data is lost, else ``None``.

    A pod being deleted says nothing about the member that will run in its successor."""
    if pod is None or pod.terminating:
        return None
    for message in (pod.init_failed, pod.exit_message):
        for line in reversed((message or "").splitlines()):
            if any(sig in line for sig in LOST_DATA_SIGNATURES):
                return line.strip()[:EVIDENCE_LIMIT]
    return None


def node_lost_evidence(pod: PodState | None, now: datetime | None, after: int) -> str | None:
    """Why ``pod``'s member counts as having lost its data with its node: the node has not been
    Ready for ``after`` seconds and the member's volume is local to it. ``None`` otherwise (a
    member on a network volume is not replaced: its data is not on the node)."""
    if pod is None or now is None or pod.node is None or pod.node_lost_since is None:
        return None
    if pod.volume_node != pod.node:
        return None
    lost_for = (now - pod.node_lost_since).total_seconds()
    if lost_for < after:
        return None
    return f"node {pod.node} not Ready for {int(lost_for)}s, and the member's volume is local to it"


def on_lost_node(pod: PodState | None) -> bool:
    """The pod's node is not Ready: its deletion must be forced (no kubelet will confirm it)."""
    return pod is not None and pod.node_lost_since is not None


@dataclass(frozen=True)
class Replacement:
    """What the replacement step found: the member, why, and whether it acts now (``acting``)
    or waits (``waiting``: the reason, for Degraded)."""

    member: str
    evidence: str
    old_id: int | None = None
    acting: bool = False
    waiting: str | None = None

    @property
    def message(self) -> str:
        return f"member {self.member}: {self.evidence}" + (
            f"; {self.waiting}" if self.waiting else ""
        )


def approval(desired: EtcdCluster, member: str) -> str | None:
    """The replace-member annotation's value if it approves replacing ``member`` and was not
    used before."""
    value = (desired.metadata.get("annotations") or {}).get(REPLACE_MEMBER_ANNOTATION)
    if not isinstance(value, str) or value.split(":", 1)[0].strip() != member:
        return None
    last = desired.status.lastReplacement if desired.status is not None else None
    if last is not None and last.approval == value:
        return None
    return value


def _rebuild(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, index: int
) -> tuple[Action, ...]:
    """Step 2: the claim and pod of ordinal ``index`` go, then the member comes back as a
    learner under a new ID with the same name and peer URL."""
    ns = desired.namespace
    name = naming.member_name(desired.name, index)
    peer = naming.peer_url(
        desired.name, ns, index, settings.cluster_domain, secure=tls.peer_secure(desired)
    )
    return (
        DeletePVC(pvc_name(desired.name, index), ns),
        DeletePod(name, ns, force=on_lost_node(observed.pod(name))),
        AddMember(name, peer),
    )


def _by_ordinal(desired: EtcdCluster, observed: Observed) -> dict[int, EtcdMember] | None:
    """etcd's members by ordinal; ``None`` when a member has a foreign name or two share one
    (not ours to repair)."""
    assert observed.etcd is not None
    found: dict[int, EtcdMember] = {}
    for m in observed.etcd.members:
        index = ordinal(desired.name, member_name(m))
        if index is None or index in found:
            return None
        found[index] = m
    return found


def find(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, now: datetime | None
) -> tuple[Replacement | None, tuple[Action, ...], MemberReplacement | None]:
    """The replacement this pass makes or waits on (``None``: nothing to replace), its actions,
    and the record of a replacement it starts."""
    etcd = observed.etcd
    if etcd is None:
        return None, (), None
    by_ordinal = _by_ordinal(desired, observed)
    if not by_ordinal:
        return None, (), None
    stamp = rfc3339(now) if now is not None else ""
    top = max(by_ordinal)
    gaps = [i for i in range(top) if i not in by_ordinal and i < desired.spec.replicas]
    if gaps:
        index = gaps[0]
        name = naming.member_name(desired.name, index)
        missing = f"etcd lists no member {name}"
        if etcd.learners or etcd.leader is None:
            why = "a learner is being added" if etcd.learners else "there is no leader"
            return Replacement(name, missing, waiting=f"waiting: {why}"), (), None
        record = MemberReplacement(member=name, reason=missing, time=stamp)
        return (
            Replacement(name, missing, acting=True),
            _rebuild(desired, observed, settings, index),
            record,
        )
    for index in sorted(by_ordinal):
        member = by_ordinal[index]
        name = member_name(member)
        pod = observed.pod(name)
        evidence = lost_data_evidence(pod) or node_lost_evidence(
            pod, now, desired.spec.replacement.nodeLostAfterSeconds
        )
        if evidence is None or member.healthy:
            continue
        found = Replacement(name, evidence, old_id=member.id)
        if etcd.learners:
            return dataclasses.replace(found, waiting="waiting: a learner is being added"), (), None
        if etcd.leader is None or member.leader:
            return dataclasses.replace(found, waiting="waiting for a leader"), (), None
        healthy, remaining, need = quorum_without(etcd.voters, member.id)
        if not member.learner and healthy < need:
            quorum = f"{healthy} of the {remaining} other voting members healthy, {need} needed"
            return (
                dataclasses.replace(found, waiting=f"not replaced while only {quorum}"),
                (),
                None,
            )
        approved = None
        if desired.spec.replacement.policy == ReplacementPolicy.MANUAL:
            approved = approval(desired, name)
            if approved is None:
                return (
                    dataclasses.replace(
                        found,
                        waiting="replacement policy is Manual: annotate the cluster with "
                        f"{REPLACE_MEMBER_ANNOTATION}={name} to replace it",
                    ),
                    (),
                    None,
                )
        record = MemberReplacement(
            member=name, oldID=member.id_hex, reason=evidence, time=stamp, approval=approved
        )
        actions = (RemoveMember(member.id, name), *_rebuild(desired, observed, settings, index))
        return dataclasses.replace(found, acting=True), actions, record
    return None, (), None


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    """The replacement step: on a formed cluster whose membership may change, the next
    replacement action (and its events), or the report of one that waits."""
    if not decided.has_formed or decided.recovering or decided.hibernating:
        # (A quorum-loss recovery under way owns the membership until it ends.)
        return StepResult(decided=decided)
    if observed.membership_unsupported is not None or membership_latched(desired):
        return StepResult(decided=decided)
    found, actions, record = find(desired, observed, settings, observed.now)
    if found is None:
        return StepResult(decided=decided)
    decided = dataclasses.replace(decided, notes=(*decided.notes, (REPLACEMENT, found)))
    if not found.acting:
        # Degraded says it (``pending``); Progressing keeps reporting the work under way.
        return StepResult(decided=decided)
    decided = with_progress(
        decided,
        Progress(REPLACING_MEMBER, f"replacing member {found.member}: {found.evidence}"),
    )
    if record is not None:
        decided = dataclasses.replace(decided, acted=(*decided.acted, (REPLACEMENT, record)))
    events: tuple[Event, ...]
    if found.old_id is not None:
        events = (
            Event(
                "Warning",
                MEMBER_DATA_LOST,
                f"member {found.member} lost its data: {found.evidence}",
            ),
            Event(
                "Normal",
                MEMBER_REPLACED,
                f"removed member {found.member} ({found.old_id:x}) from etcd and added it back "
                "as a learner on a new volume",
            ),
        )
    else:
        events = (
            Event(
                "Normal",
                MEMBER_REPLACED,
                f"{found.evidence}: added it back as a learner on a new volume",
            ),
        )
    return StepResult(actions=(*actions, *events), decided=decided)


def pending(decided: Decided) -> Replacement | None:
    """The replacement this pass found, if any (for the conditions)."""
    found = decided.note(REPLACEMENT)
    return found if isinstance(found, Replacement) else None
