"""What the commands show, read off EtcdCluster and EtcdBackup objects as kubectl returns them.
Pure.

Objects are read leniently (a missing or odd field is shown as unknown), not validated against
the API models: a status the operator has not written yet, or one written by a newer operator
with fields this plugin does not know, must still show what it can. The field names are the
models' (``api.v1alpha1``, ``api.etcdbackup``), and the tests build their objects from those
models, so a renamed field fails them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.v1alpha1 import ConditionType
from etcd_operator.reconcile.backup_requests import TRIGGER_LABEL

Json = dict[str, Any]

# What made a backup, when no trigger label says the operator did.
TRIGGER_USER = "user"


def _dict(value: object) -> Json:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list(value: object) -> list[Json]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


@dataclass(frozen=True)
class ConditionView:
    type: str
    status: str
    reason: str | None
    message: str | None
    since: str | None


@dataclass(frozen=True)
class MemberView:
    name: str
    id: str | None
    role: str  # leader, follower or learner
    healthy: bool
    version: str | None
    db_size: int | None
    revision: int | None


@dataclass(frozen=True)
class BackupRefView:
    name: str
    time: str | None
    revision: int | None
    message: str | None


@dataclass(frozen=True)
class BackupStatusView:
    schedule: str | None
    last_success: BackupRefView | None
    last_failure: BackupRefView | None
    ready: ConditionView | None
    next_scheduled: str | None
    last_request: str | None


@dataclass(frozen=True)
class ClusterView:
    name: str
    namespace: str | None
    phase: str | None
    spec_version: str | None
    version: str | None  # the lowest a healthy member runs
    cluster_version: str | None
    replicas: int | None  # desired
    observed_replicas: int | None
    ready_replicas: int | None
    leader: str | None
    cluster_id: str | None
    conditions: tuple[ConditionView, ...]
    members: tuple[MemberView, ...]
    backup: BackupStatusView | None
    restored_from: str | None
    generation: int | None
    observed_generation: int | None
    created: str | None

    def condition(self, kind: str) -> ConditionView | None:
        return next((c for c in self.conditions if c.type == kind), None)


@dataclass(frozen=True)
class BackupView:
    name: str
    namespace: str | None
    cluster: str | None
    phase: str  # Pending until the operator has written a status
    reason: str | None
    message: str | None
    revision: int | None
    size_bytes: int | None
    snapshot_size_bytes: int | None
    location: str | None
    created: str | None
    started: str | None
    completed: str | None
    trigger: str  # schedule, annotation (the operator's) or user
    verified: bool | None

    @property
    def ended(self) -> bool:
        return self.phase in {p.value for p in OperationPhase if p.terminal}

    @property
    def succeeded(self) -> bool:
        return self.phase == OperationPhase.SUCCEEDED.value


@dataclass(frozen=True)
class PrefixView:
    prefix: str
    live_keys: int | None
    live_bytes: int | None
    stored_bytes: int | None


@dataclass(frozen=True)
class WritesView:
    """``status.keyspace.writes``: the last window of the live cluster's sampled watch."""

    sampled: str | None
    window_seconds: int | None
    from_revision: int | None
    to_revision: int | None
    writes: int | None
    prefixes: tuple[tuple[str, int | None], ...]  # (prefix, writes), the most first
    hottest_key: str | None
    hottest_writes: int | None


@dataclass(frozen=True)
class AnalysisRunView:
    phase: str | None
    trigger: str | None
    backup: str | None
    started: str | None
    completed: str | None
    reason: str | None
    message: str | None


