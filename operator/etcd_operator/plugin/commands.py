"""The flow of each ``kubectl etcd`` subcommand: what it reads and writes through ``Kube``, and
what it prints. The decisions are in the pure modules; the clock, the sleep between polls and
the random part of a backup request come from the ``Session``, so the tests run these flows
against a fake kubectl with a fake clock.

Results go to ``out`` (a table, JSON or YAML), progress and notes to ``err``; a failure is a
``PluginError``, which ``main`` prints as one line.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from etcd_operator.api.analysis import ANALYZE_ANNOTATION
from etcd_operator.api.backup import PointInTime
from etcd_operator.plugin import render
from etcd_operator.plugin.errors import AlreadyExistsError, NotAvailableError, PluginError
from etcd_operator.plugin.kubectl import BACKUPS, CLUSTERS, Kube
from etcd_operator.plugin.restore import newest_before, restore_manifest
from etcd_operator.plugin.views import BackupView, backups_of, cluster_view, keyspace_view
from etcd_operator.plugin.waiting import Ended, Gone, Outcome, TimedOut, Waiting, decide
from etcd_operator.reconcile.backup_requests import BACKUP_ANNOTATION, on_demand_backup_name

# Between two looks at a backup being waited for: about what a backup's phase change takes
# to show, and a light load on the API server.
POLL_INTERVAL = 2.0
DEFAULT_TIMEOUT = "10m"


def _now() -> datetime:
    return datetime.now(UTC)


def _token() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True)
class Session:
    kube: Kube
    out: TextIO
    err: TextIO
    output: str = "table"
    clock: Callable[[], datetime] = _now
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    token: Callable[[], str] = _token

    def print(self, text: str) -> None:
        self.out.write(text)

    def note(self, text: str) -> None:
        self.err.write(text + "\n")


@dataclass(frozen=True)
class Requested:
    """A backup asked for and not waited for."""

    cluster: str
    request: str
    backup: str


def status(session: Session, name: str | None, all_namespaces: bool = False) -> int:
    """One cluster at a glance, or one line per cluster."""
    kube = session.kube
    if name is not None:
        view = cluster_view(kube.get(CLUSTERS, name))
        if session.output == "table":
            session.print(render.cluster_text(view, session.clock()))
        else:
            session.print(render.dump(view, session.output))
        return 0
    views = sorted(
        (cluster_view(item) for item in kube.items(CLUSTERS, all_namespaces)),
        key=lambda v: (v.namespace or "", v.name),
    )
    if session.output != "table":
        session.print(render.dump(views, session.output))
    elif views:
        session.print(render.clusters_table(views, session.clock(), all_namespaces))
    else:
        session.note(f"no EtcdClusters in {'any namespace' if all_namespaces else kube.where()}")
    return 0


def request_value(now: datetime, token: str) -> str:
    """A value of the backup annotation that was never used: the time, and a random part for
    two requests within a second."""
    return f"kubectl-etcd-{now.astimezone(UTC):%Y%m%d-%H%M%S}-{token}"


def wait_for_backup(
    session: Session, cluster: str, name: str, request: str, timeout: float
) -> Outcome:
    """Poll until the backup ended, the cluster is gone, or ``timeout`` seconds passed."""
    deadline = session.monotonic() + timeout
    shown = None
    while True:
        backup = session.kube.find(BACKUPS, name)
        owner = session.kube.find(CLUSTERS, cluster) if backup is None else None
        outcome = decide(name, request, backup, owner, now=session.monotonic(), deadline=deadline)
        if not isinstance(outcome, Waiting):
            return outcome
        if outcome.state != shown:
            session.note(f"waiting: {outcome.state}")
            shown = outcome.state
        session.sleep(max(0.0, min(POLL_INTERVAL, deadline - session.monotonic())))


def _show_backup(session: Session, view: BackupView) -> None:
    if session.output == "table":
        session.print(render.backup_text(view))
    else:
        session.print(render.dump(view, session.output))


def backup(
    session: Session, name: str, wait: bool, timeout: float, timeout_text: str = DEFAULT_TIMEOUT
) -> int:
    """Ask for a backup by the annotation (docs/backup.md) and, with ``wait``, wait for it."""
    kube = session.kube
    cluster = kube.get(CLUSTERS, name)
    if not (cluster.get("spec") or {}).get("backup"):
        raise PluginError(
            f"EtcdCluster {name} has no spec.backup: the operator acts on {BACKUP_ANNOTATION} "
            "only for clusters with a backup store (docs/backup.md); create an EtcdBackup with "
            "spec.store instead"
        )
    request = request_value(session.clock(), session.token())
    backup_name = on_demand_backup_name(name, request)
    kube.annotate(CLUSTERS, name, BACKUP_ANNOTATION, request)
    session.note(f"asked for a backup of {name}: {BACKUP_ANNOTATION}={request}")
    if not wait:
        if session.output == "table":
            session.print(
                f"EtcdBackup {backup_name} requested; follow it with: kubectl etcd backups {name}\n"
            )
        else:
            session.print(render.dump(Requested(name, request, backup_name), session.output))
        return 0
    outcome = wait_for_backup(session, name, backup_name, request, timeout)
    if isinstance(outcome, TimedOut):
        raise PluginError(f"timed out after {timeout_text}: {outcome.state}")
    if isinstance(outcome, Gone):
        raise PluginError(outcome.state)
    assert isinstance(outcome, Ended)
    view = outcome.backup
    _show_backup(session, view)
    if not view.succeeded:
        why = ": ".join(part for part in (view.reason, view.message) if part)
        raise PluginError(f"EtcdBackup {view.name} {view.phase}" + (f": {why}" if why else ""))
    return 0


def backups(session: Session, name: str) -> int:
    """The cluster's EtcdBackups, newest first (they outlive it: no cluster needed)."""
    views = backups_of(session.kube.items(BACKUPS), name)
    if session.output != "table":
        session.print(render.dump(views, session.output))
    elif views:
        session.print(render.backups_table(views))
    else:
        session.note(f"no EtcdBackups of cluster {name} in {session.kube.where()}")
    return 0


