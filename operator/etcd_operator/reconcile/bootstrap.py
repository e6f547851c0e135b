"""The bootstrap step: has the cluster formed, and which initial-cluster-state members get. Pure.

A new cluster's members start with ``new``; once every desired member is listed in etcd and
healthy, the bootstrap ConfigMap switches to ``existing`` for good (``next_state`` never goes
back, see ``components.bootstrap``), so that every member started later joins instead of
bootstrapping a second cluster. Until then the cluster is Creating.
"""

from __future__ import annotations

import dataclasses

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components import naming
from etcd_operator.components.bootstrap import BootstrapState, next_state
from etcd_operator.reconcile.membership import formed
from etcd_operator.reconcile.observed import ChildKey, Observed
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress

CREATING = "Creating"


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    state = next_state(observed.bootstrap_state, formed=formed(desired, observed.etcd))
    configmap = ChildKey("ConfigMap", naming.bootstrap_configmap_name(desired.name))
    decided = dataclasses.replace(
        decided,
        bootstrap=state,
        has_formed=state == BootstrapState.EXISTING,
        # The switch of a live ConfigMap; a missing one is simply applied with the new state.
        flipped=state == BootstrapState.EXISTING
        and configmap in observed.children
        and observed.bootstrap_state != BootstrapState.EXISTING,
    )
    if not decided.has_formed:
        decided = with_progress(
            decided, Progress(CREATING, f"creating {desired.spec.replicas} members")
        )
    return StepResult(decided=decided)
