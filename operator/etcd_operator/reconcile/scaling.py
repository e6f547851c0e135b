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
  no replica change, and no step but the promotion of a ready learner (one the replacement step
  added into a gap). Replacing members is a different operation.
"""

from __future__ import annotations

import dataclasses

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile import replacement
from etcd_operator.reconcile.membership import MEMBERSHIP_NOT_SUPPORTED, membership_latched
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress
from etcd_operator.reconcile.scaling_rules import (
    SCALING_IN,
    SCALING_OUT,
    ScalePlan,
    decide,
    last_rendered,
)

__all__ = [
    "MEMBERSHIP_NOT_SUPPORTED",
    "SCALE_NOTE",
    "SCALING_IN",
    "SCALING_OUT",
    "ScalePlan",
    "decide",
    "membership_latched",
    "step",
]

SCALE_NOTE = "scaling"


def under_way(decided: Decided) -> bool:
    """The scaling step changes the membership in this pass, or waits to."""
    scale = decided.note(SCALE_NOTE)
    return isinstance(scale, ScalePlan) and (scale.reason is not None or bool(scale.steps))


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    """The scaling step: once the cluster has formed, its next membership change (and its
    events) and the member count the children are rendered with."""
    blocked = observed.membership_unsupported is not None or membership_latched(desired)
    decided = dataclasses.replace(decided, membership_blocked=blocked)
    if not decided.has_formed or decided.hibernating:
        # (Hibernation keeps the membership as it is: the hibernation step set the count.)
        return StepResult(decided=decided)
    replacing = replacement.pending(decided)
    if decided.recovering:
        # A quorum-loss recovery is under way: the membership is the recovery's until it ends.
        return StepResult(
            decided=dataclasses.replace(decided, replicas=last_rendered(desired, observed))
        )
    if replacing is not None and replacing.acting:
        # The replacement step changes the membership in this pass; the member count stays.
        return StepResult(
            decided=dataclasses.replace(decided, replicas=last_rendered(desired, observed))
        )
    scale = decide(desired, observed, settings, blocked=blocked)
    decided = dataclasses.replace(
        decided,
        replicas=scale.replicas,
        blocked=scale.blocked,
        notes=(*decided.notes, (SCALE_NOTE, scale)),
    )
    if scale.reason is not None and scale.blocked is None:
        decided = with_progress(decided, Progress(scale.reason, scale.message))
    return StepResult(actions=(*scale.steps, *scale.events), decided=decided)