def restore(
    session: Session,
    name: str,
    source_backup: str | None,
    new: str,
    dry_run: bool,
    *,
    point: PointInTime | None = None,
) -> int:
    """A new cluster ``new`` from ``source_backup`` (with a point and none given: the newest
    backup before it), replayed up to ``point``, with ``name``'s spec; ``name`` untouched."""
    kube = session.kube
    source = kube.get(CLUSTERS, name)
    if source_backup is None:
        assert point is not None  # the parser requires one of them
        source_backup = newest_before(kube.items(BACKUPS), name, point)
        session.note(f"restoring from EtcdBackup {source_backup}, the newest before {point}")
    found = kube.get(BACKUPS, source_backup)
    plan = restore_manifest(source, found, new, point)
    for note in plan.notes:
        session.note(f"note: {note}")
    if dry_run:
        fmt = "yaml" if session.output == "table" else session.output
        session.print(render.dump(plan.manifest, fmt))
        return 0
    try:
        created = kube.create(plan.manifest)
    except AlreadyExistsError:
        raise AlreadyExistsError(
            f"EtcdCluster {new} already exists in {kube.where()}: a restore makes a new cluster, "
            "choose another --into"
        ) from None
    if session.output == "table":
        session.print(
            f"EtcdCluster {new} created from EtcdBackup {source_backup} with the spec of {name}; "
            f"follow it with: kubectl etcd status {new}\n"
        )
    else:
        session.print(render.dump(created, session.output))
    return 0


def keyspace(session: Session, name: str) -> int:
    """``status.keyspace``: what the last analysis of the newest backup found (docs/backup.md);
    refused, saying how to get one, while there is none."""
    cluster = session.kube.get(CLUSTERS, name)
    view = keyspace_view(cluster)
    ask = f"kubectl annotate etcdcluster {name} {ANALYZE_ANNOTATION}=now --overwrite"
    if view.analyzed is None and view.writes is None:
        if not view.configured:
            raise NotAvailableError(
                f"EtcdCluster {name} has no keyspace analysis: set spec.analysis (it reads the "
                f"newest backup, so it needs spec.backup), e.g. kubectl patch etcdcluster {name} "
                """--type=merge -p '{"spec":{"analysis":{"schedule":"@daily"}}}', then ask for """
                f"one now with {ask} (docs/backup.md)"
            )
        run = view.last_run
        if run is not None and run.phase == "Running":
            state = f"one is running since {run.started} (backup {run.backup})"
        elif run is not None:
            why = ": ".join(part for part in (run.reason, run.message) if part)
            state = f"the last run {run.phase}" + (f": {why}" if why else "")
        else:
            state = "none has run yet"
        raise NotAvailableError(
            f"no keyspace analysis of {name} yet ({state}); ask for one with {ask}"
        )
    if session.output == "table":
        session.print(render.keyspace_text(view, session.clock()))
    else:
        session.print(render.dump(view, session.output))
    return 0
