"""Backup runs: one asyncio task per EtcdBackup, streaming a member's snapshot into S3.

Why in the operator and not in a Job: the stream needs no disk (it goes from etcd's gRPC stream
through the encoder into a multipart upload, two 16 MiB parts in memory at most), the
credentials stay in the operator (read from their Secret at the moment of the run, never in a
pod spec or an environment variable of a pod), and the run needs the operator's view of the
cluster anyway (which member is a healthy follower). The cost is the operator's memory and
network: ``max_concurrent_backups`` bounds both across clusters, and one cluster's backups run
one at a time.

A run never blocks a reconcile pass or another cluster's backup: kopf's handler only starts the
task (``start``) and returns; the task writes the EtcdBackup's status itself as it moves
Pending -> Running -> Succeeded | Failed (or Rejected), posts a Normal or Warning event on the
backup and, when it failed, a Warning on the cluster. Every failure ends in ``Failed`` with a
one-line message (the backup library's typed errors; our own for a missing Secret); a run that
the operator's restart interrupted ends ``Failed`` with reason ``Interrupted`` on resume, and its
multipart upload was never completed, so no partial object looks complete.

Credentials never leave this module as text: they go into the boto3 client only, and every
message that leaves (status, event, log) has passed the store's ``redact``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from etcd_operator import metrics
from etcd_operator.api.backup import BackupStore, Compression
from etcd_operator.api.etcdbackup import KIND as BACKUP_KIND
from etcd_operator.api.etcdbackup import EtcdBackup, EtcdBackupStatus, Verification
from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import rfc3339
from etcd_operator.api.v1alpha1 import API_VERSION, KIND, EtcdCluster
from etcd_operator.backup import (
    BackupError,
    NoSuchKeyError,
    StoreSettings,
    UploadResult,
    upload_snapshot,
)
from etcd_operator.backup.errors import classify_s3_error
from etcd_operator.backup.metadata import SnapshotInfo
from etcd_operator.backup.report import delete_reports
from etcd_operator.backup.segments import client_for, delete_chain
from etcd_operator.backup.store import make_client
from etcd_operator.backup.verify import VerificationError, Verified, verify_backup
from etcd_operator.components.auth import RootCredentials
from etcd_operator.components.tls import ClientCredentials
from etcd_operator.reconcile import backup_run
from etcd_operator.reconcile.backup_run import Refusal
from etcd_operator.reconcile.operations import seconds_until_expiry
from etcd_operator.runtime import stores
from etcd_operator.runtime.events import post_events
from etcd_operator.runtime.failures import InvalidSpecError, describe, parse_cluster
from etcd_operator.runtime.kube import KubeApi
from etcd_operator.runtime.observe import Connect, connect_etcd, observe
from etcd_operator.runtime.stores import SecretError, resolved
from etcd_operator.runtime.tasks import KeyedTasks

log = logging.getLogger(__name__)

Json = dict[str, Any]


class Upload(Protocol):
    """``backup.upload_snapshot``'s shape (a test may count or slow the uploads)."""

    async def __call__(
        self,
        chunks: AsyncIterator[bytes],
        store: StoreSettings,
        key: str,
        *,
        compression: Compression | str = ...,
        encryption_key: bytes | None = ...,
        metadata: SnapshotInfo | None = ...,
    ) -> UploadResult: ...


Check = Callable[[StoreSettings, str, bytes | None], Awaitable[Verified]]
"""``backup.verify.verify_backup``'s shape (tests stand in for the download)."""


@dataclass
class _Run:
    """What a run has learnt so far, for its messages: the store resolved (for ``redact``)."""

    store: StoreSettings | None = None

    def redact(self, text: str) -> str:
        return self.store.redact(text) if self.store is not None else text


