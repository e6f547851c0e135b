"""Keyspace analyses of real backups: a pyetcd member holds planted data (a big prefix, a key
written 200 times, a lease holding no key), its snapshot goes into a real S3 server through the
backup library (plain, and zstd + AES-256-GCM), and the operator's analysis runner
(``runtime.analyses``) reads it back with the real ``pyetcdutl analyze`` (the worktree's, as
``PYETCDUTL_BIN`` names it). The summary in ``status.keyspace`` says what was planted; the full
report sits next to the backup in the bucket, encrypted when the backup is; deleting the
backup's stored object (retention's way) takes the report along.

Failures record their reason: a corrupted backup object, a snapshot that is no database, a
missing pyetcdutl, no successful backup yet. The Kubernetes side is the in-memory API of the
unit tests (the runner only reads and patches objects; a real control plane runs the whole path
in e2e/test_analysis.py). Every S3 test runs against moto and versitygw, each a real HTTP server
process on loopback; every process is stopped in a finalizer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from etcd_operator import metrics
from etcd_operator.api.backup import Compression
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.backup import (
    SnapshotInfo,
    StoreSettings,
    UploadResult,
    fetch_report,
    upload_snapshot,
)
from etcd_operator.backup.eventlog import EventLog
from etcd_operator.backup.segments import Segment, upload_segment
from etcd_operator.reconcile.actions import AnalyzeKeyspace
from etcd_operator.runtime.analyses import KeyspaceAnalyses
from etcd_operator.runtime.backups import BackupRunner
from pyetcd.client import EtcdClient
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration.cluster import PYETCD_BIN, PYETCDUTL_BIN, Member, MemberError
from tests.unit.operator.runtime.fake_kube import FakeKube
from tools.s3server import S3Server, S3ServerError, moto_server, versitygw_server

pytestmark = pytest.mark.integration

START_TIMEOUT = 30.0
ENCRYPTION_KEY = hashlib.sha256(b"analysis test key").digest()
REQUEST = AnalyzeKeyspace("ns", "demo", "uid-demo")
CREDENTIALS = "s3-credentials"

# The planted data (depth 2: a prefix ends at the second separator after the leading one).
BIG_PREFIX = "/big/blob/"
BIG_KEYS = 40
BIG_VALUE = 4096
HUGE_KEY = "/big/blob/huge"
HUGE_VALUE = 64 * 1024
HOT_KEY = "/hot/keys/counter"
HOT_WRITES = 200
LEASED_KEY = "/leased/session/a"
OTHER_KEY = "/registry/pods/a"
LIVE_KEYS = BIG_KEYS + 1 + 1 + 1 + 1


def require_binaries() -> None:
    missing = [str(p) for p in (PYETCD_BIN, PYETCDUTL_BIN) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"missing binaries: {', '.join(missing)}; run `make setup`", pytrace=False)


def plant(endpoint: str) -> None:
    """The data the analysis must find: a big prefix with the biggest value, a hot key, a lease
    with a key and one without."""
    with grpc.insecure_channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        leases = rpc_pb2_grpc.LeaseStub(channel)
        for i in range(BIG_KEYS):
            value = hashlib.shake_256(str(i).encode()).digest(BIG_VALUE)
            kv.Put(rpc_pb2.PutRequest(key=f"{BIG_PREFIX}{i:03d}".encode(), value=value))
        kv.Put(rpc_pb2.PutRequest(key=HUGE_KEY.encode(), value=b"h" * HUGE_VALUE))
        for i in range(HOT_WRITES):
            kv.Put(rpc_pb2.PutRequest(key=HOT_KEY.encode(), value=str(i).encode()))
        held = leases.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=3600))
        leases.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=3600))  # holds no key
        kv.Put(rpc_pb2.PutRequest(key=LEASED_KEY.encode(), value=b"s", lease=held.ID))
        kv.Put(rpc_pb2.PutRequest(key=OTHER_KEY.encode(), value=b"pod"))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    require_binaries()
    member = Member("pyetcd", tmp_path_factory.mktemp("source"), name="src")
    try:
        member.start_and_wait(START_TIMEOUT)
        plant(member.host_port)
        yield member
    except MemberError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        member.stop()


@pytest.fixture(scope="module", params=("moto", "versitygw"))
def s3(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Server]:
    runner = moto_server if request.param == "moto" else versitygw_server
    try:
        with runner(tmp_path_factory.mktemp(request.param)) as server:
            yield server
    except S3ServerError as err:
        pytest.fail(str(err), pytrace=False)


@dataclass(frozen=True)
class Backup:
    store: StoreSettings
    result: UploadResult
    name: str


def back_up(member: Member, s3: S3Server, bucket: str, name: str, *, encrypted: bool) -> Backup:
    """A backup as the operator takes one: etcd's snapshot stream through the backup library."""
    store = s3.store(bucket)

    async def main() -> UploadResult:
        async with EtcdClient([member.client_url]) as client:
            status = await client.status(member.client_url)
            return await upload_snapshot(
                client.snapshot(member.client_url),
                store,
                store.key_for(f"{name}.db.zst{'.enc' if encrypted else ''}"),
                compression=Compression.ZSTD,
                encryption_key=ENCRYPTION_KEY if encrypted else None,
                metadata=SnapshotInfo(revision=status.revision, member=member.name),
            )

    return Backup(store, asyncio.run(main()), name)


