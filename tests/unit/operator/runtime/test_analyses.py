"""The keyspace analysis runner over an in-memory Kubernetes: which backup it reads, what it
records in status.keyspace (a success's summary, a failure's reason, an interrupted run), the
events and gauges, exactly one run per trigger, the cluster's lock, and credentials kept out of
every message. The download, the tool and the report's upload are stand-ins here; the real
ones against a real S3 server and the real pyetcdutl are in tests/integration/test_analysis.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from etcd_operator import metrics
from etcd_operator.api.analysis import ANALYZE_ANNOTATION, AnalysisSpec
from etcd_operator.api.backup import Compression
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.backup import (
    AccessDeniedError,
    DownloadResult,
    ObjectMetadata,
    StoredReport,
    StoreSettings,
)
from etcd_operator.reconcile.actions import AnalyzeKeyspace
from etcd_operator.runtime.analyses import KeyspaceAnalyses
from etcd_operator.runtime.pyetcdutl import AnalyzerError
from etcd_operator.runtime.reconciler import Reconciler, record_keyspace_metrics
from pyetcd.analyze import Options, Report, analyze, format_json
from pyetcd.analyze.report import DbFile, Source

from tests.unit.analyze.records import history, lease, put
from tests.unit.operator.runtime.fake_etcd import FakeEtcd
from tests.unit.operator.runtime.fake_kube import FakeKube
from tests.unit.operator.runtime.test_backups import NOW, SECRET, secret
from tests.unit.operator.runtime.test_reconciler import Events, sample

ACCESS = "AKIAEXAMPLE"
STORE = {"bucket": "backups", "endpoint": "http://s3:9000", "credentialsSecret": "creds"}
KEY = hashlib.sha256(b"backup key").digest()
REQUEST = AnalyzeKeyspace("ns", "demo", "uid-1")
BACKUP_KEY = "ns/demo/demo-20261206-0900.db.zst"


def report_json(top: int = 10) -> bytes:
    keys = [
        put(2, b"/big/data/blob", b"x" * 5000),
        *history(b"/hot/data/counter", 3, 30, b"n" * 200),
        put(33, b"/registry/pods/a", b"p" * 10, lease=1),
    ]
    leases = [lease(1, 60), lease(2, 30)]
    source = Source(path="snapshot.db", kind="snapshot", db_path="snapshot.db", sha256="skipped")
    analysis = analyze(keys, leases, (), Options(top=top))
    return format_json(Report(source, DbFile(20480, 16384, 4096), analysis)).encode()


def cluster_body(
    *,
    analysis: dict[str, Any] | None = None,
    annotation: str | None = "now",
    encrypted: bool = False,
    keyspace: dict[str, Any] | None = None,
) -> dict[str, Any]:
    backup: dict[str, Any] = {"store": STORE}
    if encrypted:
        backup["encryption"] = {"keySecret": {"name": "backup-key", "key": "key"}}
    meta: dict[str, Any] = {
        "name": "demo",
        "namespace": "ns",
        "uid": "uid-1",
        "creationTimestamp": "2026-12-01T00:00:00Z",
    }
    if annotation is not None:
        meta["annotations"] = {ANALYZE_ANNOTATION: annotation}
    return {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": meta,
        "spec": {"version": "3.5.17", "backup": backup, "analysis": analysis or {}},
        "status": {"keyspace": keyspace} if keyspace is not None else {},
    }


def backup_body(
    name: str, completed: str, *, phase: str = "Succeeded", encrypted: bool = False
) -> dict[str, Any]:
    key = f"ns/demo/{name}.db.zst{'.enc' if encrypted else ''}"
    return {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdBackup",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "creationTimestamp": completed,
            "labels": {"etcd.pyetcd.io/backup-trigger": "schedule"},
        },
        "spec": {"clusterName": "demo", "deletionPolicy": "Delete"},
        "status": {
            "phase": phase,
            "completedAt": completed,
            "location": f"s3://backups/{key}",
            "store": STORE,
            "snapshotSizeBytes": 20512,
            "revision": 32,
            "encrypted": encrypted,
        },
    }


def world(**cluster: Any) -> FakeKube:
    kube = FakeKube()
    kube.put(cluster_body(**cluster))
    kube.put(secret("creds", accessKeyId=ACCESS, secretAccessKey=SECRET))
    kube.put(secret("backup-key", key=base64.b64encode(KEY).decode()))
    kube.put(backup_body("demo-20261206-0600", "2026-12-06T06:00:30Z"))
    kube.put(backup_body("demo-20261206-0900", "2026-12-06T09:00:30Z"))
    kube.put(backup_body("demo-20261206-0930", "2026-12-06T09:30:30Z", phase="Failed"))
    return kube


class Stand:
    """Stand-ins for the download, the tool, the free space and the report's store."""

    def __init__(
        self,
        *,
        output: bytes | None = None,
        download_error: Exception | None = None,
        tool_error: Exception | None = None,
        free: int | OSError = 1 << 40,
    ) -> None:
        self.output = report_json() if output is None else output
        self.download_error = download_error
        self.tool_error = tool_error
        self.free = free
        self.downloads: list[tuple[str, str, bytes | None]] = []
        self.tool_runs: list[tuple[str, Path, AnalysisSpec, float, bool]] = []
        self.stored: list[tuple[str, bytes, bytes | None, str, int | None]] = []
        self.dropped: list[str] = []
        self.stores: list[StoreSettings] = []
        self.during_tool: Any = None  # called while the tool "runs"

    async def download(
        self,
        store: StoreSettings,
        key: str,
        dest: str | Path,
        encryption_key: bytes | None = None,
    ) -> DownloadResult:
        self.stores.append(store)
        self.downloads.append((store.bucket, key, encryption_key))
        if self.download_error is not None:
            raise self.download_error
        await asyncio.to_thread(Path(dest).write_bytes, b"snapshot")
        meta = ObjectMetadata(compression=Compression.ZSTD, encryption="none")
        return DownloadResult(Path(dest), store.location(key), 8, 8, "ab" * 32, meta)

    async def tool(self, executable: str, path: Path, spec: AnalysisSpec, seconds: float) -> bytes:
        present = await asyncio.to_thread(path.is_file)
        self.tool_runs.append((executable, path, spec, seconds, present))
        if self.during_tool is not None:
            await self.during_tool()
        if self.tool_error is not None:
            raise self.tool_error
        return self.output

    async def store_report(
        self,
        store: StoreSettings,
        backup_key: str,
        report: bytes,
        *,
        encryption_key: bytes | None,
        backup: str,
        revision: int | None = None,
    ) -> StoredReport:
        self.stored.append((backup_key, report, encryption_key, backup, revision))
        key = f"{backup_key}.keyspace.json{'.enc' if encryption_key else ''}"
        return StoredReport(store.location(key), key, len(report), encryption_key is not None)

    def free_space(self, directory: str) -> int:
        if isinstance(self.free, OSError):
            raise self.free
        return self.free

    async def drop_reports(self, store: StoreSettings, backup_key: str) -> None:
        self.dropped.append(backup_key)

    def runner(
        self,
        kube: FakeKube,
        settings: OperatorSettings | None = None,
        lock: Any = None,
    ) -> KeyspaceAnalyses:
        return KeyspaceAnalyses(
            settings or OperatorSettings(pyetcdutl="/bin/true"),
            lambda: kube,
            lock=lock,
            clock=lambda: NOW,
            download=self.download,
            run_tool=self.tool,
            free_space=self.free_space,
            store_report=self.store_report,
            drop_reports=self.drop_reports,
        )


