"""One reconcile pass as a decision: (desired, observed, settings, now) -> actions. Pure.

The pass is a sequence of small steps in the style of etcd-druid: decide the bootstrap state,
decide the next membership step of a formed cluster whose replicas change (``scaling``: one
member at a time, etcd's member list as the truth), decide which children to apply (rendered
with the members etcd lists), compute the status, derive events from the transitions between
the previous status and the new one, and write the status last. The handlers execute the
actions in order; running ``plan`` again on the world those actions produce yields no ``Apply``:
the pass is idempotent, which is what lets it run on every event and periodically. The action
types live in ``actions`` and are re-exported here.

``plan`` is two halves the handlers also use apart: ``plan_steps`` (the changes to etcd and
Kubernetes) and ``report`` (the status and the events of its transitions). A pass that changed
something looks at the world again after its steps and reports on that look, so the status it
writes already shows its own steps (a promoted learner, a removed member); an idle pass reports
on what it planned from.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import (
    Condition,
    ConditionType,
    EtcdCluster,
    EtcdClusterStatus,
)
from etcd_operator.components import naming
from etcd_operator.components.bootstrap import BootstrapState, next_state
from etcd_operator.components.children import children
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
from etcd_operator.reconcile.observed import FINGERPRINT_ANNOTATION, ChildKey, Observed
from etcd_operator.reconcile.scaling import ScalePlan, decide
from etcd_operator.reconcile.status import (
    FALSE,
    MEMBER_UNSCHEDULABLE,
    TRUE,
    UNKNOWN,
    compute_status,
    formed,
    status_patch,
    unschedulable_pods,
)

__all__ = [
    "Action",
    "AddMember",
    "Apply",
    "DeletePVC",
    "Event",
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

# The Degraded reason of a cluster whose engine cannot change its membership yet.
MEMBERSHIP_NOT_SUPPORTED = "MembershipNotSupported"

EVEN_MEMBERS = "an even number of members tolerates no more failures than one fewer"


def fingerprint(manifest: Manifest) -> str:
    """A stable hash of a manifest without its own fingerprint annotation."""
    body = copy.deepcopy(manifest)
    annotations = body.get("metadata", {}).get("annotations") or {}
    annotations.pop(FINGERPRINT_ANNOTATION, None)
    if not annotations:
        body.get("metadata", {}).pop("annotations", None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def with_fingerprint(manifest: Manifest) -> Manifest:
    out = copy.deepcopy(manifest)
    out["metadata"].setdefault("annotations", {})[FINGERPRINT_ANNOTATION] = fingerprint(manifest)
    return out


def desired_children(
    desired: EtcdCluster,
    settings: OperatorSettings,
    state: BootstrapState,
    *,
    replicas: int | None = None,
) -> list[Manifest]:
    """The manifests to apply, in apply order, each annotated with its fingerprint;
    ``replicas`` overrides ``spec.replicas`` (the members etcd lists, while scaling)."""
    return [with_fingerprint(m) for m in children(desired, settings, state, replicas=replicas)]


def _conditions(status: EtcdClusterStatus | None) -> dict[str, Condition]:
    return {c.type: c for c in status.conditions} if status is not None else {}


def _events(
    desired: EtcdCluster,
    observed: Observed,
    old: EtcdClusterStatus | None,
    new: EtcdClusterStatus,
    *,
    creating: bool,
    flipped: bool,
    updated: tuple[ChildKey, ...],
) -> list[Event]:
    events: list[Event] = []
    spec = desired.spec
    if creating:
        events.append(
            Event("Normal", "Creating", f"creating {spec.replicas} members running {spec.version}")
        )
    generation = desired.metadata.get("generation")
    if spec.replicas % 2 == 0 and (old is None or old.observedGeneration != generation):
        events.append(Event("Warning", "EvenMembers", f"{spec.replicas} members: {EVEN_MEMBERS}"))
    events.extend(
        Event("Normal", "Updated", f"applied the changed {key.kind} {key.name}") for key in updated
    )
    if flipped:
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

    before_c, after_c = _conditions(old), _conditions(new)
    available, was_available = (
        after_c[ConditionType.AVAILABLE],
        before_c.get(ConditionType.AVAILABLE),
    )
    if available.status == TRUE and (was_available is None or was_available.status != TRUE):
        events.append(Event("Normal", "Available", available.message))
    elif available.status != TRUE and was_available is not None and was_available.status == TRUE:
        events.append(Event("Warning", "Unavailable", f"{available.reason}: {available.message}"))
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


def membership_latched(desired: EtcdCluster) -> bool:
    """The last pass of this generation found that the engine cannot change membership.

    Not retried until the spec changes (a new generation, e.g. a new engine version): retrying
    every pass would only repeat the same refusal.
    """
    status = desired.status
    generation = desired.metadata.get("generation")
    if status is None or generation is None:
        return False
    # Progressing says it too (False), and keeps saying it when Degraded names another cause
    # (a member that cannot be scheduled).
    return any(
        c.type in (ConditionType.DEGRADED, ConditionType.PROGRESSING)
        and c.reason == MEMBERSHIP_NOT_SUPPORTED
        and c.observedGeneration == int(generation)
        for c in status.conditions
    )


@dataclass(frozen=True)
class Steps:
    """The changes one pass makes, and what its report needs to know about them.

    ``actions``: membership changes, children, claim deletions, and the events of those
    steps, in execution order. ``has_formed``: the cluster formed at some point (the bootstrap
    state is ``existing`` once ``actions`` ran). ``blocked``: membership changes are not to be
    asked for (etcd refused them as "not capable", in this pass or this generation).
    ``creating``: no child existed. ``flipped``: the pass switches the bootstrap state to
    ``existing``. ``updated``: existing children that the pass applies anew.
    """

    actions: tuple[Action, ...]
    has_formed: bool
    blocked: bool
    creating: bool
    flipped: bool
    updated: tuple[ChildKey, ...]

    @property
    def acted(self) -> bool:
        """The steps change etcd or Kubernetes (more than posting events)."""
        return any(not isinstance(a, Event) for a in self.actions)


def _scale(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, steps: Steps
) -> ScalePlan | None:
    if not steps.has_formed:
        return None
    return decide(desired, observed, settings, blocked=steps.blocked)


def plan_steps(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings
) -> Steps | None:
    """Steps 1 to 3 of a pass: what to change in etcd and Kubernetes, in execution order;
    ``None`` for a cluster being deleted (owner references let the garbage collector delete
    the children: nothing to do, not even a status).

    Order: etcd membership changes first (each followed by its event), then the children, then
    the deletion of removed members' volume claims. The executor stops at the first failure, so
    no Kubernetes write of a pass ever runs ahead of the membership change it depends on.
    """
    if desired.metadata.get("deletionTimestamp"):
        return None

    # Step 1: formation and the bootstrap state (monotonic: never back to "new").
    formed_now = formed(desired, observed.etcd)
    state = next_state(observed.bootstrap_state, formed=formed_now)
    has_formed = state == BootstrapState.EXISTING
    bootstrap_key = ChildKey("ConfigMap", naming.bootstrap_configmap_name(desired.name))

    # Step 2: once formed, replica changes go through etcd's membership, one member at a time;
    # the children follow the members etcd lists (see scaling.py).
    blocked = observed.membership_unsupported is not None or membership_latched(desired)
    scale = decide(desired, observed, settings, blocked=blocked) if has_formed else None
    actions: list[Action] = []
    if scale is not None:
        actions.extend(scale.steps)
        actions.extend(scale.events)

    # Step 3: the children whose fingerprint differs from what we applied last.
    updated: list[ChildKey] = []
    flipped = False
    replicas = scale.replicas if scale is not None else None
    for manifest in desired_children(desired, settings, state, replicas=replicas):
        key = key_of(manifest)
        exists = key in observed.children
        wanted = manifest["metadata"]["annotations"][FINGERPRINT_ANNOTATION]
        if (
            key == bootstrap_key
            and exists
            and state == BootstrapState.EXISTING
            and observed.bootstrap_state != BootstrapState.EXISTING
        ):
            actions.append(SetBootstrapState(state, manifest))
            flipped = True
        elif not exists or observed.children[key] != wanted:
            actions.append(Apply(manifest))
            if exists:
                updated.append(key)
    if scale is not None:
        actions.extend(scale.deletes)
        actions.extend(scale.delete_events)
    return Steps(
        actions=tuple(actions),
        has_formed=has_formed,
        blocked=blocked,
        creating=not observed.children,
        flipped=flipped,
        updated=tuple(updated),
    )


def report(
    desired: EtcdCluster,
    observed: Observed,
    settings: OperatorSettings,
    now: datetime,
    steps: Steps,
) -> list[Action]:
    """Step 4 of a pass: the events of the status transitions, then the status (last).

    ``observed`` is what ``steps`` were planned from, or a look at the world taken after they
    ran: the status then shows their outcome (the membership etcd now lists, the scaling step
    that comes next), and the events are the transitions from the previous status to the
    status written, so none is reported twice or lost. What only the pass knows (it created,
    formed, applied a changed StatefulSet) comes from ``steps``.
    """
    scale = _scale(desired, observed, settings, steps)
    status = compute_status(
        desired,
        observed,
        now,
        has_formed=steps.has_formed,
        applying_spec=any(k.kind == "StatefulSet" for k in steps.updated),
        timeout_seconds=settings.etcd_timeout_seconds,
        scaling=(scale.reason, scale.message) if scale is not None and scale.reason else None,
        blocked=scale.blocked if scale is not None else None,
    )
    events = _events(
        desired,
        observed,
        desired.status,
        status,
        creating=steps.creating,
        flipped=steps.flipped,
        updated=steps.updated,
    )
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