def junk_backup(s3: S3Server, bucket: str, name: str) -> Backup:
    """A stream with etcd's trailer over bytes that are no bbolt file: stored fine."""
    store = s3.store(bucket)
    junk = os.urandom(64 * 1024)

    async def stream() -> AsyncIterator[bytes]:
        yield junk + hashlib.sha256(junk).digest()

    result = asyncio.run(upload_snapshot(stream(), store, store.key_for(f"{name}.db.zst")))
    return Backup(store, result, name)


def store_spec(s3: S3Server, bucket: str) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "prefix": "ns/demo/",
        "endpoint": s3.url,
        "region": "us-east-1",
        "forcePathStyle": True,
        "credentialsSecret": CREDENTIALS,
    }


def backup_object(backup: Backup, s3: S3Server, *, encrypted: bool) -> dict[str, Any]:
    """The EtcdBackup a successful run of the operator leaves."""
    result = backup.result
    return {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdBackup",
        "metadata": {
            "name": backup.name,
            "namespace": "ns",
            "uid": f"uid-{backup.name}",
            "creationTimestamp": "2026-12-06T09:00:00Z",
        },
        "spec": {"clusterName": "demo", "deletionPolicy": "Delete"},
        "status": {
            "phase": "Succeeded",
            "completedAt": "2026-12-06T09:00:30Z",
            "location": result.location,
            "store": store_spec(s3, backup.store.bucket),
            "sizeBytes": result.stored_size,
            "snapshotSizeBytes": result.raw_size,
            "sha256": result.sha256,
            "revision": result.metadata.snapshot.revision,
            "compression": "zstd",
            "encrypted": encrypted,
        },
    }