def run(kube: FakeKube, stand: Stand, *, settings: OperatorSettings | None = None) -> None:
    async def scenario() -> None:
        runner = stand.runner(kube, settings)
        runner.start(REQUEST)
        await runner.wait()

    asyncio.run(scenario())


def keyspace(kube: FakeKube) -> dict[str, Any]:
    found: dict[str, Any] = kube.objects[("EtcdCluster", "ns", "demo")]["status"]["keyspace"]
    return found


def test_a_success_records_the_summary_and_stores_the_report_next_to_the_newest_backup() -> None:
    kube, stand = world(), Stand()
    run(kube, stand)
    # The newest successful backup (not the later failed one), with the store's credentials.
    assert stand.downloads == [("backups", BACKUP_KEY, None)]
    assert stand.stores[0].credentials is not None
    assert stand.stores[0].credentials.secret_access_key == SECRET
    ((executable, path, spec, seconds, present),) = stand.tool_runs
    assert executable == "/bin/true" and present and seconds == 600.0
    assert (spec.separator, spec.depth, spec.top) == ("/", 2, 10)
    assert not path.exists() and not path.parent.exists()  # the snapshot is gone afterwards
    assert stand.stored == [(BACKUP_KEY, stand.output, None, "demo-20261206-0900", 33)]
    found = keyspace(kube)
    assert found["lastRun"]["phase"] == "Succeeded" and found["lastRun"]["trigger"] == "Annotation"
    assert found["lastRequest"] == "now"
    assert (found["backup"], found["revision"]) == ("demo-20261206-0900", 33)
    assert (found["liveKeys"], found["leasesWithoutKeys"]) == (3, 1)
    assert found["biggestKey"] == {"key": "/big/data/blob", "valueSize": 5000}
    assert found["hottestKey"] == {"key": "/hot/data/counter", "revisions": 30}
    assert [p["prefix"] for p in found["prefixes"]] == [
        "/hot/data/",
        "/big/data/",
        "/registry/pods/",
    ]
    assert found["report"] == f"s3://backups/{BACKUP_KEY}.keyspace.json"
    assert found["analyzedAt"] == "2026-12-06T10:00:00Z"
    phases = [p["keyspace"]["lastRun"]["phase"] for _, _, p in kube.status_patches]
    assert phases == ["Running", "Succeeded"]
    ((kind, reason, message),) = kube.events()
    assert (kind, reason) == ("Normal", "KeyspaceAnalyzed")
    assert "backup demo-20261206-0900" in message and "report s3://backups/" in message
    labels = {"namespace": "ns", "cluster": "demo"}
    assert sample("etcd_operator_keyspace_live_keys", **labels) == 3
    assert sample("etcd_operator_keyspace_leases_without_keys", **labels) == 1
    assert sample("etcd_operator_keyspace_analysis_timestamp_seconds", **labels) == NOW.timestamp()
    hot = sample("etcd_operator_keyspace_prefix_bytes", prefix="/hot/data/", **labels)
    assert hot == found["prefixes"][0]["storedBytes"]


