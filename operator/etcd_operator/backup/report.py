"""A backup's keyspace report, stored next to it: written, read back, deleted. No Kubernetes.

The report is what ``pyetcdutl analyze --format json`` printed about the backup, kept whole (the
status keeps a summary). It goes into the backup's own store under the backup's key with
``.keyspace.json`` appended, so that a listing shows each report beside the backup it describes
and whoever may read a backup may read its report. Key names can be sensitive: when the backup is
encrypted, the report is encrypted with the same key in the same chunked AES-256-GCM format
(``backup.cipher``), and its key ends in ``.keyspace.json.enc``. Its metadata says which backup
and revision it describes, and the format and encryption markers; nothing secret.

Reports are small (their lists are bounded by ``top``, whatever the database's size): one
PutObject writes one, one GetObject reads it. Deleting a backup deletes its report (both names:
whether it was encrypted may have changed since); a report that is not there is no error.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from urllib.parse import quote

from etcd_operator.api.backup import Compression
from etcd_operator.backup.cipher import ENCRYPTION_AES_GCM, ENCRYPTION_NONE
from etcd_operator.backup.codec import DECODE_PIECE, Encoder, open_reader
from etcd_operator.backup.errors import (
    EncryptionKeyRequiredError,
    NoSuchKeyError,
    NotABackupError,
)
from etcd_operator.backup.objects import put_small_object, store_error
from etcd_operator.backup.store import S3Client, StoreSettings, make_client

REPORT_SUFFIX = ".keyspace.json"
ENCRYPTED_SUFFIX = ".enc"
# S3 user metadata of a report (lower case, as S3 keeps them).
FORMAT = "etcd-keyspace-report-format"
FORMAT_VERSION = "1"
ENCRYPTION = "encryption"
BACKUP = "etcd-backup"
REVISION = "etcd-revision"
# A report far beyond this is not one (``top`` bounds every list to 50 entries).
MAX_REPORT_SIZE = 16 << 20


def report_key(backup_key: str, encrypted: bool) -> str:
    """The key of the report on the backup stored under ``backup_key``."""
    return f"{backup_key}{REPORT_SUFFIX}{ENCRYPTED_SUFFIX if encrypted else ''}"


@dataclass(frozen=True)
class StoredReport:
    location: str
    key: str
    size: int
    encrypted: bool


def _seal(report: bytes, encryption_key: bytes) -> bytes:
    encoder = Encoder(Compression.NONE, encryption_key)
    return encoder.update(report) + encoder.finish()


async def _client(store: StoreSettings, key: str, operation: str) -> S3Client:
    try:
        return await asyncio.to_thread(make_client, store)
    except Exception as err:
        raise store_error(err, store, key, operation) from None


async def upload_report(
    store: StoreSettings,
    backup_key: str,
    report: bytes,
    *,
    encryption_key: bytes | None,
    backup: str,
    revision: int | None = None,
    client: S3Client | None = None,
) -> StoredReport:
    """Store ``report`` (the tool's JSON) next to the backup under ``backup_key``, encrypted
    with ``encryption_key`` when given. Raises a ``BackupError``."""
    key = report_key(backup_key, encryption_key is not None)
    operation = "report upload"
    body = (
        report if encryption_key is None else await asyncio.to_thread(_seal, report, encryption_key)
    )
    metadata = {
        FORMAT: FORMAT_VERSION,
        ENCRYPTION: ENCRYPTION_NONE if encryption_key is None else ENCRYPTION_AES_GCM,
        BACKUP: quote(backup, safe="-._"),
    }
    if revision is not None:
        metadata[REVISION] = str(revision)
    s3 = client or await _client(store, key, operation)
    content_type = "application/json" if encryption_key is None else "application/octet-stream"
    await put_small_object(
        s3, store, key, body, content_type=content_type, metadata=metadata, operation=operation
    )
    return StoredReport(store.location(key), key, len(body), encryption_key is not None)


async def fetch_report(
    store: StoreSettings,
    key: str,
    encryption_key: bytes | None = None,
    *,
    client: S3Client | None = None,
) -> bytes:
    """The report stored under ``key``, decrypted (every chunk authenticated) when it is
    encrypted. Raises a ``BackupError``."""
    operation = "report download"
    s3 = client or await _client(store, key, operation)
    location = store.location(key)
    try:
        resp = await asyncio.to_thread(s3.get_object, Bucket=store.bucket, Key=key)
        body = resp["Body"]
        try:
            data: bytes = await asyncio.to_thread(body.read, MAX_REPORT_SIZE + 1)
        finally:
            body.close()
    except Exception as err:
        raise store_error(err, store, key, operation) from None
    meta = {k.lower(): v for k, v in (resp.get("Metadata") or {}).items()}
    if meta.get(FORMAT) != FORMAT_VERSION or len(data) > MAX_REPORT_SIZE:
        raise NotABackupError(f"{location} is not a keyspace report of this operator")
    if meta.get(ENCRYPTION) == ENCRYPTION_NONE:
        return data
    if encryption_key is None:
        raise EncryptionKeyRequiredError(
            f"{location} is encrypted: give the encryption key Secret of its backup"
        )
    return await asyncio.to_thread(_open, data, encryption_key, location)


def _open(data: bytes, encryption_key: bytes, location: str) -> bytes:
    reader = open_reader(
        io.BytesIO(data), Compression.NONE, encrypted=True, key=encryption_key, name=location
    )
    out = bytearray()
    while piece := reader.read(DECODE_PIECE):
        out += piece
    return bytes(out)


async def delete_reports(
    store: StoreSettings, backup_key: str, *, client: S3Client | None = None
) -> None:
    """Delete the report (plain or encrypted) of the backup under ``backup_key``; a report that
    is not there is no error. Raises a ``BackupError``."""
    operation = "report deletion"
    s3 = client or await _client(store, backup_key, operation)
    for encrypted in (False, True):
        key = report_key(backup_key, encrypted)
        try:
            await asyncio.to_thread(s3.delete_object, Bucket=store.bucket, Key=key)
        except Exception as err:
            error = store_error(err, store, key, operation)
            if not isinstance(error, NoSuchKeyError):
                raise error from None
