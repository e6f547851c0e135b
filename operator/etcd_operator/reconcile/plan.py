"""One reconcile pass as a decision: (desired, observed, settings, now) -> actions. Pure.

``STEPS`` is the pipeline (see ``pipeline``): deletion, restore (a cluster created from a
backup), bootstrap, hibernation, quorum-loss recovery, replacement, scaling, TLS certificates
(issued before the children that mount them), children, the
rollout of a changed pod template, defragmentation, the recovering survivor's restart, volume
cleanup, backups (the schedule, the annotation, retention), the continuous backup's recorder,
the keyspace analysis of the newest backup, each in its own module.
``plan_steps`` runs it (the changes to etcd and Kubernetes, in execution order) and ``report``
turns its decisions into the events of the status transitions and the status itself, always the
last action. A pass that changed something looks at the world again after its steps and reports on
that look, so the status it writes already shows its own steps (a promoted learner, a removed
member); an idle pass reports on what it planned from. The action types live in ``actions`` and the
manifests' fingerprints in ``children``; both are re-exported here for the callers that need the
whole pass.
"""

from __future__ import annotations

from datetime import datetime

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile import (
    auth,
    backups,
    bootstrap,
    children,
    continuous,
    defrag,
    defrag_requests,
    deletion,
    hibernation,
    keyspace,
    recovery,
    replacement,
    restore,
    rollout,
    scaling,
    tls,
    volumes,
)
from etcd_operator.reconcile.actions import (
    Action,
    AddMember,
    Apply,
    DeletePVC,
    Event,
    Manifest,
    MembershipAction,
    MoveLeader,
    PatchStatus,
    PromoteMember,
    RemoveMember,
    SetBootstrapState,
    key_of,
)
from etcd_operator.reconcile.children import desired_children, fingerprint
from etcd_operator.reconcile.events import EVEN_MEMBERS, transitions
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Step, Steps, run
from etcd_operator.reconcile.status import compute_status, status_patch

__all__ = [
    "EVEN_MEMBERS",
    "STEPS",
    "Action",
    "AddMember",
    "Apply",
    "DeletePVC",
    "Event",
    "Manifest",
    "MembershipAction",
    "MoveLeader",
    "PatchStatus",
    "PromoteMember",
    "RemoveMember",
    "SetBootstrapState",
    "Steps",
    "desired_children",
    "fingerprint",
    "key_of",
    "plan",
    "plan_steps",
    "report",
]

STEPS: tuple[Step, ...] = (
    deletion.step,
    auth.guard_step,
    restore.step,
    bootstrap.step,
    hibernation.step,
    recovery.step,
    replacement.step,
    scaling.step,
    tls.step,
    auth.step,
    children.step,
    rollout.step,
    defrag_requests.step,
    defrag.step,
    recovery.restart_step,
    volumes.step,
    backups.step,
    continuous.step,
    keyspace.step,
)
"""The pipeline, in order: their actions run in this order too."""


def plan_steps(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings
) -> Steps | None:
    """What to change in etcd and Kubernetes, in execution order; ``None`` for a cluster being
    deleted (nothing to do, not even a status)."""
    return run(STEPS, desired, observed, settings)


def report(
    desired: EtcdCluster,
    observed: Observed,
    settings: OperatorSettings,
    now: datetime,
    steps: Steps,
) -> list[Action]:
    """The events of the status transitions, then the status (last), for the executed ``steps``
    on ``observed``: the look they were planned from, or one taken after they ran. The pipeline
    runs again on it (``Steps.seen_again``: pure, and cheap next to any I/O), so the status
    shows what comes next, while what only the executed pass knows is kept."""
    decided = steps.seen_again(plan_steps(desired, observed, settings)).decided
    status = compute_status(desired, observed, decided, settings, now)
    events = transitions(desired, observed, desired.status, status, decided)
    return [*events, PatchStatus(status_patch(status))]


def plan(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, now: datetime
) -> list[Action]:
    """The actions of one reconcile pass, in execution order: ``plan_steps``, then ``report``
    on the same observation (so ``PatchStatus`` comes last)."""
    steps = plan_steps(desired, observed, settings)
    if steps is None:
        return []
    return [*steps.actions, *report(desired, observed, settings, now, steps)]