class BackupRunner:
    """Starts, finishes and deletes backups; shared by the kopf handlers of EtcdBackup."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Callable[[], KubeApi],
        connect: Connect = connect_etcd,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        upload: Upload = upload_snapshot,
        check: Check = verify_backup,
    ) -> None:
        self.settings = settings
        self._kube = kube
        self._connect = connect
        self._clock = clock
        self._upload = upload
        self._check = check
        self._tasks = KeyedTasks()
        self._cluster_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._slots: asyncio.Semaphore | None = None

    @property
    def kube(self) -> KubeApi:
        return self._kube()

    # -- entry points ----------------------------------------------------------------------
    def start(self, body: Mapping[str, Any]) -> asyncio.Task[None] | None:
        """Start the run of a new or resumed backup, unless it runs already or has ended;
        returns its task (tests wait on it)."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or meta.get("name"))
        running = self._tasks.running(uid)
        if running is not None:
            return running
        phase = OperationPhase((body.get("status") or {}).get("phase") or OperationPhase.PENDING)
        if phase.terminal:
            return None
        return self._tasks.start(uid, self._guarded(dict(body), resumed=phase == "Running"))

    def expire_later(self, body: Mapping[str, Any]) -> None:
        """Delete the object ``ttlSecondsAfterFinished`` after its run ended (at once when that
        is past); runs that have not ended arm it themselves when they end."""
        backup = EtcdBackup.model_validate(body)
        status = backup.status or EtcdBackupStatus()
        if backup.spec.ttlSecondsAfterFinished is None or not OperationPhase(status.phase).terminal:
            return
        uid = f"ttl:{backup.metadata.get('uid') or backup.name}"
        if uid in self._tasks:
            return
        delay = max(0.0, seconds_until_expiry(backup.spec, status, self._clock()))
        self._tasks.start(uid, self._expire(backup, delay))

    async def _expire(self, backup: EtcdBackup, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            gone = not await self.kube.delete(
                API_VERSION, BACKUP_KIND, backup.namespace, backup.name
            )
        except Exception as err:
            log.warning("could not delete expired backup %s: %s", backup.name, describe(err))
            return
        if not gone:
            log.info("backup %s/%s expired: deleted", backup.namespace, backup.name)

    async def wait(self) -> None:
        """Wait for every run in flight (tests, and the operator's cleanup)."""
        await self._tasks.wait()

    async def stop(self) -> None:
        """Cancel the runs in flight (the operator stops): their uploads are aborted."""
        await self._tasks.stop()

    async def delete_stored(self, body: Mapping[str, Any]) -> str | None:
        """Delete the stored object of a backup whose policy is Delete, its keyspace report and
        its continuous backup's chain; returns what was done (for the handler's log), raises
        ``BackupError`` or ``SecretError`` to be retried."""
        backup = EtcdBackup.model_validate(body)
        status = backup.status or EtcdBackupStatus()
        if status.location is None or status.store is None:
            return "nothing was stored"
        prefix = f"s3://{status.store.bucket}/"
        key = status.location.removeprefix(prefix)
        async with resolved(self.kube, backup.namespace, status.store, "") as store:
            done = await _delete_object(store, key, status.location)
            # Its keyspace report and its continuous backup's segments go with it: they
            # describe or extend nothing else. A retry after a failure here finds the object
            # gone and finishes the rest.
            await delete_reports(store, key)
            segments = await delete_chain(await client_for(store), store, key)
            if segments:
                done += f" and the {segments} segments of its continuous backup"
            return done

    # -- one run ---------------------------------------------------------------------------
    async def _guarded(self, body: Json, *, resumed: bool) -> None:
        run = _Run()
        try:
            await self._run(body, run, resumed=resumed)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # A fault of ours or of the API server: the run still ends, visibly.
            message = run.redact(describe(err))
            log.exception("backup %s failed unexpectedly", _ref(body))
            with contextlib.suppress(Exception):
                await self._end(body, Refusal(OperationPhase.FAILED, "InternalError", message))

    async def _run(self, body: Json, run: _Run, *, resumed: bool) -> None:
        backup = EtcdBackup.model_validate(body)
        if resumed:
            await self._end(
                body,
                Refusal(
                    OperationPhase.FAILED,
                    backup_run.INTERRUPTED,
                    "the operator restarted while the backup was streaming; its upload was "
                    "never completed: take a new backup",
                ),
            )
            return
        if backup.status is None:
            await self._write(body, EtcdBackupStatus())
        ns, cluster_name = backup.namespace, backup.spec.clusterName
        lock = self._cluster_locks.setdefault((ns, cluster_name), asyncio.Lock())
        async with lock, self._slot():
            raw = await self.kube.get(API_VERSION, KIND, ns, cluster_name)
            try:
                cluster = parse_cluster(raw) if raw is not None else None
            except InvalidSpecError as err:
                await self._end(body, Refusal(OperationPhase.REJECTED, "InvalidCluster", str(err)))
                return
            refused = backup_run.refusal(backup, cluster)
            if refused is not None:
                await self._end(body, refused)
                return
            assert cluster is not None  # refusal() said so
            store_api = backup_run.store_of(backup, cluster)
            assert store_api is not None  # refusal() said so
            await self._take(body, backup, cluster, store_api, run)

    async def _take(
        self,
        body: Json,
        backup: EtcdBackup,
        cluster: EtcdCluster,
        store_api: BackupStore,
        run: _Run,
    ) -> None:
        ns = backup.namespace
        spec = cluster.spec.backup
        compression = spec.compression if spec is not None else Compression.ZSTD
        prefix = backup_run.default_prefix(ns, cluster.name)
        try:
            async with resolved(self.kube, ns, store_api, prefix) as store:
                run.store = store
                encryption_key = await stores.encryption_key(self.kube, ns, spec)
                observed = await observe(cluster, self.kube, self.settings, self._connect)
                source = backup_run.source_member(observed.etcd, cluster.name)
                if isinstance(source, Refusal):
                    await self._end(body, source, cluster_body=cluster)
                    return
                assert observed.etcd is not None
                status = backup_run.running(
                    EtcdBackupStatus.model_validate(body.get("status") or {}),
                    source,
                    store_api,
                    observed.etcd,
                    self._clock(),
                )
                await self._write(body, status)
                key = store.key_for(
                    backup_run.object_name(backup.name, compression, encryption_key is not None)
                )
                info = SnapshotInfo(
                    revision=source.revision,
                    cluster_id=observed.etcd.cluster_id,
                    etcd_version=source.version,
                    member=source.name,
                )
                started = time.monotonic()
                result = await self._stream(
                    source.client_urls[0],
                    observed.credentials,
                    observed.root_credentials,
                    store,
                    key,
                    compression=compression,
                    encryption_key=encryption_key,
                    info=info,
                )
                metrics.record_backup(
                    ns, cluster.name, time.monotonic() - started, result.stored_size
                )
                await self._succeeded(body, result, info, encrypted=encryption_key is not None)
                if spec is not None and spec.verify is not None:
                    every = spec.verify.everyNth
                    if await self._nth_success(ns, cluster.name) % every == 0:
                        await self._verify(
                            body,
                            cluster,
                            store,
                            key,
                            encryption_key=encryption_key,
                            run=run,
                            size=result.raw_size,
                        )
        except (BackupError, SecretError) as err:
            metrics.BACKUP_FAILURES.labels(ns, cluster.name).inc()
            reason = err.reason if isinstance(err, BackupError) else "SecretNotUsable"
            await self._end(
                body,
                Refusal(OperationPhase.FAILED, reason, run.redact(str(err))),
                cluster_body=cluster,
            )

    async def _succeeded(
        self, body: Json, result: UploadResult, info: SnapshotInfo, *, encrypted: bool
    ) -> None:
        done = EtcdBackupStatus.model_validate(body.get("status") or {}).model_copy(
            update={
                "location": result.location,
                "sizeBytes": result.stored_size,
                "snapshotSizeBytes": result.raw_size,
                "sha256": result.sha256,
                "compression": str(result.metadata.compression),
                "encrypted": encrypted,
            }
        )
        message = (
            f"stored {result.location}: {result.stored_size} bytes "
            f"({result.raw_size} as etcd streamed them) from member {info.member} "
            f"at revision {info.revision}"
        )
        await self._end(
            body,
            Refusal(OperationPhase.SUCCEEDED, backup_run.SUCCEEDED, message),
            status=done,
        )

    async def _nth_success(self, namespace: str, cluster: str) -> int:
        """How many of the cluster's backups have succeeded (this one included)."""
        listed = await self.kube.list(API_VERSION, BACKUP_KIND, namespace, "")
        return sum(
            1
            for b in listed
            if (b.get("spec") or {}).get("clusterName") == cluster
            and (b.get("status") or {}).get("phase") == OperationPhase.SUCCEEDED
        )

    async def _verify(
        self,
        body: Json,
        cluster: EtcdCluster,
        store: StoreSettings,
        key: str,
        *,
        encryption_key: bytes | None,
        run: _Run,
        size: int,
    ) -> None:
        """Verify the stored backup (spec.backup.verify); its result goes to status.verified
        and an event, and never changes the backup's phase: the upload itself succeeded."""
        now = self._clock()
        # The snapshot and the restored data dir, side by side in the scratch space.
        needed, room = 2 * size + (16 << 20), self.settings.scratch_size_mib << 20
        try:
            if needed > room:
                raise VerificationError(
                    f"verifying needs {needed >> 20} MiB of scratch space and the operator has "
                    f"{room >> 20} MiB: raise the chart's backups.scratchSizeMiB"
                )
            found = await self._check(store, key, encryption_key)
        except BackupError as err:
            message = run.redact(str(err))
            verified = Verification(passed=False, verifiedAt=rfc3339(now), message=message)
            event = ("Warning", "BackupVerificationFailed", message)
        else:
            verified = Verification(
                passed=True,
                verifiedAt=rfc3339(now),
                revision=found.revision,
                totalKeys=found.total_keys,
                hash=found.hash,
            )
            event = (
                "Normal",
                "BackupVerified",
                f"restored into a scratch directory: revision {found.revision}, "
                f"{found.total_keys} keys, hash {found.hash}",
            )
        status = EtcdBackupStatus.model_validate(body.get("status") or {})
        await self._write(body, status.model_copy(update={"verified": verified}))
        await post_events(self.kube, body, [event], now)
        if not verified.passed:
            raw = await self.kube.get(API_VERSION, KIND, cluster.namespace, cluster.name)
            if raw is not None:
                text = f"backup {body['metadata']['name']}: {verified.message}"
                await post_events(self.kube, raw, [("Warning", event[1], text)], now)

    async def _stream(
        self,
        endpoint: str,
        credentials: ClientCredentials | None,
        root: RootCredentials | None,
        store: StoreSettings,
        key: str,
        *,
        compression: Compression | str,
        encryption_key: bytes | None,
        info: SnapshotInfo,
    ) -> UploadResult:
        client = self._connect([endpoint], self.settings.etcd_timeout_seconds, credentials, root)
        try:
            return await self._upload(
                client.snapshot(endpoint),
                store,
                key,
                compression=compression,
                encryption_key=encryption_key,
                metadata=info,
            )
        finally:
            await client.close()

    # -- status and events -----------------------------------------------------------------
    async def _write(self, body: Json, status: EtcdBackupStatus) -> None:
        patch = status.model_dump(mode="json", exclude_none=True)
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        await self.kube.patch_status(API_VERSION, BACKUP_KIND, ns, name, patch)
        body["status"] = patch

    async def _end(
        self,
        body: Json,
        outcome: Refusal,
        *,
        status: EtcdBackupStatus | None = None,
        cluster_body: EtcdCluster | None = None,
    ) -> None:
        """The run's terminal status, its event, and a Warning on the cluster when it failed."""
        now = self._clock()
        current = status or EtcdBackupStatus.model_validate(body.get("status") or {})
        final = backup_run.ended(current, outcome.phase, outcome.reason, outcome.message, now)
        await self._write(body, final)
        self.expire_later(body)
        failed = outcome.phase != OperationPhase.SUCCEEDED
        type_ = "Warning" if failed else "Normal"
        reason = {
            OperationPhase.SUCCEEDED: "BackupSucceeded",
            OperationPhase.REJECTED: "BackupRejected",
        }.get(outcome.phase, "BackupFailed")
        log.log(
            logging.WARNING if failed else logging.INFO,
            "backup %s %s: %s",
            _ref(body),
            final.phase,
            outcome.message,
        )
        await post_events(self.kube, body, [(type_, reason, outcome.message)], now)
        if failed and cluster_body is not None:
            raw = await self.kube.get(API_VERSION, KIND, cluster_body.namespace, cluster_body.name)
            if raw is not None:
                text = f"backup {body['metadata']['name']}: {outcome.message}"
                await post_events(self.kube, raw, [("Warning", reason, text)], now)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.max_concurrent_backups)
        async with self._slots:
            yield


async def _delete_object(store: StoreSettings, key: str, location: str) -> str:
    """Delete one stored backup; an object already gone counts as deleted."""
    try:
        client = await asyncio.to_thread(make_client, store)
        await asyncio.to_thread(client.delete_object, Bucket=store.bucket, Key=key)
    except Exception as err:
        error = classify_s3_error(
            err, endpoint=store.display_endpoint, bucket=store.bucket, key=key, operation="delete"
        )
        if isinstance(error, NoSuchKeyError):
            return f"{location} was already gone"
        raise error from None
    return f"deleted {location}"


def _ref(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"
