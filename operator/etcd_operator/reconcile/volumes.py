"""The volume step, after the children are applied: delete the claims of removed members. Pure.

The StatefulSet keeps the claims of the pods it scales away (``whenScaled: Retain``), and a later
scale-out into that ordinal would start on the data dir of a member etcd has removed. The scaling
step finds those claims (``ScalePlan.deletes``); this step deletes them once the children are
applied, so a claim never goes before the StatefulSet has stopped covering its ordinal.
"""

from __future__ import annotations

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided, StepResult
from etcd_operator.reconcile.scaling import SCALE_NOTE, ScalePlan


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    """The deletions the scale plan found, with their events."""
    scale = decided.note(SCALE_NOTE)
    if not isinstance(scale, ScalePlan):
        return StepResult()
    return StepResult(actions=(*scale.deletes, *scale.delete_events))
