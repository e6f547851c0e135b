"""Continuous backups of live clusters: one recorder task per cluster, for as long as asked.

A pass asks for the cluster's recorder (``RecordContinuously``, see ``reconcile.continuous``);
``start`` leaves the task that runs alone and starts one that does not, except within
``RETRY_SECONDS`` of a failed run. The task:

1. reads the cluster and its EtcdBackups: the chain to extend is the newest successful backup's
   (``continuous.chain_base``); with none yet, it says so in the status and ends;
2. resolves the store and the encryption key as a backup does, and picks a member to watch as a
   write sample does (a healthy follower, so that the leader serves no extra stream);
3. runs a ``backup.recorder.Recorder`` on that chain, and every ``STATUS_SECONDS`` writes
   ``status.backup.continuous`` under the cluster's lock and looks again: it stops when the
   spec no longer asks, and moves to a newer full backup's chain when one succeeded.

A broken chain (etcd compacted what was not recorded yet) is written as ``broken``: the next
pass creates a full backup (``continuous.rechain_backup``), whose chain the next run extends.
Any other failure (no member, S3 refusing, the watch cut) is written as ``message`` and logged,
and the recorder starts again at the chain's end: nothing is lost while etcd keeps the history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from etcd_operator.api.backup import Compression
from etcd_operator.api.etcdbackup import EtcdBackupStatus
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import rfc3339
from etcd_operator.api.v1alpha1 import API_VERSION, KIND, ContinuousBackupStatus, EtcdCluster
from etcd_operator.backup import BackupError
from etcd_operator.backup.recorder import Chain, ChainBrokenError, Recorder
from etcd_operator.backup.segments import Coverage, StoredSegment, client_for
from etcd_operator.backup.store import S3Client, StoreSettings
from etcd_operator.members import describe_etcd_error
from etcd_operator.reconcile import backup_run, continuous
from etcd_operator.reconcile.actions import RecordContinuously
from etcd_operator.runtime import stores
from etcd_operator.runtime.failures import InvalidSpecError, describe, parse_cluster
from etcd_operator.runtime.kube import KubeApi
from etcd_operator.runtime.observe import Connect, backup_records, connect_etcd, observe
from etcd_operator.runtime.stores import SecretError, resolved
from etcd_operator.runtime.tasks import ClusterRunner, RetryingTasks
from etcd_operator.runtime.write_samples import watched_member

log = logging.getLogger(__name__)

Json = dict[str, Any]

RETRY_SECONDS = 30.0
STATUS_SECONDS = 30.0
BACKUP_KIND = "EtcdBackup"


class BrokenChainError(Exception):
    """The chain of ``backup`` (taken at revision ``base``) cannot go on: a new full backup
    must start a new one (``continuous.rechain_backup``, which needs the name)."""

    def __init__(self, why: str, backup: str, coverage: Coverage) -> None:
        super().__init__(why)
        self.backup, self.coverage = backup, coverage


class NotRecordingError(Exception):
    """The recorder cannot run now; the message says why (written to the status)."""


class ContinuousBackups(ClusterRunner[RetryingTasks]):
    """Keeps the clusters' recorders running; ``start`` for each ``RecordContinuously``. After
    ``stop``, the next operator resumes each chain at its end in the store."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Callable[[], KubeApi],
        *,
        lock: Callable[[str], asyncio.Lock] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        connect: Connect = connect_etcd,
        monotonic: Callable[[], float] = time.monotonic,
        s3_client: Callable[[StoreSettings], Awaitable[S3Client]] = client_for,
    ) -> None:
        super().__init__(
            settings, kube, RetryingTasks(RETRY_SECONDS, monotonic), lock=lock, clock=clock
        )
        self._connect = connect
        self._s3_client = s3_client

    def start(self, request: RecordContinuously) -> asyncio.Task[None] | None:
        return self._tasks.start_unless_failed(
            request.uid, lambda: self._guarded(request), f"record {request.name}"
        )

    def forget(self, uid: str) -> None:
        self._tasks.forget(uid)

    def cancel(self, uid: str) -> None:
        """Stop the cluster's recorder (continuous backup was turned off). Not awaited: the
        caller may hold the cluster's lock, which the recorder's last status write takes."""
        self._tasks.cancel(uid)

    # -- one run ---------------------------------------------------------------------------
    async def _guarded(self, request: RecordContinuously) -> None:
        where = f"{request.namespace}/{request.name}"
        try:
            await self._run(request)
        except asyncio.CancelledError:
            raise
        except BrokenChainError as err:
            self._tasks.failed(request.uid)
            log.warning("continuous backup of %s broke: %s", where, err)
            await self._record(request, broken=err)
        except (NotRecordingError, BackupError, SecretError) as err:
            self._tasks.failed(request.uid)
            log.warning("continuous backup of %s is not recording: %s", where, err)
            await self._record(request, message=str(err))
        except Exception as err:
            self._tasks.failed(request.uid)
            said = describe_etcd_error(err) or describe(err)
            log.warning("continuous backup of %s failed: %s", where, said)
            await self._record(request, message=said)

    async def _cluster(self, request: RecordContinuously) -> EtcdCluster | None:
        raw = await self.kube.get(API_VERSION, KIND, request.namespace, request.name)
        if raw is None or (raw.get("metadata") or {}).get("uid") != request.uid:
            return None
        try:
            cluster = parse_cluster(raw)
        except InvalidSpecError:
            return None
        spec = cluster.spec.backup
        return cluster if spec is not None and spec.continuous is not None else None

    async def _base(self, cluster: EtcdCluster) -> tuple[str, EtcdBackupStatus]:
        records = await backup_records(self.kube, cluster)
        base = continuous.chain_base(records)
        if base is None:
            raise NotRecordingError("waiting for a successful full backup to extend")
        raw = await self.kube.get(API_VERSION, BACKUP_KIND, cluster.namespace, base.name)
        status = EtcdBackupStatus.model_validate((raw or {}).get("status") or {})
        if raw is None or status.location is None or status.revision is None:
            raise NotRecordingError(f"EtcdBackup {base.name} is gone or records no location")
        return base.name, status

    async def _run(self, request: RecordContinuously) -> None:
        cluster = await self._cluster(request)
        if cluster is None:
            return
        spec = cluster.spec.backup
        assert spec is not None and spec.continuous is not None
        name, backup = await self._base(cluster)
        assert backup.location is not None and backup.revision is not None
        store_api = backup.store or spec.store
        prefix = backup_run.default_prefix(cluster.namespace, cluster.name)
        observed = await observe(cluster, self.kube, self.settings, self._connect)
        endpoint = watched_member(observed.etcd)
        if endpoint is None:
            raise NotRecordingError("no healthy member to watch")
        key = backup.location.split("/", 3)[3]
        progress: dict[str, Any] = {"coverage": None, "segments": 0}

        def on_segment(stored: StoredSegment, cov: Coverage) -> None:
            progress["coverage"] = cov
            progress["segments"] = len(cov.segments)

        async with resolved(self.kube, cluster.namespace, store_api, prefix) as store:
            encryption_key = await stores.encryption_key(self.kube, cluster.namespace, spec)
            s3 = await self._s3_client(store)
            etcd = self._connect(
                [endpoint],
                self.settings.etcd_timeout_seconds,
                observed.credentials,
                observed.root_credentials,
            )
            chain = Chain(
                key,
                backup.revision,
                Compression(backup.compression or spec.compression),
                encryption_key,
            )
            recorder = Recorder(
                s3, store, chain, etcd, interval=spec.continuous.interval_seconds,
                on_segment=on_segment,
            )  # fmt: skip
            task = asyncio.create_task(recorder.run())
            try:
                while True:
                    done, _ = await asyncio.wait([task], timeout=STATUS_SECONDS)
                    if done:
                        try:
                            task.result()  # raises what ended it
                        except ChainBrokenError as err:
                            raise BrokenChainError(str(err), name, recorder.coverage) from None
                        return
                    await self._record(request, chain_of=(name, recorder.coverage))
                    now = await self._cluster(request)
                    if now is None:
                        return  # turned off, or the cluster went
                    newer = continuous.chain_base(await backup_records(self.kube, now))
                    if newer is not None and newer.name != name:
                        log.info("continuous backup of %s moves to %s", request.name, newer.name)
                        self._tasks.forget(request.uid)
                        return  # the next pass starts the recorder on the newer chain
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await etcd.close()
                if progress["coverage"] is not None:
                    await self._record(request, chain_of=(name, progress["coverage"]))

    async def _record(
        self,
        request: RecordContinuously,
        *,
        chain_of: tuple[str, Coverage] | None = None,
        broken: BrokenChainError | None = None,
        message: str | None = None,
    ) -> None:
        """Write ``status.backup.continuous`` under the cluster's lock."""
        async with self._lock(request.uid):
            cluster = await self._cluster(request)
            if cluster is None:
                return
            backup_status = cluster.status.backup if cluster.status is not None else None
            previous = backup_status.continuous if backup_status is not None else None
            if chain_of is not None:
                status = _chain_status(*chain_of)
            elif broken is not None:
                # How far the broken chain reaches, as the store says (also when no status of it
                # was kept: continuous backup turned off and on), and why it cannot go on.
                status = _chain_status(broken.backup, broken.coverage).model_copy(
                    update={"broken": str(broken)}
                )
            elif previous is not None:
                status = previous.model_copy(update={"broken": None, "message": message})
            else:
                status = ContinuousBackupStatus(
                    backup="", baseRevision=0, revision=0, message=message
                )
            patch = {"backup": {"continuous": status.model_dump(mode="json")}}
            await self.kube.patch_status(API_VERSION, KIND, cluster.namespace, cluster.name, patch)


def _chain_status(backup: str, cov: Coverage) -> ContinuousBackupStatus:
    end = cov.end_ms
    return ContinuousBackupStatus(
        backup=backup,
        baseRevision=cov.base,
        revision=cov.upto,
        time=None if end is None else rfc3339(datetime.fromtimestamp(end / 1000, UTC)),
        segments=len(cov.segments),
    )
