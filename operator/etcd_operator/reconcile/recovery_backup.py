"""Rebuilding a cluster that lost every member, from its latest backup, with consent. Pure.

The other half of ``recovery``: when no member answers at all there is no survivor to continue
from, and what is left is the cluster's newest Succeeded EtcdBackup. Everything written after it
is lost, which the user accepts by consenting (``etcd.pyetcd.io/recover-quorum=<token>``; never
automatic, whatever ``spec.recovery.quorumLoss`` says).

**Guardrails.** No member answers (no etcd view), and no member pod is Ready (the kubelet says
so independently of the operator's network: a Ready member means the operator may only be cut
off from a working cluster). The backup resolves as for a new cluster (``restore.resolve``: it
Succeeded, it says where it is, its key is known when it is encrypted).

**Steps**, each derived from what is observed (the bootstrap ConfigMap's
``restore-for-recovery`` key is the operation's durable state), so that a pass that stopped
between any two is finished by the next:

1. Start: record the backup in ``status.restoredFrom`` (the members' ``restore`` init container
   is rendered from it), set the key to the token, and record the rebuild as Running. Nothing
   is deleted yet: a member pod that started before the key was in place would skip its
   restore and wait, empty, for peers that never come.
2. Once the key is live: delete every member's volume claim and pod. The StatefulSet makes them
   anew; each one's ``restore`` init container sees the key and its empty data dir and restores
   the backup with the cluster's own initial cluster and token (revisions bumped and marked
   compacted, so that clients that cached a revision never see one go backwards), and the
   members form the cluster again (``initial-cluster-state`` stays ``existing``: the restored
   data dirs hold their WALs).
3. Done when etcd lists every member, healthy, with a leader: the key is removed and the record
   says Succeeded with the backup's revision and the rebuilt cluster's.
"""

from __future__ import annotations

import dataclasses

from etcd_operator.api.backup import RestoreSource
from etcd_operator.api.v1alpha1 import (
    RECOVER_QUORUM_ANNOTATION,
    EtcdCluster,
    QuorumRecovery,
    QuorumRecoveryPhase,
    RestoredFrom,
)
from etcd_operator.components import naming
from etcd_operator.reconcile.actions import Action, DeletePod, DeletePVC, Event
from etcd_operator.reconcile.membership import member_name, pvc_name
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress
from etcd_operator.reconcile.recovery_record import (
    QUORUM_RECOVERED,
    QUORUM_RECOVERY_STARTED,
    RECOVERING_QUORUM,
    RECOVERY_RECORD,
    RECOVERY_TOKEN,
    ordinals,
    reject,
    stamp,
)
from etcd_operator.reconcile.replacement import on_lost_node
from etcd_operator.reconcile.restore import RESTORE, resolve


def _source(desired: EtcdCluster, observed: Observed) -> RestoredFrom | str:
    """The newest Succeeded backup as the members restore it, or why there is none."""
    latest = observed.latest_backup
    if latest is None:
        return "the cluster has no Succeeded EtcdBackup to rebuild from (spec.backup)"
    return resolve(desired, RestoreSource(name=latest.name), latest)


def _running(decided: Decided, token: str, source: RestoredFrom) -> Decided:
    decided = dataclasses.replace(
        decided,
        restore_for_recovery=token,
        # Supersedes the restore step's note: the members render this backup from now on.
        notes=(*decided.notes, (RESTORE, source)),
    )
    return with_progress(
        decided,
        Progress(
            RECOVERING_QUORUM,
            f"rebuilding every member from the backup {source.backup or source.location}",
        ),
    )


