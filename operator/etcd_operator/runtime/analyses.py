"""Keyspace analyses: one asyncio task per cluster, reading its newest backup with pyetcdutl.

A reconcile pass hands a due analysis over (``AnalyzeKeyspace``, see ``reconcile.keyspace``) and
goes on: ``start`` only creates the cluster's task, or leaves the one that runs alone. The task:

1. under the cluster's lock (the reconcile passes' own, so that no pass writes back a status
   read before), reads the cluster again and asks the pure decision again
   (``keyspace.requested``): what one pass saw due, another may have started already. A run the
   status shows as Running is not ours (ours would be this task): the operator restarted, and it
   ends ``Interrupted``. Otherwise it picks the newest Succeeded EtcdBackup and records the run
   as Running, with what it acts on (``keyspace_record.started``): the trigger is spent;
2. without the lock: resolves the backup's store (credentials from their Secret) and key,
   checks that the snapshot fits the free space of the temporary directory, downloads it
   (``backup.download_snapshot``: sha256, etcd's trailer and the encryption's tags checked),
   runs ``pyetcdutl analyze`` on it (``runtime.pyetcdutl``, under a deadline), removes it,
   checks the report (``keyspace_report``) and stores it next to the backup, encrypted with the
   backup's key when the backup is (``backup.report``). A backup that retention deleted
   meanwhile takes its report along: the run fails rather than leave a report of nothing;
3. under the lock again: records the outcome (the summary of a success, the reason and message
   of a failure), posts ``KeyspaceAnalyzed`` or a ``KeyspaceAnalysisFailed`` Warning on the
   cluster, and sets the keyspace gauges.

A failure is retried with a growing delay by later passes (``keyspace_requests``); it never
fails a pass, and backups never wait for an analysis (they have their own runner). At most
``max_concurrent_analyses`` run at a time across clusters. Messages pass the store's
``redact``: no credential reaches a status, an event or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from etcd_operator import metrics
from etcd_operator.api.analysis import AnalysisSpec, KeyspaceStatus
from etcd_operator.api.etcdbackup import KIND as BACKUP_KIND
from etcd_operator.api.etcdbackup import EtcdBackup
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import parse_rfc3339
from etcd_operator.api.v1alpha1 import API_VERSION, KIND, EtcdCluster
from etcd_operator.backup import (
    BackupError,
    DownloadResult,
    EncryptionKeyRequiredError,
    StoredReport,
    StoreSettings,
    delete_reports,
    download_snapshot,
    upload_report,
)
from etcd_operator.reconcile import keyspace, keyspace_record
from etcd_operator.reconcile.actions import AnalyzeKeyspace
from etcd_operator.reconcile.backup_records import backup_record, newest
from etcd_operator.reconcile.keyspace_report import (
    ReportError,
    Summary,
    metric_prefixes,
    parse_report,
    summarize,
)
from etcd_operator.runtime import pyetcdutl, stores
from etcd_operator.runtime.events import post_events
from etcd_operator.runtime.failures import InvalidSpecError, describe, parse_cluster
from etcd_operator.runtime.kube import KubeApi
from etcd_operator.runtime.observe import without_kopf
from etcd_operator.runtime.pyetcdutl import AnalyzerError
from etcd_operator.runtime.tasks import ClusterRunner, KeyedTasks

log = logging.getLogger(__name__)

Json = dict[str, Any]

ANALYZED = "KeyspaceAnalyzed"
ANALYSIS_FAILED = "KeyspaceAnalysisFailed"
INTERNAL_ERROR = "InternalError"


class Download(Protocol):
    """``backup.download_snapshot``'s shape (tests may count the downloads)."""

    async def __call__(
        self,
        store: StoreSettings,
        key: str,
        dest: str | Path,
        encryption_key: bytes | None = ...,
    ) -> DownloadResult: ...


RunTool = Callable[[str, Path, AnalysisSpec, float], Awaitable[bytes]]
"""``runtime.pyetcdutl.analyze``'s shape."""


class StoreReport(Protocol):
    """``backup.upload_report``'s shape."""

    async def __call__(
        self,
        store: StoreSettings,
        backup_key: str,
        report: bytes,
        *,
        encryption_key: bytes | None,
        backup: str,
        revision: int | None = ...,
    ) -> StoredReport: ...


