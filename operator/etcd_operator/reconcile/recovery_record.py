"""What the two ways of recovering from a lost quorum share (``recovery``: from the survivor,
``recovery_backup``: from the latest backup when none survives): the names of their events and
of what they record, the refusal of a consent, the ordinals a rebuild clears and the record's
clock. Pure."""

from __future__ import annotations

import dataclasses

from etcd_operator.api.times import rfc3339
from etcd_operator.api.v1alpha1 import RECOVER_QUORUM_ANNOTATION, EtcdCluster
from etcd_operator.reconcile.actions import Event
from etcd_operator.reconcile.observed import EtcdView, Observed
from etcd_operator.reconcile.pipeline import Decided, StepResult

# Decided.acted key: the record to write to status.quorumRecovery.
RECOVERY_RECORD = "quorumRecovery"
# Decided.acted key: the consent token acted on or refused (status.recoverQuorumToken).
RECOVERY_TOKEN = "recoverQuorumToken"
RECOVERING_QUORUM = "RecoveringQuorum"
QUORUM_RECOVERY_STARTED = "QuorumRecoveryStarted"
QUORUM_RECOVERED = "QuorumRecovered"
QUORUM_RECOVERY_FAILED = "QuorumRecoveryFailed"
QUORUM_RECOVERY_REJECTED = "QuorumRecoveryRejected"


def stamp(observed: Observed) -> str:
    """When the pass looked (RFC 3339), for the record; empty when the look has no clock."""
    return rfc3339(observed.now) if observed.now is not None else ""


def reject(decided: Decided, token: str, why: str) -> StepResult:
    """Spend ``token`` on a refusal: a consent is for the loss the user saw, never for a later
    one (the annotation stays on the object long after)."""
    decided = dataclasses.replace(decided, acted=(*decided.acted, (RECOVERY_TOKEN, token)))
    return StepResult(
        actions=(
            Event(
                "Warning",
                QUORUM_RECOVERY_REJECTED,
                f"{RECOVER_QUORUM_ANNOTATION}={token} not acted on: {why}; the token is spent, "
                "annotate again with a new one if needed",
            ),
        ),
        decided=decided,
    )


def ordinals(desired: EtcdCluster, observed: Observed, etcd: EtcdView | None) -> list[int]:
    """Every ordinal that may hold a member's pod or volume."""
    count = max(
        desired.spec.replicas,
        len(etcd.members) if etcd is not None else 0,
        observed.statefulset.replicas if observed.statefulset is not None else 0,
        observed.rendered_members or 0,
    )
    return list(range(count))