def start(desired: EtcdCluster, observed: Observed, decided: Decided, token: str) -> StepResult:
    """Step 1, when no member answers."""
    ready = sorted(p.name for p in observed.pods if p.ready)
    if ready:
        return reject(
            decided,
            token,
            f"no member answers the operator, yet the pods {', '.join(ready)} are Ready: the "
            "operator may only be cut off from a working cluster",
        )
    source = _source(desired, observed)
    if isinstance(source, str):
        return reject(decided, token, f"no member answers, and {source}")
    latest = observed.latest_backup
    assert latest is not None and latest.status is not None  # resolved above
    record = QuorumRecovery(
        token=token,
        phase=QuorumRecoveryPhase.RUNNING,
        backup=latest.name,
        revisionBefore=latest.status.revision,
        startedAt=stamp(observed),
    )
    decided = _running(decided, token, source)
    decided = dataclasses.replace(
        decided,
        acted=(
            *decided.acted,
            (RESTORE, source),
            (RECOVERY_RECORD, record),
            (RECOVERY_TOKEN, token),
        ),
    )
    event = Event(
        "Warning",
        QUORUM_RECOVERY_STARTED,
        f"no member answers; as {RECOVER_QUORUM_ANNOTATION}={token} asks, rebuilding every "
        f"member from the EtcdBackup {latest.name} (revision {latest.status.revision}): "
        "every write after it is lost",
    )
    return StepResult(actions=(event,), decided=decided)


def _record(desired: EtcdCluster, observed: Observed, token: str) -> QuorumRecovery:
    last = desired.status.quorumRecovery if desired.status is not None else None
    if last is not None and last.token == token:
        return last
    # The pass that started it set the key but did not get to write its record.
    restored = desired.status.restoredFrom if desired.status is not None else None
    return QuorumRecovery(
        token=token,
        phase=QuorumRecoveryPhase.RUNNING,
        backup=restored.backup if restored is not None else None,
        startedAt=stamp(observed),
    )


def carry_on(desired: EtcdCluster, observed: Observed, decided: Decided, token: str) -> StepResult:
    """Steps 2 and 3 of the rebuild ``token``."""
    record = _record(desired, observed, token)
    restored = desired.status.restoredFrom if desired.status is not None else None
    source = restored if restored is not None else _source(desired, observed)
    if isinstance(source, str):
        # Step 1's record was lost with a pass that stopped, and the backup cannot be found
        # again: say so, and keep the key (nothing has been deleted yet).
        waiting = Progress(RECOVERING_QUORUM, f"rebuilding from a backup: {source}", active=False)
        return StepResult(
            decided=with_progress(dataclasses.replace(decided, restore_for_recovery=token), waiting)
        )
    acted: list[tuple[str, object]] = []
    if restored is None:
        acted.append((RESTORE, source))
    etcd = observed.etcd
    names = [naming.member_name(desired.name, i) for i in ordinals(desired, observed, etcd)]
    now = stamp(observed)
    if record.removed and etcd is not None and etcd.leader is not None:
        listed = {member_name(m): m for m in etcd.members}
        if sorted(listed) == sorted(names) and all(m.healthy for m in listed.values()):
            revision = etcd.leader.revision
            message = (
                f"rebuilt every member from the EtcdBackup {record.backup}: revision "
                f"{record.revisionBefore} in the backup, {revision} after (bumped)"
            )
            done = record.model_copy(
                update={
                    "phase": QuorumRecoveryPhase.SUCCEEDED,
                    "revisionAfter": revision,
                    "completedAt": now,
                    "message": message,
                }
            )
            acted.append((RECOVERY_RECORD, done))
            return StepResult(
                actions=(Event("Normal", QUORUM_RECOVERED, message),),
                decided=dataclasses.replace(decided, acted=(*decided.acted, *acted)),
            )
    decided = _running(decided, token, source)
    actions: list[Action] = []
    if not record.removed and observed.restore_for_recovery == token:
        # Step 2: the key is live, so every new pod restores.
        ns = desired.namespace
        for i, name in enumerate(names):
            actions += [
                DeletePVC(pvc_name(desired.name, i), ns),
                DeletePod(name, ns, force=on_lost_node(observed.pod(name))),
            ]
        record = record.model_copy(update={"removed": names})
    last = desired.status.quorumRecovery if desired.status is not None else None
    if record != last:
        acted.append((RECOVERY_RECORD, record))
    return StepResult(
        actions=tuple(actions),
        decided=dataclasses.replace(decided, acted=(*decided.acted, *acted)),
    )