def test_an_encrypted_backup_is_read_and_its_report_written_with_the_backups_key() -> None:
    kube = world(encrypted=True)
    kube.put(backup_body("demo-20261206-0900", "2026-12-06T09:00:30Z", encrypted=True))
    stand = Stand()
    run(kube, stand)
    assert stand.downloads == [("backups", BACKUP_KEY + ".enc", KEY)]
    ((_, _, report_key, _, _),) = stand.stored
    assert report_key == KEY
    assert keyspace(kube)["report"].endswith(".db.zst.enc.keyspace.json.enc")


def test_an_encrypted_backup_without_a_key_fails_saying_so() -> None:
    kube = world()
    kube.put(backup_body("demo-20261206-0900", "2026-12-06T09:00:30Z", encrypted=True))
    stand = Stand()
    run(kube, stand)
    run_ = keyspace(kube)["lastRun"]
    assert (run_["phase"], run_["reason"]) == ("Failed", "EncryptionKeyRequired")
    assert stand.downloads == []


def test_one_run_per_trigger_even_when_asked_twice() -> None:
    kube, stand = world(), Stand()

    async def scenario() -> None:
        runner = stand.runner(kube)
        first = runner.start(REQUEST)
        assert runner.start(REQUEST) is first  # while it runs
        await runner.wait()
        runner.start(REQUEST)  # the same annotation value: acted on
        await runner.wait()

    asyncio.run(scenario())
    assert len(stand.downloads) == 1
    assert len(kube.events()) == 1


