"""Backups of etcd to S3-compatible storage, and their way back: the library, no Kubernetes.

``upload`` streams a member's ``Maintenance.Snapshot`` into one S3 object with bounded memory
and aborts on any failure (``multipart`` is its S3 side: parts, staging object, final copy);
``download`` brings an object back as a verified snapshot file for ``snapshot restore``;
``codec`` is the object format (compression, then ``cipher``'s chunked AES-256-GCM);
``metadata`` what an object records about itself; ``report`` a backup's keyspace report, stored
next to it; ``store`` the resolved store settings and the boto3 client; ``errors`` the typed
errors with one-line messages. Callers (the operator's runtime, a restore init container)
resolve Secrets and pass plain values.
"""

from __future__ import annotations

from etcd_operator.backup.cipher import parse_key
from etcd_operator.backup.codec import Encoder, SnapshotDigest
from etcd_operator.backup.download import DownloadResult, download_snapshot
from etcd_operator.backup.errors import (
    AccessDeniedError,
    BackupError,
    CorruptObjectError,
    EncryptionKeyRequiredError,
    EtcdStreamError,
    InvalidCredentialsError,
    InvalidEncryptionKeyError,
    NoSuchBucketError,
    NoSuchKeyError,
    NotABackupError,
    SnapshotFileError,
    StoreError,
    StoreUnreachableError,
    TrailerMismatchError,
    TruncatedObjectError,
    WrongEncryptionKeyError,
)
from etcd_operator.backup.metadata import ObjectMetadata, SnapshotInfo
from etcd_operator.backup.report import (
    StoredReport,
    delete_reports,
    fetch_report,
    report_key,
    upload_report,
)
from etcd_operator.backup.store import Credentials, S3Client, StoreSettings, make_client
from etcd_operator.backup.upload import DEFAULT_PART_SIZE, UploadResult, upload_snapshot

__all__ = [
    "DEFAULT_PART_SIZE",
    "AccessDeniedError",
    "BackupError",
    "CorruptObjectError",
    "Credentials",
    "DownloadResult",
    "Encoder",
    "EncryptionKeyRequiredError",
    "EtcdStreamError",
    "InvalidCredentialsError",
    "InvalidEncryptionKeyError",
    "NoSuchBucketError",
    "NoSuchKeyError",
    "NotABackupError",
    "ObjectMetadata",
    "S3Client",
    "SnapshotDigest",
    "SnapshotFileError",
    "SnapshotInfo",
    "StoreError",
    "StoreSettings",
    "StoreUnreachableError",
    "StoredReport",
    "TrailerMismatchError",
    "TruncatedObjectError",
    "UploadResult",
    "WrongEncryptionKeyError",
    "delete_reports",
    "download_snapshot",
    "fetch_report",
    "make_client",
    "parse_key",
    "report_key",
    "upload_report",
    "upload_snapshot",
]
