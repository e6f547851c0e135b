"""The hibernation step: ``replicas: 0`` stops every member and keeps what they come back with.
Pure.

Hibernating is not scaling in: no member is removed from etcd and no volume claim is deleted.
The StatefulSet goes to zero pods while the bootstrap ConfigMap (and the PodDisruptionBudget)
keep the membership the operator last rendered, its memory of the cluster while no member
answers. Every step that would read "no member answers" as a failure stands aside while the
cluster hibernates: replacement, quorum-loss recovery, scaling, the rollout and scheduled
backups (``Decided.hibernating``). A changed template is still applied, so the members come
back on it.

Back to N: the StatefulSet returns to the membership last rendered (``scaling.last_rendered``,
the ConfigMap's count), the members restart on their volumes under their member IDs and elect a
leader, and only then does the scaling step move the membership to N if N differs.

A cluster that never had a member rendered has nothing to keep: it creates nothing until
``replicas`` is set. A hibernation asked for during a quorum-loss recovery waits for the
recovery to end (its survivor is named in the ConfigMap and must start once more).
"""

from __future__ import annotations

import dataclasses

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress

HIBERNATED = "Hibernated"
HIBERNATING = "Hibernating"


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    if desired.spec.replicas > 0:
        return StepResult(decided=decided)
    kept = observed.rendered_members
    if kept is None:
        never = Progress(
            HIBERNATED,
            "spec.replicas is 0 and no member was ever started: set it to create the cluster",
            active=False,
        )
        return StepResult(
            decided=dataclasses.replace(decided, hibernating=True, progress=(never,)), stop=True
        )
    if observed.force_new_cluster is not None or observed.restore_for_recovery is not None:
        return StepResult(
            decided=with_progress(
                decided,
                Progress(
                    HIBERNATING,
                    "hibernation waits for the quorum-loss recovery under way to end",
                ),
            )
        )
    decided = dataclasses.replace(decided, hibernating=True, replicas=kept)
    running = [p.name for p in observed.pods]
    if running:
        report = Progress(
            HIBERNATING,
            f"stopping {len(running)} member(s) ({', '.join(sorted(running))}); their volumes "
            "and member IDs are kept",
        )
    else:
        report = Progress(
            HIBERNATED,
            f"spec.replicas is 0: the {kept} member(s) are stopped, their volumes and member "
            "IDs kept; set spec.replicas to resume",
            active=False,
        )
    # The bootstrap step's report (Creating, for a cluster hibernated before it formed) is
    # replaced: nothing is being created now.
    return StepResult(decided=dataclasses.replace(decided, progress=(report,)))


def message(decided: Decided) -> str:
    """What Available and Degraded say while the cluster hibernates."""
    for progress in decided.progress:
        if progress.reason in (HIBERNATED, HIBERNATING):
            return progress.message
    return "spec.replicas is 0: the members are stopped, their volumes and member IDs kept"