DropReports = Callable[[StoreSettings, str], Awaitable[None]]
"""``backup.delete_reports``'s shape."""


class AnalysisFailedError(Exception):
    """The run failed: ``reason`` (a CamelCase word) and a one-line message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Begun:
    """A run recorded as Running: on which cluster and backup, and when it started."""

    cluster: EtcdCluster
    backup: EtcdBackup
    started_at: str


@dataclass(frozen=True)
class Analyzed:
    summary: Summary
    report: str  # s3://bucket/key
    prefixes: tuple[tuple[str, int], ...]


def free_bytes(directory: str) -> int:
    return shutil.disk_usage(directory).free


class KeyspaceAnalyses(ClusterRunner[KeyedTasks]):
    """Runs the clusters' keyspace analyses; ``start`` for each ``AnalyzeKeyspace``. Runs
    cancelled by ``stop`` are ended as interrupted by the next operator, and retried."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Callable[[], KubeApi],
        *,
        lock: Callable[[str], asyncio.Lock] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        download: Download = download_snapshot,
        run_tool: RunTool = pyetcdutl.analyze,
        free_space: Callable[[str], int] = free_bytes,
        store_report: StoreReport = upload_report,
        drop_reports: DropReports = delete_reports,
    ) -> None:
        super().__init__(settings, kube, KeyedTasks(), lock=lock, clock=clock)
        self._download = download
        self._run_tool = run_tool
        self._free_space = free_space
        self._store_report = store_report
        self._drop_reports = drop_reports
        self._slots: asyncio.Semaphore | None = None

    def start(self, request: AnalyzeKeyspace) -> asyncio.Task[None]:
        """The cluster's analysis task: the one that runs, else a new one."""
        running = self._tasks.running(request.uid)
        if running is not None:
            return running
        return self._tasks.start(request.uid, self._guarded(request), f"keyspace {request.name}")

    # -- one run ---------------------------------------------------------------------------
    async def _guarded(self, request: AnalyzeKeyspace) -> None:
        try:
            async with self._slot():
                await self._run(request)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # A fault of ours or of the API server; a run left Running ends as interrupted.
            log.warning(
                "keyspace analysis of %s/%s failed unexpectedly: %s",
                request.namespace,
                request.name,
                describe(err),
            )

    async def _run(self, request: AnalyzeKeyspace) -> None:
        begun = await self._begin(request)
        if begun is None:
            return
        try:
            outcome: Analyzed | AnalysisFailedError = await self._analyze(begun)
        except AnalysisFailedError as failure:
            outcome = failure
        await self._finish(request, begun, outcome)

    async def _cluster(self, request: AnalyzeKeyspace) -> tuple[Json, EtcdCluster] | None:
        """The cluster as it is now, unless gone, replaced, or with a spec that does not parse
        (its passes report that)."""
        raw = await self.kube.get(API_VERSION, KIND, request.namespace, request.name)
        if raw is None or (raw.get("metadata") or {}).get("uid") != request.uid:
            return None
        try:
            return raw, parse_cluster(raw)
        except InvalidSpecError:
            return None

    async def _begin(self, request: AnalyzeKeyspace) -> Begun | None:
        async with self._lock(request.uid):
            found = await self._cluster(request)
            if found is None:
                return None
            raw, cluster = found
            if cluster.spec.analysis is None:
                return None
            now = self._clock()
            previous = keyspace.previous_status(cluster)
            if keyspace_record.running(previous):
                assert previous is not None
                ended = keyspace_record.interrupted(previous, now)
                await self._record(raw, cluster, ended, now)
                return None
            asked = keyspace.requested(cluster, now)
            if asked is None:
                return None
            backup = await self._newest_backup(cluster)
            if backup is None:
                ended = keyspace_record.failed(
                    keyspace_record.started(previous, asked, None, now),
                    keyspace_record.NO_BACKUP,
                    f"no successful EtcdBackup of {cluster.name} yet: the analysis reads the "
                    f"newest one (kubectl annotate etcdcluster {cluster.name} "
                    "etcd.pyetcd.io/backup=now takes one)",
                    now,
                )
                await self._record(raw, cluster, ended, now)
                return None
            status = keyspace_record.started(previous, asked, backup.name, now)
            await self._write(cluster, status)
            assert status.lastRun is not None
            log.info(
                "keyspace analysis of %s/%s started (%s): backup %s",
                cluster.namespace,
                cluster.name,
                asked.trigger,
                backup.name,
            )
            return Begun(cluster, backup, status.lastRun.startedAt)

    async def _newest_backup(self, cluster: EtcdCluster) -> EtcdBackup | None:
        listed = await self.kube.list(API_VERSION, BACKUP_KIND, cluster.namespace, "")
        mine = {
            str((b.get("metadata") or {}).get("name")): b
            for b in listed
            if (b.get("spec") or {}).get("clusterName") == cluster.name
            and not (b.get("metadata") or {}).get("deletionTimestamp")
        }
        found = newest(r for r in map(backup_record, mine.values()) if r.succeeded)
        if found is None:
            return None
        try:
            return EtcdBackup.model_validate(without_kopf(mine[found.name]))
        except ValueError:
            return None

    async def _analyze(self, begun: Begun) -> Analyzed:
        """Step 2 of the module, outside the lock; ``AnalysisFailedError`` says why it failed."""
        cluster, backup = begun.cluster, begun.backup
        spec = cluster.spec.analysis
        assert spec is not None
        status = backup.status
        if status is None or status.location is None or status.store is None:
            raise AnalysisFailedError(
                keyspace_record.NO_BACKUP, f"EtcdBackup {backup.name} records no stored object"
            )
        key = status.location.removeprefix(f"s3://{status.store.bucket}/")
        store: StoreSettings | None = None
        try:
            executable = pyetcdutl.find(self.settings.pyetcdutl)
            async with stores.resolved(self.kube, cluster.namespace, status.store, "") as store:
                secret_key = None
                if status.encrypted:
                    secret_key = await stores.encryption_key(
                        self.kube, cluster.namespace, cluster.spec.backup
                    )
                    if secret_key is None:
                        raise EncryptionKeyRequiredError(
                            f"{status.location} is encrypted and spec.backup.encryption names "
                            "no key to read it with"
                        )
                output = await self._read(
                    executable,
                    store,
                    key,
                    size=status.snapshotSizeBytes,
                    secret_key=secret_key,
                    spec=spec,
                )
                report = parse_report(output)
                stored = await self._store_report(
                    store,
                    key,
                    output,
                    encryption_key=secret_key,
                    backup=backup.name,
                    revision=report.totals.revision,
                )
                if not await self._exists(backup):
                    await self._drop_reports(store, key)
                    raise AnalysisFailedError(
                        keyspace_record.BACKUP_GONE,
                        f"EtcdBackup {backup.name} was deleted while it was analysed; its report "
                        "went with it",
                    )
                return Analyzed(
                    summarize(report), stored.location, metric_prefixes(report, spec.top)
                )
        except BackupError as err:
            raise AnalysisFailedError(err.reason, _redact(store, str(err))) from None
        except stores.SecretError as err:
            raise AnalysisFailedError(keyspace_record.SECRET_NOT_USABLE, str(err)) from None
        except AnalyzerError as err:
            raise AnalysisFailedError(err.reason, str(err)) from None
        except ReportError as err:
            raise AnalysisFailedError(keyspace_record.INVALID_REPORT, str(err)) from None
        except AnalysisFailedError:
            raise
        except Exception as err:
            # A fault of ours or of the API server: the run still ends, visibly, rather than
            # stay Running until a restart calls it interrupted.
            log.exception("keyspace analysis of %s/%s failed", cluster.namespace, cluster.name)
            raise AnalysisFailedError(INTERNAL_ERROR, _redact(store, describe(err))) from None

    async def _read(
        self,
        executable: str,
        store: StoreSettings,
        key: str,
        *,
        size: int | None,
        secret_key: bytes | None,
        spec: AnalysisSpec,
    ) -> bytes:
        """The tool's report on the backup under ``key``, downloaded into the temporary
        directory (if it fits there) and removed afterwards."""
        directory = self.settings.analysis_temp_dir or tempfile.gettempdir()
        try:
            free = await asyncio.to_thread(self._free_space, directory)
        except OSError as err:
            raise AnalysisFailedError(
                keyspace_record.TEMP_DIR_UNUSABLE,
                f"the temporary directory {directory} is not usable ({err.strerror or err}): "
                "set ETCD_OPERATOR_ANALYSIS_TEMP_DIR (chart value analysis.tempDir)",
            ) from None
        if size is not None and size > free:
            raise AnalysisFailedError(
                keyspace_record.NO_SPACE,
                f"the snapshot is {size} bytes and {directory} has {free} bytes free: make room, "
                "or point ETCD_OPERATOR_ANALYSIS_TEMP_DIR (chart value analysis.tempDir) at a "
                "bigger volume",
            )
        try:
            scratch = tempfile.TemporaryDirectory(prefix="etcd-analyze-", dir=directory)
        except OSError as err:
            raise AnalysisFailedError(
                keyspace_record.TEMP_DIR_UNUSABLE,
                f"cannot write into the temporary directory {directory} "
                f"({err.strerror or err}): set ETCD_OPERATOR_ANALYSIS_TEMP_DIR (chart value "
                "analysis.tempDir)",
            ) from None
        with scratch:
            path = Path(scratch.name) / "snapshot.db"
            await self._download(store, key, path, secret_key)
            return await self._run_tool(
                executable, path, spec, self.settings.analysis_timeout_seconds
            )

    async def _exists(self, backup: EtcdBackup) -> bool:
        raw = await self.kube.get(API_VERSION, BACKUP_KIND, backup.namespace, backup.name)
        return raw is not None and not (raw.get("metadata") or {}).get("deletionTimestamp")

    async def _finish(
        self, request: AnalyzeKeyspace, begun: Begun, outcome: Analyzed | AnalysisFailedError
    ) -> None:
        async with self._lock(request.uid):
            found = await self._cluster(request)
            if found is None:
                return
            raw, cluster = found
            current = keyspace.previous_status(cluster)
            run = current.lastRun if current is not None else None
            if (
                current is None
                or run is None
                or (run.startedAt, run.backup) != (begun.started_at, begun.backup.name)
            ):
                return  # spec.analysis went (and the status with it) while it ran
            now = self._clock()
            if isinstance(outcome, Analyzed):
                done = keyspace_record.succeeded(current, outcome.summary, outcome.report, now)
                await self._record(raw, cluster, done, now, prefixes=outcome.prefixes)
            else:
                done = keyspace_record.failed(current, outcome.reason, str(outcome), now)
                await self._record(raw, cluster, done, now)

    # -- status, events, metrics -----------------------------------------------------------
    async def _write(self, cluster: EtcdCluster, status: KeyspaceStatus) -> bool:
        patch = {"keyspace": status.model_dump(mode="json")}
        return await self.kube.patch_status(
            API_VERSION, KIND, cluster.namespace, cluster.name, patch
        )

    async def _record(
        self,
        raw: Json,
        cluster: EtcdCluster,
        status: KeyspaceStatus,
        now: datetime,
        *,
        prefixes: tuple[tuple[str, int], ...] | None = None,
    ) -> None:
        """An ended run: its status, its event, and the gauges of a success."""
        if not await self._write(cluster, status):
            return
        run = status.lastRun
        assert run is not None
        ok = run.phase == "Succeeded"
        where = f"{cluster.namespace}/{cluster.name}"
        if ok:
            log.info("keyspace analysis of %s: %s", where, run.message)
            event = ("Normal", ANALYZED, f"backup {run.backup}: {run.message}")
            analyzed = parse_rfc3339(status.analyzedAt)
            assert analyzed is not None and prefixes is not None
            metrics.record_keyspace(
                cluster.namespace,
                cluster.name,
                metrics.KeyspaceGauges(
                    analyzed_at=analyzed.timestamp(),
                    live_keys=status.liveKeys or 0,
                    leases_without_keys=status.leasesWithoutKeys or 0,
                    prefixes=prefixes,
                ),
            )
        else:
            log.warning("keyspace analysis of %s failed (%s): %s", where, run.reason, run.message)
            about = f"backup {run.backup}: " if run.backup else ""
            event = ("Warning", ANALYSIS_FAILED, f"{about}{run.reason}: {run.message}")
        await post_events(self.kube, raw, [event], now)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.max_concurrent_analyses)
        async with self._slots:
            yield


def _redact(store: StoreSettings | None, text: str) -> str:
    return store.redact(text) if store is not None else text
