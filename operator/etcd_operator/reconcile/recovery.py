"""Rebuilding a cluster that lost its quorum for good, from its surviving member. Pure.

When a majority of the voters is gone, writes stop and nothing heals by itself: no election can
mend it, and replacing members needs a quorum to change the membership. The way out is etcd's
``--force-new-cluster`` on a survivor: it continues alone, as a one-member cluster with the same
cluster and member IDs and every write it had committed, and grows back through learners. What
may be lost: the writes the cluster had committed that the survivor had not yet received, which
is why the survivor is the answering member with the highest raft index, and why the operator
only does it with the user's consent.

**Consent.** The annotation ``etcd.pyetcd.io/recover-quorum=<token>``: any value, used once
(``status.recoverQuorumToken`` records the last one). A network partition looks the same from
here as lost members, so by default only the user decides: the Available condition
(``QuorumLost``) names the gone and the surviving members and says how to consent. With
``spec.recovery.quorumLoss: Automatic`` the consent is given in advance, and used only on
evidence that no partition explains (``automatic``): the cluster has been unavailable for
``quorumLostAfterSeconds`` and every gone member says its data is lost.

**Guardrails.** Only on a formed cluster, only while there is no leader and fewer voters answer
than a quorum needs (``membership.quorum_loss``), and only from a member that answers its own
status. A consent that finds the quorum intact or no member answering is refused (an event) and
spent (``status.recoverQuorumToken``), so that an annotation left on the object never approves
a later loss that nobody looked at. With no member answering, the way back is a new cluster
from a backup (``spec.bootstrap.backup``).

**Steps**, each derived from what is observed (the bootstrap ConfigMap's ``force-new-cluster``
key is the operation's durable state, the status its report), so that a pass that stopped
between any two is finished by the next:

1. Start (no key; quorum lost; new consent): pick the survivor; delete the volume claim and the
   pod of every other ordinal (their data belongs to the old membership and must never start
   again: two of them together could still elect a leader of the old cluster); set the key to
   ``<survivor pod>:<token>`` (the children step applies it). In that order, in one pass.
2. Once the other members' new pods are placed (on a node, or refused by the scheduler), the
   survivor's pod is deleted (``restart_step``, after the children). Not earlier: its volume is
   local to its node, and a new pod placed while it is away could take that node (one member
   per node), leaving the survivor nowhere to run. It is deleted whenever the key is set and
   the survivor still lists other members: its pod has not been through member-init since.
3. The survivor's pod starts again: its ``member-init`` container runs the offline
   ``--force-new-cluster`` on its data (once per token, a marker on its volume), and the member
   starts as a one-member cluster.
4. Done when etcd lists the survivor alone, healthy and leading: the key is removed, the record
   says Succeeded with the revision before and after, and the replacement and scaling steps add
   the other members back as learners on new volumes. If member-init fails (no data, a log it
   cannot read), the key is removed and the record says Failed with its message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import parse_rfc3339
from etcd_operator.api.v1alpha1 import (
    RECOVER_QUORUM_ANNOTATION,
    ConditionType,
    EtcdCluster,
    QuorumLossPolicy,
    QuorumRecovery,
    QuorumRecoveryPhase,
)
from etcd_operator.components import naming
from etcd_operator.reconcile import recovery_backup
from etcd_operator.reconcile.actions import Action, DeletePod, DeletePVC, Event
from etcd_operator.reconcile.membership import (
    QuorumLoss,
    member_name,
    ordinal,
    pvc_name,
    quorum_loss,
)
from etcd_operator.reconcile.observed import EtcdMember, EtcdView, Observed
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress
from etcd_operator.reconcile.recovery_record import (
    QUORUM_RECOVERED,
    QUORUM_RECOVERY_FAILED,
    QUORUM_RECOVERY_STARTED,
    RECOVERING_QUORUM,
    RECOVERY_RECORD,
    RECOVERY_TOKEN,
    ordinals,
    reject,
    stamp,
)
from etcd_operator.reconcile.replacement import lost_data_evidence, on_lost_node

# Decided.notes key: the recovery under way or refused in this pass (a ``Recovery``).
RECOVERY = "recovery"
# Decided.notes key: why an Automatic recovery does not start yet (a ``str``, for Available).
AUTOMATIC_WAIT = "recovery-automatic-wait"
# The start of member-init's message when the offline surgery failed.
SURGERY_FAILED = "force-new-cluster"


@dataclass(frozen=True)
class Recovery:
    """The recovery under way: its ``survivor``, and whether its pod is to be deleted after the
    children are applied (``restart``), so that it starts again with the key in place."""

    survivor: str
    restart: bool = False


def consent(desired: EtcdCluster) -> str | None:
    """The recover-quorum annotation's value, unless that value was acted on or refused before
    (``status.recoverQuorumToken``)."""
    value = (desired.metadata.get("annotations") or {}).get(RECOVER_QUORUM_ANNOTATION)
    if not isinstance(value, str) or not value.strip():
        return None
    spent = desired.status.recoverQuorumToken if desired.status is not None else None
    return None if spent == value.strip() else value.strip()


def unavailable_since(desired: EtcdCluster) -> datetime | None:
    """When the Available condition last turned False (``None``: it is not False)."""
    for c in desired.status.conditions if desired.status is not None else ():
        if c.type == ConditionType.AVAILABLE and c.status == "False":
            return parse_rfc3339(c.lastTransitionTime)
    return None


def automatic(desired: EtcdCluster, observed: Observed) -> tuple[str | None, str | None]:
    """Under ``spec.recovery.quorumLoss: Automatic``: the token of a rebuild to start now, or
    why not yet (for the Available message); ``(None, None)`` when there is nothing to wait for.

    Only when the cluster has been unavailable for ``quorumLostAfterSeconds`` and every member
    that is gone says its data is lost (member-init's or the member's own refusal). A member
    that is only unreachable, or whose node is down, may be serving clients on the other side
    of a partition: rebuilding without it could throw away writes it acknowledged.
    """
    spec = desired.spec.recovery
    etcd, now = observed.etcd, observed.now
    if spec.quorumLoss != QuorumLossPolicy.AUTOMATIC or etcd is None or now is None:
        return None, None
    lost = quorum_loss(etcd)
    if lost is None:
        return None, None
    unproven = [
        member_name(m)
        for m in lost.gone
        if lost_data_evidence(observed.pod(member_name(m))) is None
    ]
    if unproven:
        return None, (
            "quorumLoss: Automatic waits until every gone member says its data is lost; "
            f"{', '.join(unproven)} may only be unreachable"
        )
    since = unavailable_since(desired)
    waited = (now - since).total_seconds() if since is not None else 0.0
    if waited < spec.quorumLostAfterSeconds:
        return None, (
            "quorumLoss: Automatic rebuilds from the survivor in "
            f"{int(spec.quorumLostAfterSeconds - waited)}s"
        )
    return f"automatic-{int(now.timestamp())}", None


def waiting(decided: Decided) -> str | None:
    """Why an Automatic recovery has not started yet, if it waits."""
    found = decided.note(AUTOMATIC_WAIT)
    return found if isinstance(found, str) else None


def parse_key(value: str | None) -> tuple[str, str] | None:
    """``(pod, token)`` of the bootstrap ConfigMap's force-new-cluster value."""
    if not value:
        return None
    pod, _, token = value.partition(":")
    return (pod, token) if pod and token else None


