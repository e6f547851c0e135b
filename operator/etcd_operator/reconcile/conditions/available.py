"""Available: the cluster has a leader and a healthy quorum of voting members."""

from __future__ import annotations

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import RECOVER_QUORUM_ANNOTATION, EtcdCluster
from etcd_operator.reconcile import hibernation, recovery
from etcd_operator.reconcile.conditions.common import (
    FALSE,
    TRUE,
    Verdict,
    bootstrapping,
    unreachable,
)
from etcd_operator.reconcile.defrag import no_space
from etcd_operator.reconcile.membership import member_name, quorum_loss
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided


def check(
    desired: EtcdCluster, observed: Observed, decided: Decided, settings: OperatorSettings
) -> Verdict:
    if decided.hibernating:
        return Verdict(FALSE, hibernation.HIBERNATED, hibernation.message(decided))
    etcd = observed.etcd
    if etcd is None:
        return unreachable(settings) if decided.has_formed else bootstrapping(desired)
    voters = etcd.voters
    if etcd.leader is None:
        lost = quorum_loss(etcd)
        if lost is not None:
            automatic = recovery.waiting(decided)
            return Verdict(
                FALSE,
                "QuorumLost",
                f"{lost.message}; once the gone members are known to be lost for good, annotate "
                f"the cluster with {RECOVER_QUORUM_ANNOTATION}=<any token> to rebuild it from "
                "the survivor with the highest raft index (docs/operations.md)"
                + (f"; {automatic}" if automatic else ""),
            )
        return Verdict(FALSE, "NoLeader", "no member reports a leader")
    healthy = [m for m in voters if m.healthy]
    quorum = len(voters) // 2 + 1
    alarmed = sorted(member_name(m) for m in voters if m.id in no_space(etcd))
    if len(healthy) < quorum and alarmed:
        # The quorum is there (a leader, reads work): etcd refuses writes, and /health fails
        # on every member, because of the quota.
        return Verdict(
            FALSE,
            "NoSpace",
            f"etcd raised NOSPACE ({', '.join(alarmed)}): it refuses writes, and every member "
            "fails its health check, until space is reclaimed and the alarm disarmed. With "
            "spec.maintenance.defrag or an EtcdDefrag the operator defragments and disarms it; "
            "if the keys themselves fill the quota, delete or compact them, or raise "
            "spec.etcd.quotaBackendBytes",
        )
    if len(healthy) < quorum:
        return Verdict(
            FALSE,
            "QuorumLost",
            f"{len(healthy)} of {len(voters)} voting members healthy, {quorum} needed",
        )
    return Verdict(
        TRUE,
        "QuorumHealthy",
        f"{len(healthy)} of {len(voters)} voting members healthy, "
        f"leader {member_name(etcd.leader)}",
    )
