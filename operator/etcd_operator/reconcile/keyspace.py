"""The keyspace analysis step: hand a due analysis to the runtime, and ``status.keyspace``. Pure.

With ``spec.analysis``, a pass asks the runtime for an analysis (``AnalyzeKeyspace``) when one is
due (``keyspace_requests.due``: the annotation, the schedule, a retry), or while the status
shows one running (the runtime ends it as interrupted when it runs none: the operator
restarted). The runtime runs it outside the pass, so an analysis never holds up reconciling or
backups, and writes the run's record itself (``keyspace_record``), under the cluster's lock.

With ``spec.analysis.writes``, a pass also asks for a write sample (``SampleWrites``) when a
window is due (``write_sample.due``); the runtime records ``status.keyspace.writes`` itself.

The pass writes ``status.keyspace`` as it read it (under the same lock, so nothing the runtime
wrote meanwhile is lost), with the schedule's next slot; without ``spec.analysis`` it clears it,
and with it the keyspace metrics go.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from etcd_operator.api.analysis import ANALYZE_ANNOTATION, KeyspaceStatus
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import parse_rfc3339, rfc3339
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.reconcile import write_sample
from etcd_operator.reconcile.actions import Action, AnalyzeKeyspace, SampleWrites
from etcd_operator.reconcile.keyspace_record import running
from etcd_operator.reconcile.keyspace_requests import AnalysisRequest, due, upcoming
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided, StepResult

# Decided.notes key: the schedule's next slot, for the status.
NEXT = "keyspace-next"


def previous_status(desired: EtcdCluster) -> KeyspaceStatus | None:
    return desired.status.keyspace if desired.status is not None else None


def requested(desired: EtcdCluster, now: datetime) -> AnalysisRequest | None:
    """The analysis ``desired`` asks for at ``now`` (also what the runtime asks again)."""
    spec = desired.spec.analysis
    if spec is None:
        return None
    annotations = desired.metadata.get("annotations") or {}
    return due(
        spec,
        previous_status(desired),
        annotations.get(ANALYZE_ANNOTATION),
        now,
        since=parse_rfc3339(desired.metadata.get("creationTimestamp")),
    )


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    spec, now = desired.spec.analysis, observed.now
    if spec is None or now is None:
        return StepResult()
    previous = previous_status(desired)
    actions: tuple[Action, ...] = ()
    uid = str(desired.metadata.get("uid") or desired.name)
    if requested(desired, now) is not None or running(previous):
        actions = (AnalyzeKeyspace(desired.namespace, desired.name, uid),)
    if spec.writes is not None and write_sample.due(
        spec.writes, previous.writes if previous is not None else None, now
    ):
        actions = (*actions, SampleWrites(desired.namespace, desired.name, uid))
    decided = dataclasses.replace(
        decided, notes=(*decided.notes, (NEXT, upcoming(spec, previous, now)))
    )
    return StepResult(actions=actions, decided=decided)


def keyspace_status(desired: EtcdCluster, decided: Decided) -> KeyspaceStatus | None:
    """``status.keyspace`` for this pass: as read, with the next slot; ``None`` without
    ``spec.analysis``."""
    if desired.spec.analysis is None:
        return None
    upcoming_slot = decided.note(NEXT)
    previous = previous_status(desired) or KeyspaceStatus()
    status = previous.model_copy(
        update={
            "nextScheduledTime": (
                rfc3339(upcoming_slot) if isinstance(upcoming_slot, datetime) else None
            ),
            # Sampling turned off: its last window goes with it.
            "writes": previous.writes if desired.spec.analysis.writes is not None else None,
        }
    )
    return status if status.model_dump(exclude_none=True) else None
