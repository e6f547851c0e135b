"""The backup step: create the EtcdBackups the schedule and the annotation ask for, delete what
retention lets go. Pure; the runtime's ``BackupRunner`` runs each backup object it creates.

Triggers (see ``backup_requests`` for the names that make them exactly-once):

- the annotation ``etcd.pyetcd.io/backup``: a value not acted on before asks for one backup;
- the schedule: the slot ``backup_schedule.decide`` says is due (one catch-up backup however
  many slots passed), counting only slots after the cluster was created.

Both wait until the cluster has formed (a backup of members that have not started could only
fail); the request stays pending meanwhile. What this pass acted on (the annotation's value, the
slot) goes into ``Decided.acted``, so that the status records it even though the report looks at
the world again: from then on the same value or slot asks for nothing.

Retention (``retention.to_delete``) applies to the backups the operator made (labelled with
their trigger), never to an EtcdBackup a user created by hand; those carry deletionPolicy
Delete, so that deleting the object frees the storage too. Deleting the cluster deletes no
backup: they are not owned by it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from etcd_operator.api.backup import BackupSpec, DeletionPolicy
from etcd_operator.api.etcdbackup import KIND as BACKUP_KIND
from etcd_operator.api.schedule import ScheduleError, parse_schedule
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import parse_rfc3339, rfc3339
from etcd_operator.api.v1alpha1 import API_VERSION, ClusterBackupStatus, EtcdCluster
from etcd_operator.components.naming import LABEL_CLUSTER
from etcd_operator.reconcile.actions import Action, CreateBackup, DeleteOperation, Event, Manifest
from etcd_operator.reconcile.backup_requests import (
    BACKUP_ANNOTATION,
    SCHEDULED_FOR_ANNOTATION,
    TRIGGER_ANNOTATION,
    TRIGGER_LABEL,
    TRIGGER_SCHEDULE,
    on_demand_request,
    scheduled_backup_name,
)
from etcd_operator.reconcile.backup_schedule import decide
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.pipeline import Decided, StepResult
from etcd_operator.reconcile.retention import to_delete

ACTED = "backups"
NEXT = "backups-next"


@dataclass(frozen=True)
class BackupsActed:
    """What the step created in this pass: the annotation value and the schedule slot."""

    request: str | None = None
    slot: datetime | None = None


def previous_status(desired: EtcdCluster) -> ClusterBackupStatus:
    status = desired.status.backup if desired.status is not None else None
    return status or ClusterBackupStatus()


def created_at(desired: EtcdCluster) -> datetime | None:
    return parse_rfc3339(desired.metadata.get("creationTimestamp"))


def backup_manifest(
    desired: EtcdCluster, name: str, trigger: str, slot: datetime | None = None
) -> Manifest:
    """An EtcdBackup the operator creates for ``desired``; its store is the cluster's."""
    annotations = {SCHEDULED_FOR_ANNOTATION: rfc3339(slot)} if slot is not None else {}
    return {
        "apiVersion": API_VERSION,
        "kind": "EtcdBackup",
        "metadata": {
            "name": name,
            "namespace": desired.namespace,
            "labels": {LABEL_CLUSTER: desired.name, TRIGGER_LABEL: trigger},
            "annotations": annotations,
        },
        "spec": {"clusterName": desired.name, "deletionPolicy": str(DeletionPolicy.DELETE)},
    }


def _requested(desired: EtcdCluster, previous: ClusterBackupStatus) -> list[Action]:
    annotations = desired.metadata.get("annotations") or {}
    request = on_demand_request(
        desired.name, annotations.get(BACKUP_ANNOTATION), previous.lastRequest
    )
    if request is None:
        return []
    return [
        CreateBackup(backup_manifest(desired, request.name, TRIGGER_ANNOTATION)),
        Event(
            "Normal",
            "BackupRequested",
            f"{BACKUP_ANNOTATION}={request.value!r}: created EtcdBackup {request.name}",
        ),
    ]


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    spec: BackupSpec | None = desired.spec.backup
    now = observed.now
    if spec is None or now is None:
        return StepResult()
    previous = previous_status(desired)
    actions: list[Action] = []
    acted = BackupsActed()
    next_slot: datetime | None = None
    if decided.has_formed:
        actions += _requested(desired, previous)
        if actions:
            annotations = desired.metadata.get("annotations") or {}
            acted = dataclasses.replace(acted, request=annotations.get(BACKUP_ANNOTATION))
    if spec.schedule is not None and not decided.hibernating:
        try:
            schedule = parse_schedule(spec.schedule, spec.timeZone)
        except ScheduleError:
            schedule = None  # the model refuses it; BackupReady says so for an old object
        if schedule is not None:
            decision = decide(
                schedule,
                parse_rfc3339(previous.lastScheduledTime),
                now,
                since=created_at(desired),
                suspended=spec.suspend,
            )
            next_slot = decision.next
            if decision.due is not None and decided.has_formed:
                name = scheduled_backup_name(desired.name, decision.due)
                late = " (a catch-up: earlier slots passed without one)" if decision.missed else ""
                actions += [
                    CreateBackup(backup_manifest(desired, name, TRIGGER_SCHEDULE, decision.due)),
                    Event(
                        "Normal",
                        "BackupScheduled",
                        f"created EtcdBackup {name} for {rfc3339(decision.due)}{late}",
                    ),
                ]
                acted = dataclasses.replace(acted, slot=decision.due)
    made_by_us = [b for b in observed.backups if b.trigger is not None]
    for deletion in to_delete(made_by_us, spec.retention, now):
        actions += [
            DeleteOperation(BACKUP_KIND, deletion.name, desired.namespace),
            Event(
                "Normal", "BackupDeleted", f"deleted EtcdBackup {deletion.name}: {deletion.message}"
            ),
        ]
    decided = dataclasses.replace(
        decided,
        notes=(*decided.notes, (NEXT, next_slot)),
        acted=(*decided.acted, (ACTED, acted)),
    )
    return StepResult(actions=tuple(actions), decided=decided)