def world(s3: S3Server, bucket: str, *backups: dict[str, Any], encrypted: bool) -> FakeKube:
    kube = FakeKube()
    backup_spec: dict[str, Any] = {"store": store_spec(s3, bucket)}
    if encrypted:
        backup_spec["encryption"] = {"keySecret": {"name": "backup-key", "key": "key"}}
    kube.put(
        {
            "apiVersion": "etcd.pyetcd.io/v1alpha1",
            "kind": "EtcdCluster",
            "metadata": {
                "name": "demo",
                "namespace": "ns",
                "uid": "uid-demo",
                "creationTimestamp": "2026-12-01T00:00:00Z",
                "annotations": {"etcd.pyetcd.io/analyze": "now"},
            },
            "spec": {
                "version": "3.5.17",
                "backup": backup_spec,
                "analysis": {"top": 10},
            },
            "status": {},
        }
    )
    data = {
        "accessKeyId": s3.admin.access_key_id,
        "secretAccessKey": s3.admin.secret_access_key,
    }
    kube.put(
        {
            "kind": "Secret",
            "metadata": {"name": CREDENTIALS, "namespace": "ns"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )
    kube.put(
        {
            "kind": "Secret",
            "metadata": {"name": "backup-key", "namespace": "ns"},
            "data": {"key": base64.b64encode(base64.b64encode(ENCRYPTION_KEY)).decode()},
        }
    )
    for backup in backups:
        kube.put(backup)
    return kube


def analyse(kube: FakeKube, tmp_path: Path, **settings: Any) -> dict[str, Any]:
    """One analysis by the operator's runner with the real download, tool and report upload;
    the cluster's status.keyspace afterwards."""
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    options = {"pyetcdutl": str(PYETCDUTL_BIN), "analysis_temp_dir": str(scratch), **settings}

    async def main() -> None:
        runner = KeyspaceAnalyses(OperatorSettings(**options), lambda: kube)
        runner.start(REQUEST)
        await runner.wait()

    asyncio.run(main())
    assert list(scratch.iterdir()) == []  # the downloaded snapshot is gone
    found: dict[str, Any] = kube.objects[("EtcdCluster", "ns", "demo")]["status"]["keyspace"]
    return found


def keys_in(s3: S3Server, bucket: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in listed)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "zstd-aes"])
def test_the_summary_says_what_was_planted_and_the_report_sits_beside_the_backup(
    source: Member, s3: S3Server, tmp_path: Path, encrypted: bool
) -> None:
    bucket = s3.create_bucket(f"analysis-{os.urandom(4).hex()}")
    backup = back_up(source, s3, bucket, "demo-20261206-0900", encrypted=encrypted)
    kube = world(s3, bucket, backup_object(backup, s3, encrypted=encrypted), encrypted=encrypted)
    found = analyse(kube, tmp_path)

    run = found["lastRun"]
    assert (run["phase"], run["reason"], run["trigger"]) == ("Succeeded", "Analyzed", "Annotation")
    assert (found["backup"], found["lastRequest"]) == (backup.name, "now")
    assert found["revision"] >= (backup.result.metadata.snapshot.revision or 0)
    assert found["liveKeys"] == LIVE_KEYS
    assert found["liveBytes"] > BIG_KEYS * BIG_VALUE + HUGE_VALUE
    assert found["dbSize"] >= found["dbSizeInUse"] > found["liveBytes"]
    assert found["leasesWithoutKeys"] == 1
    assert found["biggestKey"] == {"key": HUGE_KEY, "valueSize": HUGE_VALUE}
    assert found["hottestKey"] == {"key": HOT_KEY, "revisions": HOT_WRITES}
    top = found["prefixes"][0]
    assert (top["prefix"], top["liveKeys"]) == (BIG_PREFIX, BIG_KEYS + 1)
    assert "/hot/keys/" in [p["prefix"] for p in found["prefixes"]]
    assert len(found["prefixes"]) <= 5

    # The report, next to the backup, in the same bucket; encrypted with the backup's key.
    suffix = ".keyspace.json.enc" if encrypted else ".keyspace.json"
    report_key = backup.result.key + suffix
    assert keys_in(s3, bucket) == sorted([backup.result.key, report_key])
    assert found["report"] == f"s3://{bucket}/{report_key}"
    raw = s3.client().get_object(Bucket=bucket, Key=report_key)["Body"].read()
    assert (HOT_KEY.encode() in raw) is not encrypted
    report = json.loads(asyncio.run(fetch_report(backup.store, report_key, ENCRYPTION_KEY)))
    assert report["schemaVersion"] == 1
    assert report["totals"]["liveKeys"] == LIVE_KEYS
    assert report["options"] == {"separator": "/", "depth": 2, "top": 10}
    assert report["hotKeys"][0]["key"] == HOT_KEY

    labels = {"namespace": "ns", "cluster": "demo"}
    assert metrics.REGISTRY.get_sample_value("etcd_operator_keyspace_live_keys", labels) == (
        LIVE_KEYS
    )
    stored = metrics.REGISTRY.get_sample_value(
        "etcd_operator_keyspace_prefix_bytes", {**labels, "prefix": BIG_PREFIX}
    )
    assert stored == top["storedBytes"]

    # Retention deletes the backup's stored object the way deleting an EtcdBackup does: the
    # report and the continuous backup's segments go with it.
    rev = backup.result.metadata.snapshot.revision or 1
    for seg in [Segment(rev, rev, 1000, 2000), Segment(rev, rev, 2000, 9000)]:
        log = EventLog()
        log.mark_time(seg.end_ms)
        asyncio.run(
            upload_segment(
                s3.client(), backup.store, backup.result.key, seg, log.to_bytes(), events=0,
                base=rev, compression=Compression.ZSTD, encryption_key=None,
            )
        )  # fmt: skip
    assert len(keys_in(s3, bucket)) == 4

    async def delete() -> str | None:
        runner = BackupRunner(OperatorSettings(), lambda: kube)
        return await runner.delete_stored(kube.objects[("EtcdBackup", "ns", backup.name)])

    said = f"deleted {backup.result.location} and the 2 segments of its continuous backup"
    assert asyncio.run(delete()) == said
    assert keys_in(s3, bucket) == []