def test_no_successful_backup_yet_fails_with_a_reason_and_downloads_nothing() -> None:
    kube = world()
    for name in ("demo-20261206-0600", "demo-20261206-0900"):
        del kube.objects[("EtcdBackup", "ns", name)]
    stand = Stand()
    run(kube, stand)
    found = keyspace(kube)
    assert (found["lastRun"]["phase"], found["lastRun"]["reason"]) == (
        "Failed",
        "NoSuccessfulBackup",
    )
    assert "no successful EtcdBackup of demo yet" in found["lastRun"]["message"]
    assert found["lastRequest"] == "now"  # the trigger is spent; retries come with backoff
    assert stand.downloads == [] and stand.tool_runs == []
    ((kind, reason, message),) = kube.events()
    assert (kind, reason) == ("Warning", "KeyspaceAnalysisFailed")
    assert message.startswith("NoSuccessfulBackup: no successful EtcdBackup")


def test_a_run_left_running_by_a_restart_ends_interrupted() -> None:
    going = {
        "phase": "Running",
        "trigger": "Schedule",
        "attempt": 1,
        "backup": "demo-20261206-0900",
        "startedAt": "2026-12-06T09:59:00Z",
    }
    kube = world(annotation=None, keyspace={"lastRun": going, "liveKeys": 7})
    stand = Stand()
    run(kube, stand)
    found = keyspace(kube)
    assert (found["lastRun"]["phase"], found["lastRun"]["reason"]) == ("Failed", "Interrupted")
    assert found["liveKeys"] == 7  # the last success's summary stays
    assert stand.downloads == []


@pytest.mark.parametrize(
    ("settings", "stand", "reason", "says"),
    [
        (
            OperatorSettings(pyetcdutl="/nonexistent/pyetcdutl"),
            Stand(),
            "AnalyzerNotFound",
            "pyetcdutl not found: /nonexistent/pyetcdutl",
        ),
        (
            OperatorSettings(pyetcdutl="no-such-pyetcdutl-here"),
            Stand(),
            "AnalyzerNotFound",
            "no no-such-pyetcdutl-here on PATH",
        ),
        (None, Stand(free=100), "InsufficientSpace", "the snapshot is 20512 bytes and"),
        (
            OperatorSettings(pyetcdutl="/bin/true", analysis_temp_dir="/nonexistent/tmp"),
            Stand(free=FileNotFoundError(2, "No such file or directory")),
            "TempDirUnusable",
            "the temporary directory /nonexistent/tmp is not usable (No such file or directory)",
        ),
        (
            None,
            Stand(tool_error=AnalyzerError("AnalyzerTimedOut", "did not finish within 600s")),
            "AnalyzerTimedOut",
            "did not finish within 600s",
        ),
        (None, Stand(output=b"Error: oops"), "InvalidReport", "printed no JSON report"),
        (
            None,
            Stand(output=b'{"schemaVersion": 7}'),
            "InvalidReport",
            "reported schemaVersion 7",
        ),
    ],
)
def test_failures_are_recorded_with_their_reason(
    settings: OperatorSettings | None, stand: Stand, reason: str, says: str
) -> None:
    kube = world()
    run(kube, stand, settings=settings)
    found = keyspace(kube)
    assert (found["lastRun"]["phase"], found["lastRun"]["reason"]) == ("Failed", reason)
    assert says in found["lastRun"]["message"]
    assert stand.stored == []
    assert found.get("report") is None


def test_a_download_failure_says_why_without_the_credentials() -> None:
    kube = world()
    stand = Stand(download_error=AccessDeniedError(f"access denied for key {SECRET}"))
    run(kube, stand)
    run_ = keyspace(kube)["lastRun"]
    assert (run_["phase"], run_["reason"]) == ("Failed", "AccessDenied")
    assert SECRET not in str(kube.status_patches) + str(kube.created)
    assert "<redacted>" in run_["message"]