def choose_survivor(desired: EtcdCluster, lost: QuorumLoss) -> EtcdMember | None:
    """The answering member of ours with the highest raft index (the lowest ordinal on a tie):
    it holds every write the cluster committed that any survivor holds."""
    ours = [m for m in lost.alive if ordinal(desired.name, member_name(m)) is not None]
    if not ours:
        return None
    return max(
        ours,
        key=lambda m: (m.raft_index or 0, -(ordinal(desired.name, member_name(m)) or 0)),
    )


def _start(
    desired: EtcdCluster,
    observed: Observed,
    decided: Decided,
    token: str,
) -> StepResult:
    etcd = observed.etcd
    if etcd is None:
        return recovery_backup.start(desired, observed, decided, token)
    lost = quorum_loss(etcd)
    if lost is None:
        return reject(decided, token, "the cluster has its quorum")
    survivor = choose_survivor(desired, lost)
    if survivor is None:
        return reject(decided, token, f"no member of this cluster answers ({lost.message})")
    name = member_name(survivor)
    index = ordinal(desired.name, name)
    ns = desired.namespace
    actions: list[Action] = []
    removed: list[str] = []
    for i in ordinals(desired, observed, etcd):
        if i == index:
            continue
        pod = naming.member_name(desired.name, i)
        removed.append(pod)
        actions += [
            DeletePVC(pvc_name(desired.name, i), ns),
            DeletePod(pod, ns, force=on_lost_node(observed.pod(pod))),
        ]
    now = stamp(observed)
    record = QuorumRecovery(
        token=token,
        phase=QuorumRecoveryPhase.RUNNING,
        member=name,
        memberID=survivor.id_hex,
        raftIndex=survivor.raft_index,
        revisionBefore=survivor.revision,
        removed=removed,
        startedAt=now,
    )
    # The key reaches the ConfigMap through the children step, after these deletions; the
    # survivor's pod is deleted by a later pass, once the others are placed (step 2).
    decided = _running(decided, name, f"{name}:{token}", restart=False)
    decided = dataclasses.replace(
        decided, acted=(*decided.acted, (RECOVERY_RECORD, record), (RECOVERY_TOKEN, token))
    )
    actions.append(
        Event(
            "Warning",
            QUORUM_RECOVERY_STARTED,
            f"quorum lost ({lost.message}); as {RECOVER_QUORUM_ANNOTATION}={token} asks, "
            f"rebuilding from {name} (raft index {survivor.raft_index}, revision "
            f"{survivor.revision}): the volumes of {', '.join(removed) or 'no other member'} "
            f"are deleted and {name} continues alone with --force-new-cluster; writes it had "
            "not received are lost",
        )
    )
    return StepResult(actions=tuple(actions), decided=decided)