@dataclass(frozen=True)
class KeyspaceView:
    """``status.keyspace``: the last successful analysis of the newest backup, the last run."""

    cluster: str
    namespace: str | None
    configured: bool  # spec.analysis is set
    backup: str | None
    revision: int | None
    analyzed: str | None
    live_keys: int | None
    live_bytes: int | None
    db_size: int | None
    db_size_in_use: int | None
    prefixes: tuple[PrefixView, ...]
    leases_without_keys: int | None
    biggest_key: str | None
    biggest_value_size: int | None
    hottest_key: str | None
    hottest_revisions: int | None
    report: str | None
    last_run: AnalysisRunView | None
    next_scheduled: str | None
    writes: WritesView | None = None


def condition_view(item: Json) -> ConditionView:
    return ConditionView(
        type=str(item.get("type", "")),
        status=str(item.get("status", "Unknown")),
        reason=_str(item.get("reason")),
        message=_str(item.get("message")),
        since=_str(item.get("lastTransitionTime")),
    )


def member_view(item: Json) -> MemberView:
    role = "leader" if item.get("leader") else "learner" if item.get("learner") else "follower"
    return MemberView(
        name=str(item.get("name", "")),
        id=_str(item.get("id")),
        role=role,
        healthy=item.get("healthy") is True,
        version=_str(item.get("version")),
        db_size=_int(item.get("dbSize")),
        revision=_int(item.get("revision")),
    )


def _backup_ref(value: object) -> BackupRefView | None:
    ref = _dict(value)
    name = _str(ref.get("name"))
    if name is None:
        return None
    return BackupRefView(
        name=name,
        time=_str(ref.get("time")),
        revision=_int(ref.get("revision")),
        message=_str(ref.get("message")),
    )


def _restored_from(status: Json) -> str | None:
    restored = _dict(status.get("restoredFrom"))
    backup, location = _str(restored.get("backup")), _str(restored.get("location"))
    if backup and location:
        return f"{backup} ({location})"
    return backup or location


def cluster_view(obj: Json) -> ClusterView:
    metadata, spec, status = (_dict(obj.get(k)) for k in ("metadata", "spec", "status"))
    conditions = tuple(condition_view(c) for c in _list(status.get("conditions")))
    backup_spec, backup_status = _dict(spec.get("backup")), _dict(status.get("backup"))
    backup = None
    if backup_spec or backup_status:
        ready = next((c for c in conditions if c.type == ConditionType.BACKUP_READY), None)
        backup = BackupStatusView(
            schedule=_str(backup_spec.get("schedule")),
            last_success=_backup_ref(backup_status.get("lastSuccessful")),
            last_failure=_backup_ref(backup_status.get("lastFailed")),
            ready=ready,
            next_scheduled=_str(backup_status.get("nextScheduledTime")),
            last_request=_str(backup_status.get("lastRequest")),
        )
    return ClusterView(
        name=str(metadata.get("name", "")),
        namespace=_str(metadata.get("namespace")),
        phase=_str(status.get("phase")),
        spec_version=_str(spec.get("version")),
        version=_str(status.get("currentVersion")),
        cluster_version=_str(status.get("clusterVersion")),
        replicas=_int(spec.get("replicas")),
        observed_replicas=_int(status.get("replicas")),
        ready_replicas=_int(status.get("readyReplicas")),
        leader=_str(status.get("leader")),
        cluster_id=_str(status.get("clusterID")),
        conditions=conditions,
        members=tuple(member_view(m) for m in _list(status.get("members"))),
        backup=backup,
        restored_from=_restored_from(status),
        generation=_int(metadata.get("generation")),
        observed_generation=_int(status.get("observedGeneration")),
        created=_str(metadata.get("creationTimestamp")),
    )


