"""Degraded: something is wrong that the spec does not explain.

In order: a member pod the scheduler cannot place (whatever else is seen, etcd unreachable
included: it is the cause to act on, and would stay hidden behind "waiting for the learner"); a
member whose restore from a backup fails (likewise: etcd runs nowhere meanwhile);
membership changes the engine refuses; a member missing from etcd's list; unhealthy voters; active
alarms. A learner not yet healthy is a member being added, which Progressing reports. A pass
that fails is reported as Degraded (``ReconcileFailed``) by ``status.failed_pass``, not here:
a checker only runs on a pass that got this far.
"""

from __future__ import annotations

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile import hibernation, replacement
from etcd_operator.reconcile.conditions.common import (
    FALSE,
    TRUE,
    Verdict,
    bootstrapping,
    unreachable,
)
from etcd_operator.reconcile.membership import desired_member_names, member_name
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided
from etcd_operator.reconcile.scaling import MEMBERSHIP_NOT_SUPPORTED

# The Degraded reason while a member's restore init container fails (a cluster created from a
# backup): its message says why (a sha256 mismatch, a wrong key, a missing object).
RESTORE_FAILED = "RestoreFailed"
# The Degraded reason while a member pod cannot be scheduled.
MEMBER_UNSCHEDULABLE = "MemberUnschedulable"
# Of each scheduler message, what goes into the condition and the event (an Event's message
# holds 1024 characters; a condition's 32768, whatever the number of members).
SCHEDULER_MESSAGE_LIMIT = 960


def unschedulable_pods(observed: Observed) -> list[str]:
    """One line per member pod the scheduler cannot place, naming it, with the scheduler's
    message; these lines make the Degraded message and the Warning events."""
    return [
        f"pod {p.name} cannot be scheduled: {p.unschedulable[:SCHEDULER_MESSAGE_LIMIT]}"
        for p in sorted(observed.pods, key=lambda p: p.name)
        if p.unschedulable is not None
    ]


def check(
    desired: EtcdCluster, observed: Observed, decided: Decided, settings: OperatorSettings
) -> Verdict:
    if decided.hibernating:
        # Stopped on request: nothing is wrong with it.
        return Verdict(FALSE, hibernation.HIBERNATED, hibernation.message(decided))
    unplaced = unschedulable_pods(observed)
    if unplaced:
        return Verdict(TRUE, MEMBER_UNSCHEDULABLE, "; ".join(unplaced))
    restore = [
        f"member {p.name}: {p.restore_failed}"
        for p in sorted(observed.pods, key=lambda p: p.name)
        if p.restore_failed is not None
    ]
    if restore:
        # The members wait in their restore init container: etcd is not running anywhere.
        return Verdict(
            TRUE, RESTORE_FAILED, "the backup could not be restored: " + "; ".join(restore)
        )
    etcd = observed.etcd
    if etcd is None:
        return unreachable(settings) if decided.has_formed else bootstrapping(desired)
    if not decided.has_formed:
        return bootstrapping(desired)
    if decided.blocked is not None:
        return Verdict(TRUE, MEMBERSHIP_NOT_SUPPORTED, decided.blocked)
    lost = replacement.pending(decided)
    if lost is not None and not lost.acting and lost.old_id is not None:
        return Verdict(
            TRUE,
            replacement.MEMBER_DATA_LOST,
            f"member {lost.member}: {lost.evidence}; {lost.waiting}",
        )
    by_name = {member_name(m): m for m in etcd.members}
    # Desired members beyond the current count are still to be added (scaling, not missing);
    # a gap below it is a member that is gone.
    missing = [n for n in desired_member_names(desired)[: len(etcd.members)] if n not in by_name]
    if missing:
        return Verdict(TRUE, "MemberMissing", "not in etcd's member list: " + ", ".join(missing))
    unhealthy = [
        f"{name} ({m.error})" if m.error else name
        for name, m in sorted(by_name.items())
        if not m.healthy and not m.learner
    ]
    if unhealthy:
        return Verdict(TRUE, "MemberUnhealthy", "unhealthy: " + ", ".join(unhealthy))
    if etcd.alarms:
        return Verdict(TRUE, "AlarmActive", "active alarms: " + ", ".join(etcd.alarms))
    learners = sorted(name for name, m in by_name.items() if m.learner)
    message = f"{len(by_name)} members healthy"
    if learners:
        message = f"{len(etcd.voters)} voting members healthy; learner: {', '.join(learners)}"
    return Verdict(FALSE, "AllMembersHealthy", message)