def test_a_corrupted_backup_fails_saying_so(source: Member, s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.create_bucket(f"analysis-{os.urandom(4).hex()}")
    backup = back_up(source, s3, bucket, "demo-20261206-1000", encrypted=False)
    client = s3.client()
    obj = client.get_object(Bucket=bucket, Key=backup.result.key)
    data = bytearray(obj["Body"].read())
    data[len(data) // 2] ^= 0x40
    client.put_object(
        Bucket=bucket, Key=backup.result.key, Body=bytes(data), Metadata=obj["Metadata"]
    )
    kube = world(s3, bucket, backup_object(backup, s3, encrypted=False), encrypted=False)
    run = analyse(kube, tmp_path)["lastRun"]
    assert (run["phase"], run["reason"]) == ("Failed", "CorruptBackup")
    assert backup.result.location in run["message"]
    assert keys_in(s3, bucket) == [backup.result.key]  # no report of a broken backup
    (event,) = kube.events()
    assert event[:2] == ("Warning", "KeyspaceAnalysisFailed")
    assert s3.admin.secret_access_key not in str(kube.status_patches) + str(kube.created)


def test_a_snapshot_that_is_no_database_fails_with_the_tools_reason(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.create_bucket(f"analysis-{os.urandom(4).hex()}")
    backup = junk_backup(s3, bucket, "demo-20261206-1100")
    kube = world(s3, bucket, backup_object(backup, s3, encrypted=False), encrypted=False)
    run = analyse(kube, tmp_path)["lastRun"]
    assert (run["phase"], run["reason"]) == ("Failed", "AnalyzerFailed")
    assert run["message"].startswith(
        "pyetcdutl analyze failed (exit status 1): Error: cannot analyze"
    )


def test_a_missing_pyetcdutl_fails_before_downloading(
    source: Member, s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.create_bucket(f"analysis-{os.urandom(4).hex()}")
    backup = back_up(source, s3, bucket, "demo-20261206-1200", encrypted=False)
    kube = world(s3, bucket, backup_object(backup, s3, encrypted=False), encrypted=False)
    run = analyse(kube, tmp_path, pyetcdutl=str(tmp_path / "no-pyetcdutl"))["lastRun"]
    assert (run["phase"], run["reason"]) == ("Failed", "AnalyzerNotFound")
    assert f"pyetcdutl not found: {tmp_path / 'no-pyetcdutl'}" in run["message"]


def test_no_successful_backup_yet_fails_saying_so(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.create_bucket(f"analysis-{os.urandom(4).hex()}")
    kube = world(s3, bucket, encrypted=False)
    run = analyse(kube, tmp_path)["lastRun"]
    assert (run["phase"], run["reason"]) == ("Failed", "NoSuccessfulBackup")
    assert "no successful EtcdBackup of demo yet" in run["message"]


def test_a_snapshot_bigger_than_the_free_space_is_refused(
    source: Member, s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.create_bucket(f"analysis-{os.urandom(4).hex()}")
    backup = back_up(source, s3, bucket, "demo-20261206-1300", encrypted=False)
    body = backup_object(backup, s3, encrypted=False)
    body["status"]["snapshotSizeBytes"] = 1 << 60  # more than any disk has free
    kube = world(s3, bucket, body, encrypted=False)
    run = analyse(kube, tmp_path)["lastRun"]
    assert (run["phase"], run["reason"]) == ("Failed", "InsufficientSpace")
    assert str(tmp_path / "scratch") in run["message"]