def backup_view(obj: Json) -> BackupView:
    metadata, spec, status = (_dict(obj.get(k)) for k in ("metadata", "spec", "status"))
    verified = _dict(status.get("verified")).get("passed")
    return BackupView(
        name=str(metadata.get("name", "")),
        namespace=_str(metadata.get("namespace")),
        cluster=_str(spec.get("clusterName")),
        phase=_str(status.get("phase")) or OperationPhase.PENDING.value,
        reason=_str(status.get("reason")),
        message=_str(status.get("message")),
        revision=_int(status.get("revision")),
        size_bytes=_int(status.get("sizeBytes")),
        snapshot_size_bytes=_int(status.get("snapshotSizeBytes")),
        location=_str(status.get("location")),
        created=_str(metadata.get("creationTimestamp")),
        started=_str(status.get("startedAt")),
        completed=_str(status.get("completedAt")),
        trigger=_str(_dict(metadata.get("labels")).get(TRIGGER_LABEL)) or TRIGGER_USER,
        verified=verified if isinstance(verified, bool) else None,
    )


def backups_of(items: list[Json], cluster: str) -> list[BackupView]:
    """The EtcdBackups of ``cluster`` (by ``spec.clusterName``: a user's backups carry no
    label), newest first."""
    views = [backup_view(item) for item in items]
    mine = [view for view in views if view.cluster == cluster]
    # RFC 3339 in UTC sorts as text; the name breaks ties within a second.
    return sorted(mine, key=lambda view: (view.created or "", view.name), reverse=True)


def _run_view(value: object) -> AnalysisRunView | None:
    run = _dict(value)
    if not run:
        return None
    return AnalysisRunView(
        phase=_str(run.get("phase")),
        trigger=_str(run.get("trigger")),
        backup=_str(run.get("backup")),
        started=_str(run.get("startedAt")),
        completed=_str(run.get("completedAt")),
        reason=_str(run.get("reason")),
        message=_str(run.get("message")),
    )


def keyspace_view(obj: Json) -> KeyspaceView:
    metadata, spec, status = (_dict(obj.get(k)) for k in ("metadata", "spec", "status"))
    found = _dict(status.get("keyspace"))
    biggest, hottest = _dict(found.get("biggestKey")), _dict(found.get("hottestKey"))
    return KeyspaceView(
        cluster=str(metadata.get("name", "")),
        namespace=_str(metadata.get("namespace")),
        configured=isinstance(spec.get("analysis"), dict),
        backup=_str(found.get("backup")),
        revision=_int(found.get("revision")),
        analyzed=_str(found.get("analyzedAt")),
        live_keys=_int(found.get("liveKeys")),
        live_bytes=_int(found.get("liveBytes")),
        db_size=_int(found.get("dbSize")),
        db_size_in_use=_int(found.get("dbSizeInUse")),
        prefixes=tuple(
            PrefixView(
                prefix=str(p.get("prefix", "")),
                live_keys=_int(p.get("liveKeys")),
                live_bytes=_int(p.get("liveBytes")),
                stored_bytes=_int(p.get("storedBytes")),
            )
            for p in _list(found.get("prefixes"))
        ),
        leases_without_keys=_int(found.get("leasesWithoutKeys")),
        biggest_key=_str(biggest.get("key")),
        biggest_value_size=_int(biggest.get("valueSize")),
        hottest_key=_str(hottest.get("key")),
        hottest_revisions=_int(hottest.get("revisions")),
        report=_str(found.get("report")),
        last_run=_run_view(found.get("lastRun")),
        next_scheduled=_str(found.get("nextScheduledTime")),
        writes=_writes_view(found.get("writes")),
    )


def _writes_view(raw: object) -> WritesView | None:
    found = _dict(raw)
    if not found:
        return None
    hottest = _dict(found.get("hottestKey"))
    return WritesView(
        sampled=_str(found.get("sampledAt")),
        window_seconds=_int(found.get("windowSeconds")),
        from_revision=_int(found.get("fromRevision")),
        to_revision=_int(found.get("toRevision")),
        writes=_int(found.get("writes")),
        prefixes=tuple(
            (str(p.get("prefix", "")), _int(p.get("writes"))) for p in _list(found.get("prefixes"))
        ),
        hottest_key=_str(hottest.get("key")),
        hottest_writes=_int(hottest.get("writes")),
    )