def _running(decided: Decided, survivor: str, key: str, *, restart: bool) -> Decided:
    decided = dataclasses.replace(decided, force_new_cluster=key)
    decided = _noted(decided, Recovery(survivor=survivor, restart=restart))
    return with_progress(
        decided,
        Progress(
            RECOVERING_QUORUM,
            f"rebuilding the cluster from member {survivor} after a lost quorum",
        ),
    )


def _noted(decided: Decided, found: Recovery) -> Decided:
    return dataclasses.replace(decided, notes=(*decided.notes, (RECOVERY, found)))


def _others_placed(desired: EtcdCluster, observed: Observed, etcd: EtcdView, survivor: str) -> bool:
    """Every other member's pod exists anew and is placed: on a node, or refused by the
    scheduler (waiting for it would wait for ever)."""
    for i in ordinals(desired, observed, etcd):
        name = naming.member_name(desired.name, i)
        if name == survivor:
            continue
        pod = observed.pod(name)
        if pod is None or pod.terminating or (pod.node is None and pod.unschedulable is None):
            return False
    return True


def _record(desired: EtcdCluster, survivor: str, token: str, observed: Observed) -> QuorumRecovery:
    """The status record of the recovery under way (rebuilt from the key if the pass that
    started it did not get to write it)."""
    last = desired.status.quorumRecovery if desired.status is not None else None
    if last is not None and last.token == token:
        return last
    member = observed.etcd.by_name(survivor) if observed.etcd is not None else None
    return QuorumRecovery(
        token=token,
        phase=QuorumRecoveryPhase.RUNNING,
        member=survivor,
        memberID=member.id_hex if member is not None else "",
        startedAt=stamp(observed),
    )


