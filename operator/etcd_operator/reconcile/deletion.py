"""The first step: a cluster being deleted gets nothing, not even a status. Pure.

Owner references let the garbage collector delete the children; there is nothing to finalize,
so the operator puts no finalizer on clusters and has nothing to do once deletion started.
"""

from __future__ import annotations

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided, StepResult


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    return StepResult(silent=bool(desired.metadata.get("deletionTimestamp")))
