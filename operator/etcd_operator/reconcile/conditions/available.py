"""Available: the cluster has a leader and a healthy quorum of voting members."""

from __future__ import annotations

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile.conditions.common import (
    FALSE,
    TRUE,
    Verdict,
    bootstrapping,
    unreachable,
)
from etcd_operator.reconcile.membership import member_name
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided


def check(
    desired: EtcdCluster, observed: Observed, decided: Decided, settings: OperatorSettings
) -> Verdict:
    etcd = observed.etcd
    if etcd is None:
        return unreachable(settings) if decided.has_formed else bootstrapping(desired)
    voters = etcd.voters
    if etcd.leader is None:
        # A member that answers its own status is alive, leader or not; a majority of voters
        # that does not answer is a lost quorum, which no election can mend.
        alive = [m for m in voters if m.healthy or m.raft_index is not None]
        quorum = len(voters) // 2 + 1
        if len(alive) < quorum:
            gone = sorted(member_name(m) for m in voters if m not in alive)
            survive = ", ".join(f"{member_name(m)} (raft index {m.raft_index})" for m in alive)
            return Verdict(
                FALSE,
                "QuorumLost",
                f"{len(alive)} of {len(voters)} voting members answer, {quorum} needed: "
                f"gone {', '.join(gone)}; surviving {survive or 'none'}",
            )
        return Verdict(FALSE, "NoLeader", "no member reports a leader")
    healthy = [m for m in voters if m.healthy]
    quorum = len(voters) // 2 + 1
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