def test_a_backup_deleted_while_it_was_analysed_takes_its_report_along() -> None:
    kube = world()
    stand = Stand()

    async def retention() -> None:
        del kube.objects[("EtcdBackup", "ns", "demo-20261206-0900")]

    stand.during_tool = retention
    run(kube, stand)
    run_ = keyspace(kube)["lastRun"]
    assert (run_["phase"], run_["reason"]) == ("Failed", "BackupDeleted")
    assert stand.dropped == [BACKUP_KEY]


def test_status_writes_wait_for_the_clusters_lock() -> None:
    kube, stand = world(), Stand()

    async def scenario() -> None:
        lock = asyncio.Lock()
        runner = stand.runner(kube, lock=lambda uid: lock)
        async with lock:  # a reconcile pass of the cluster, between its read and its write
            task = runner.start(REQUEST)
            for _ in range(20):
                await asyncio.sleep(0)
            assert kube.status_patches == [] and not task.done()
        await runner.wait()

    asyncio.run(scenario())
    assert keyspace(kube)["lastRun"]["phase"] == "Succeeded"


def test_nothing_runs_for_a_cluster_without_analysis_or_gone() -> None:
    kube = world()
    kube.objects[("EtcdCluster", "ns", "demo")]["spec"].pop("analysis")
    stand = Stand()
    run(kube, stand)
    del kube.objects[("EtcdCluster", "ns", "demo")]
    run(kube, stand)
    assert stand.downloads == [] and kube.status_patches == []


def test_removing_analysis_while_it_runs_records_nothing() -> None:
    kube, stand = world(), Stand()

    async def removed() -> None:
        obj = kube.objects[("EtcdCluster", "ns", "demo")]
        obj["spec"].pop("analysis")
        obj["status"].pop("keyspace")  # the next pass clears it

    stand.during_tool = removed
    run(kube, stand)
    assert [p["keyspace"]["lastRun"]["phase"] for _, _, p in kube.status_patches] == ["Running"]
    assert "keyspace" not in kube.objects[("EtcdCluster", "ns", "demo")]["status"]


def test_metrics_keep_at_most_ten_prefixes_and_drop_those_that_fell_out() -> None:
    labels = {"namespace": "ns", "cluster": "gauges"}
    many = [(f"/p{i:02d}/", 1000 - i) for i in range(12)]
    metrics.record_keyspace("ns", "gauges", metrics.KeyspaceGauges(1.0, 5, 2, many))
    kept = [p for p, _ in many if sample("etcd_operator_keyspace_prefix_bytes", prefix=p, **labels)]
    assert kept == [p for p, _ in many[:10]]
    metrics.record_keyspace("ns", "gauges", metrics.KeyspaceGauges(2.0, 6, 0, [("/new/", 7)]))
    assert sample("etcd_operator_keyspace_prefix_bytes", prefix="/new/", **labels) == 7
    assert (
        metrics.REGISTRY.get_sample_value(
            "etcd_operator_keyspace_prefix_bytes", {"prefix": "/p00/", **labels}
        )
        is None
    )
    assert sample("etcd_operator_keyspace_live_keys", **labels) == 6
    assert metrics.keyspace_recorded_at("ns", "gauges") == 2.0
    metrics.forget_cluster("ns", "gauges")
    for name in (
        "etcd_operator_keyspace_live_keys",
        "etcd_operator_keyspace_leases_without_keys",
        "etcd_operator_keyspace_analysis_timestamp_seconds",
    ):
        assert metrics.REGISTRY.get_sample_value(name, labels) is None
    assert (
        metrics.REGISTRY.get_sample_value(
            "etcd_operator_keyspace_prefix_bytes", {"prefix": "/new/", **labels}
        )
        is None
    )
    assert metrics.keyspace_recorded_at("ns", "gauges") is None