def _continue(
    desired: EtcdCluster, observed: Observed, decided: Decided, survivor: str, token: str
) -> StepResult:
    record = _record(desired, survivor, token, observed)
    now = stamp(observed)
    etcd = observed.etcd
    pod = observed.pod(survivor)
    if etcd is not None and [member_name(m) for m in etcd.members] == [survivor]:
        member = etcd.members[0]
        if member.leader and member.healthy:
            message = (
                f"rebuilt from member {survivor} ({member.id_hex}): revision "
                f"{record.revisionBefore} before, {member.revision} after; members "
                f"{', '.join(record.removed) or 'none'} removed, to be added back as learners"
            )
            done = record.model_copy(
                update={
                    "phase": QuorumRecoveryPhase.SUCCEEDED,
                    "revisionAfter": member.revision,
                    "completedAt": now,
                    "message": message,
                }
            )
            decided = dataclasses.replace(decided, acted=(*decided.acted, (RECOVERY_RECORD, done)))
            return StepResult(
                actions=(Event("Normal", QUORUM_RECOVERED, message),), decided=decided
            )
    failure = pod.init_failed if pod is not None else None
    if failure is not None and SURGERY_FAILED in failure:
        line = failure.strip().splitlines()[-1]
        failed = record.model_copy(
            update={"phase": QuorumRecoveryPhase.FAILED, "completedAt": now, "message": line}
        )
        decided = dataclasses.replace(decided, acted=(*decided.acted, (RECOVERY_RECORD, failed)))
        return StepResult(
            actions=(
                Event(
                    "Warning",
                    QUORUM_RECOVERY_FAILED,
                    f"could not rebuild from member {survivor}: {line}",
                ),
            ),
            decided=decided,
        )
    listed = etcd.by_name(survivor) if etcd is not None else None
    # The survivor answers with the old membership: its pod has not been through member-init
    # since the key was set.
    restart = (
        etcd is not None
        and len(etcd.members) > 1
        and listed is not None
        and listed.raft_index is not None
        and pod is not None
        and not pod.terminating
        and _others_placed(desired, observed, etcd, survivor)
    )
    decided = _running(decided, survivor, f"{survivor}:{token}", restart=restart)
    if record is not (desired.status.quorumRecovery if desired.status is not None else None):
        decided = dataclasses.replace(decided, acted=(*decided.acted, (RECOVERY_RECORD, record)))
    return StepResult(decided=decided)


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    """The recovery step: start a consented rebuild of a cluster whose quorum is lost, or carry
    the one under way to its end."""
    if not decided.has_formed or decided.hibernating:
        return StepResult(decided=decided)
    if observed.restore_for_recovery is not None:
        return recovery_backup.carry_on(desired, observed, decided, observed.restore_for_recovery)
    under_way = parse_key(observed.force_new_cluster)
    if under_way is None:
        last = desired.status.quorumRecovery if desired.status is not None else None
        if last is not None and last.phase == QuorumRecoveryPhase.RUNNING:
            # The pass that ended it removed the key but did not get to write the record.
            if last.backup is not None:
                return recovery_backup.carry_on(desired, observed, decided, last.token)
            return _continue(desired, observed, decided, last.member or "", last.token)
        token = consent(desired)
        if token is None:
            token, why = automatic(desired, observed)
            if token is None:
                notes = ((AUTOMATIC_WAIT, why),) if why is not None else ()
                return StepResult(
                    decided=dataclasses.replace(decided, notes=(*decided.notes, *notes))
                )
        return _start(desired, observed, decided, token)
    return _continue(desired, observed, decided, *under_way)


def restart_step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    """After the children: delete the survivor's pod when the recovery step asks, so that it
    starts again only once the bootstrap ConfigMap names it."""
    found = pending(decided)
    if found is None or not found.restart:
        return StepResult(decided=decided)
    return StepResult(actions=(DeletePod(found.survivor, desired.namespace),), decided=decided)


def pending(decided: Decided) -> Recovery | None:
    """The recovery this pass carries on, if any."""
    found = decided.note(RECOVERY)
    return found if isinstance(found, Recovery) else None
