"""Progressing: the operator is moving the cluster towards its spec.

In order: a membership change the engine refuses (False: nothing will progress until the spec
changes); the first step with work under way (creating, scaling, a rollout waiting for its slot);
a changed StatefulSet applied by this pass; members still rolling to the current template;
else Reconciled.
"""

from __future__ import annotations

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile.conditions.common import FALSE, TRUE, Verdict
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided
from etcd_operator.reconcile.scaling import MEMBERSHIP_NOT_SUPPORTED

SPEC_CHANGED = "SpecChanged"


def check(
    desired: EtcdCluster, observed: Observed, decided: Decided, settings: OperatorSettings
) -> Verdict:
    if decided.blocked is not None:
        return Verdict(FALSE, MEMBERSHIP_NOT_SUPPORTED, decided.blocked)
    if decided.progress:
        first = decided.progress[0]
        return Verdict(TRUE if first.active else FALSE, first.reason, first.message)
    if any(key.kind == "StatefulSet" for key in decided.updated):
        return Verdict(TRUE, SPEC_CHANGED, "applying the changed spec to the members")
    sts = observed.statefulset
    if sts is not None and sts.rolling:
        return Verdict(
            TRUE,
            "RollingUpdate",
            f"{sts.updated_replicas} of {sts.replicas} members run the current template",
        )
    return Verdict(FALSE, "Reconciled", "the members match the spec")
