"""A backup's keyspace report in the store, on an in-memory S3: its key beside the backup's, plain
or encrypted with the backup's key (then unreadable without it, and refused with another), its
metadata, and its deletion (both names, absent ones no error). The real S3 servers are in
tests/integration/test_analysis.py."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from etcd_operator.backup import (
    EncryptionKeyRequiredError,
    NotABackupError,
    StoreSettings,
    WrongEncryptionKeyError,
    delete_reports,
    fetch_report,
    report_key,
    upload_report,
)
from etcd_operator.backup.errors import AccessDeniedError

from tests.unit.operator.backup.fake_s3 import FakeS3, client_error

STORE = StoreSettings(bucket="backups", prefix="ns/demo/")
BACKUP_KEY = "ns/demo/demo-20261206-1200.db.zst"
KEY = hashlib.sha256(b"backup key").digest()
REPORT = b'{"schemaVersion": 1, "prefixes": [{"prefix": "/secret/tenant-a/"}]}\n'


def test_names_sit_beside_the_backup() -> None:
    assert report_key(BACKUP_KEY, False) == BACKUP_KEY + ".keyspace.json"
    assert report_key(BACKUP_KEY + ".enc", True) == BACKUP_KEY + ".enc.keyspace.json.enc"


def test_a_plain_report_is_the_tools_json_with_its_record() -> None:
    s3 = FakeS3()
    stored = asyncio.run(
        upload_report(
            STORE, BACKUP_KEY, REPORT, encryption_key=None, backup="demo-1", revision=7, client=s3
        )
    )
    assert stored.location == f"s3://backups/{BACKUP_KEY}.keyspace.json"
    assert not stored.encrypted and stored.size == len(REPORT)
    data, meta = s3.objects[stored.key]
    assert data == REPORT
    assert meta == {
        "etcd-keyspace-report-format": "1",
        "encryption": "none",
        "etcd-backup": "demo-1",
        "etcd-revision": "7",
    }
    assert asyncio.run(fetch_report(STORE, stored.key, client=s3)) == REPORT


def test_an_encrypted_report_needs_the_backups_key() -> None:
    s3 = FakeS3()
    stored = asyncio.run(
        upload_report(STORE, BACKUP_KEY, REPORT, encryption_key=KEY, backup="demo-1", client=s3)
    )
    assert stored.encrypted and stored.key.endswith(".keyspace.json.enc")
    data, meta = s3.objects[stored.key]
    assert b"tenant-a" not in data and data.startswith(b"EOBK")
    assert meta["encryption"] == "aes-256-gcm-chunked-v1"
    assert asyncio.run(fetch_report(STORE, stored.key, KEY, client=s3)) == REPORT
    with pytest.raises(EncryptionKeyRequiredError, match="is encrypted"):
        asyncio.run(fetch_report(STORE, stored.key, client=s3))
    with pytest.raises(WrongEncryptionKeyError):
        asyncio.run(fetch_report(STORE, stored.key, hashlib.sha256(b"x").digest(), client=s3))


def test_an_object_that_is_no_report_is_refused() -> None:
    s3 = FakeS3()
    s3.objects[BACKUP_KEY] = (b"not a report", {})
    with pytest.raises(NotABackupError, match="is not a keyspace report"):
        asyncio.run(fetch_report(STORE, BACKUP_KEY, client=s3))


def test_deleting_removes_both_names_and_minds_no_absent_one() -> None:
    s3 = FakeS3()
    for key in (report_key(BACKUP_KEY, False), report_key(BACKUP_KEY, True), BACKUP_KEY):
        s3.objects[key] = (b"x", {})
    asyncio.run(delete_reports(STORE, BACKUP_KEY, client=s3))
    assert list(s3.objects) == [BACKUP_KEY]
    asyncio.run(delete_reports(STORE, BACKUP_KEY, client=s3))  # again: nothing there, no error


def test_store_failures_are_typed_errors() -> None:
    s3 = FakeS3()
    s3.fail = lambda op, kw: client_error("AccessDenied", op, 403) if op == "PutObject" else None
    with pytest.raises(AccessDeniedError, match="during report upload of s3://backups/"):
        asyncio.run(
            upload_report(STORE, BACKUP_KEY, REPORT, encryption_key=None, backup="b", client=s3)
        )
    s3.fail = lambda op, kw: client_error("AccessDenied", op, 403)
    with pytest.raises(AccessDeniedError, match="s3:DeleteObject"):
        asyncio.run(delete_reports(STORE, BACKUP_KEY, client=s3))