def test_a_pass_hands_the_analysis_over_and_the_runner_records_it_under_the_lock() -> None:
    kube, stand = world(), Stand()
    etcd = FakeEtcd()

    async def scenario() -> None:
        reconciler = Reconciler(
            OperatorSettings(etcd_timeout_seconds=0.5),
            kube,
            Events(),
            lambda endpoints, timeout, tls=None, auth=None, /: etcd,
            clock=lambda: NOW,
        )
        reconciler.analyses = stand.runner(kube, lock=reconciler.lock)
        for _ in range(3):  # creation, formation, an idle pass
            await reconciler.reconcile(kube.live(cluster_body()))
        await reconciler.analyses.wait()
        await reconciler.reconcile(kube.live(cluster_body()))  # acted on: nothing more
        await reconciler.analyses.wait()

    asyncio.run(scenario())
    assert len(stand.downloads) == 1
    found = keyspace(kube)
    assert found["lastRun"]["phase"] == "Succeeded" and found["liveKeys"] == 3
    # The pass after it kept what the runner wrote (it read the status under the same lock).
    last_pass = [p for _, _, p in kube.status_patches if "observedGeneration" in p][-1]
    assert last_pass["keyspace"]["lastRun"]["phase"] == "Succeeded"


def test_the_keyspace_gauges_come_from_the_status_after_a_restart() -> None:
    from etcd_operator.api.v1alpha1 import EtcdCluster

    cluster = EtcdCluster.model_validate(cluster_body(analysis={}))
    cluster = cluster.model_copy(update={"metadata": {**cluster.metadata, "name": "restarted"}})
    labels = {"namespace": "ns", "cluster": "restarted"}
    status = {
        "analyzedAt": "2026-12-06T09:00:00Z",
        "liveKeys": 12,
        "leasesWithoutKeys": 2,
        "prefixes": [{"prefix": "/a/", "liveKeys": 1, "liveBytes": 1, "storedBytes": 50}],
    }
    record_keyspace_metrics(cluster, status)
    assert sample("etcd_operator_keyspace_live_keys", **labels) == 12
    assert sample("etcd_operator_keyspace_prefix_bytes", prefix="/a/", **labels) == 50
    # The same analysis recorded by the runner (its ten prefixes) is not replaced by the
    # status's five.
    analyzed = datetime(2026, 12, 6, 9, 0, tzinfo=UTC).timestamp()
    many = [(f"/p{i}/", 100 - i) for i in range(8)]
    metrics.record_keyspace("ns", "restarted", metrics.KeyspaceGauges(analyzed, 12, 2, many))
    record_keyspace_metrics(cluster, status)
    assert sample("etcd_operator_keyspace_prefix_bytes", prefix="/p7/", **labels) == 93
    # No analysis (or no spec.analysis): no gauges.
    record_keyspace_metrics(cluster, None)
    assert metrics.REGISTRY.get_sample_value("etcd_operator_keyspace_live_keys", labels) is None
    assert (
        metrics.REGISTRY.get_sample_value(
            "etcd_operator_keyspace_prefix_bytes", {"prefix": "/p7/", **labels}
        )
        is None
    )


def test_a_temporary_directory_that_cannot_be_written_is_reported(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    kube, stand = world(), Stand()
    run(
        kube,
        stand,
        settings=OperatorSettings(pyetcdutl="/bin/true", analysis_temp_dir=str(not_a_directory)),
    )
    run_ = keyspace(kube)["lastRun"]
    assert (run_["phase"], run_["reason"]) == ("Failed", "TempDirUnusable")
    assert f"cannot write into the temporary directory {not_a_directory}" in run_["message"]
    assert stand.downloads == []


def test_an_unexpected_fault_still_ends_the_run_without_credentials() -> None:
    kube = world()
    stand = Stand(tool_error=RuntimeError(f"something broke near {SECRET}"))
    run(kube, stand)
    run_ = keyspace(kube)["lastRun"]
    assert (run_["phase"], run_["reason"]) == ("Failed", "InternalError")
    assert "RuntimeError: something broke near <redacted>" in run_["message"]
    assert SECRET not in str(kube.status_patches) + str(kube.created)
